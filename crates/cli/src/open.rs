//! The one channel `send` and `recv` talk over, from `--bind` / `--connect`.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use conduit::{
    AcceptTimeoutError, Channel, ChannelBuilder, Message, PipeReceiver, PipeSender,
    RecvTimeoutError, SendTimeoutError,
};

use crate::args::EndpointArgs;
use crate::interrupt::{self, Waited};
use crate::watch::Watch;

/// How long `--connect` keeps retrying while the peer is not up, when the command
/// has no `--timeout`.
pub const DEFAULT_CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Where messages go.
pub enum Sink {
    Channel(Box<Channel>),
    Pipe(PipeSender),
}

/// Where messages come from.
pub enum Source {
    Channel(Box<Channel>),
    Pipe(PipeReceiver),
}

/// What a receive produced.
pub enum Received {
    Message(Message),
    Closed,
    TimedOut,
    Interrupted,
}

impl Sink {
    /// Sends, waiting up to `timeout` for the peer to make room.
    pub fn send(&self, msg: Message, timeout: Option<Duration>) -> Result<Waited<()>> {
        let mut msg = Some(msg);
        interrupt::wait(timeout, |slice| {
            let m = msg.take().expect("kept");
            let sent = match self {
                Sink::Channel(c) => c.send_timeout(m, slice),
                Sink::Pipe(p) => p.send_timeout(m, slice),
            };
            match sent {
                Ok(()) => Ok(Some(())),
                Err(SendTimeoutError::Timeout(m)) => {
                    msg = Some(m);
                    Ok(None)
                }
                Err(SendTimeoutError::Failed(e)) => Err(anyhow!(e.error)).context("send failed"),
            }
        })
    }

    /// Delivers everything sent, then closes.
    pub fn close(self) -> Result<()> {
        match self {
            Sink::Channel(c) => (*c).close()?,
            Sink::Pipe(p) => p.close()?,
        }
        Ok(())
    }
}

impl Source {
    /// Receives one message, waiting at most `timeout` (forever if None).
    pub fn recv(&self, timeout: Option<Duration>) -> Result<Received> {
        let got = interrupt::wait(timeout, |slice| {
            let result = match self {
                Source::Channel(c) => c.recv_timeout(slice),
                Source::Pipe(p) => p.recv_timeout(slice),
            };
            match result {
                Ok(m) => Ok(Some(Received::Message(m))),
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Closed) => Ok(Some(Received::Closed)),
                Err(RecvTimeoutError::Failed(e)) => Err(e).context("receive failed"),
            }
        })?;
        Ok(match got {
            Waited::Done(r) => r,
            Waited::TimedOut => Received::TimedOut,
            Waited::Interrupted => Received::Interrupted,
        })
    }
}

/// Options of the channel.
pub struct Open<'a> {
    pub endpoint: &'a EndpointArgs,
    pub timeout: Option<Duration>,
    pub max_size: Option<usize>,
    pub watch: &'a Watch,
    /// CURVE or PLAIN, and who gets in (`None`: NULL, everyone).
    pub security: Option<conduit::Security>,
}

impl Open<'_> {
    fn builder(&self) -> ChannelBuilder {
        let mut builder = ChannelBuilder::new();
        if let Some(max) = self.max_size {
            builder = builder.max_message_size(max);
        }
        if let Some(t) = self.timeout {
            builder = builder.linger(t);
        }
        if let Some(security) = &self.security {
            builder = builder.security(security.clone());
        }
        builder
    }

    /// Opens a channel from `--bind` / `--connect`; TimedOut if `timeout`
    /// passed while waiting for a peer to come to us.
    fn channel(&self) -> Result<Waited<Channel>> {
        let builder = self.builder();
        if let Some(ep) = &self.endpoint.bind {
            let listener = builder.listen(ep)?;
            self.watch
                .note(format_args!("listening on {}", listener.endpoint()));
            let accepted = interrupt::wait(self.timeout, |slice| {
                match listener.accept_timeout(slice) {
                    Ok(channel) => Ok(Some(channel)),
                    Err(AcceptTimeoutError::Timeout) => Ok(None),
                    // A peer our security refuses is reported, and the next
                    // one awaited: it must not take the server down.
                    Err(AcceptTimeoutError::Failed(e))
                        if self.security.is_some() && is_refusal(&e) =>
                    {
                        crate::say(format_args!(
                            "refused a peer on {ep}: {}",
                            crate::cause_chain(&e)
                        ));
                        Ok(None)
                    }
                    Err(AcceptTimeoutError::Failed(e)) => {
                        Err(e).with_context(|| format!("no peer on {ep}"))
                    }
                }
            })?;
            if let Waited::Done(c) = &accepted {
                self.note_peer(ep, c);
            }
            return Ok(accepted);
        }
        let ep = self
            .endpoint
            .connect
            .as_deref()
            .expect("clap requires --bind or --connect");
        let wait = self.timeout.unwrap_or(DEFAULT_CONNECT_WAIT);
        let channel = builder.connect_timeout(wait).connect(ep)?;
        self.note_peer(ep, &channel);
        Ok(Waited::Done(channel))
    }

    fn note_peer(&self, ep: &str, channel: &Channel) {
        if let Some(peer) = channel.peer() {
            self.watch.note(format_args!(
                "handshake done with {ep}: a {} peer",
                peer.socket_type
            ));
        }
    }

    fn reject_bind_dash(&self) -> Result<()> {
        if self.endpoint.bind.as_deref() == Some("-") {
            bail!("--bind - makes no sense: use --connect - for standard input or output");
        }
        Ok(())
    }

    pub fn sink(&self) -> Result<Waited<Sink>> {
        self.reject_bind_dash()?;
        if self.endpoint.connect.as_deref() == Some("-") {
            let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
            self.watch.note("writing frames to standard output");
            return Ok(Waited::Done(Sink::Pipe(PipeSender::from_fd(fd)?)));
        }
        Ok(map(self.channel()?, |c| Sink::Channel(Box::new(c))))
    }

    pub fn source(&self) -> Result<Waited<Source>> {
        self.reject_bind_dash()?;
        if self.endpoint.connect.as_deref() == Some("-") {
            let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
            self.watch.note("reading frames from standard input");
            return Ok(Waited::Done(Source::Pipe(PipeReceiver::from_fd(fd)?)));
        }
        Ok(map(self.channel()?, |c| Source::Channel(Box::new(c))))
    }
}

fn map<T, U>(w: Waited<T>, f: impl FnOnce(T) -> U) -> Waited<U> {
    match w {
        Waited::Done(t) => Waited::Done(f(t)),
        Waited::TimedOut => Waited::TimedOut,
        Waited::Interrupted => Waited::Interrupted,
    }
}

/// Whether a failed accept was a peer failing or refused by our security's
/// handshake, rather than the listener breaking.
fn is_refusal(e: &conduit::Error) -> bool {
    matches!(
        e,
        conduit::Error::Protocol(_)
            | conduit::Error::ClosedDuringHandshake
            | conduit::Error::HandshakeTimeout(_)
    )
}
