//! Opening the channel a command talks over, from `--bind` / `--connect`.

use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use conduit::{Channel, ChannelBuilder, Message, PipeReceiver, PipeSender, RecvTimeoutError};

use crate::args::EndpointArgs;

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
}

impl Sink {
    pub fn send(&self, msg: Message) -> Result<()> {
        match self {
            Sink::Channel(c) => c.send(msg)?,
            Sink::Pipe(p) => p.send(msg)?,
        }
        Ok(())
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
        let result = match (self, timeout) {
            (Source::Channel(c), Some(t)) => c.recv_timeout(t),
            (Source::Pipe(p), Some(t)) => p.recv_timeout(t),
            (Source::Channel(c), None) => c.recv().map_err(untimed),
            (Source::Pipe(p), None) => p.recv().map_err(untimed),
        };
        match result {
            Ok(m) => Ok(Received::Message(m)),
            Err(RecvTimeoutError::Timeout) => Ok(Received::TimedOut),
            Err(RecvTimeoutError::Closed) => Ok(Received::Closed),
            Err(RecvTimeoutError::Failed(e)) => Err(e).context("receive failed"),
        }
    }
}

/// A receive without a deadline ends the same ways, less the timeout.
fn untimed(e: conduit::RecvError) -> RecvTimeoutError {
    match e {
        conduit::RecvError::Closed => RecvTimeoutError::Closed,
        conduit::RecvError::Failed(e) => RecvTimeoutError::Failed(e),
    }
}

/// Opens a channel from `--bind` / `--connect`, or None if `timeout` passed
/// while waiting for a peer to bind to us.
fn open_channel(endpoint: &EndpointArgs, timeout: Option<Duration>) -> Result<Option<Channel>> {
    let builder = ChannelBuilder::new();
    if let Some(ep) = &endpoint.bind {
        let listener = builder.listen(ep)?;
        return match timeout {
            Some(t) => listener
                .accept_timeout(t)
                .with_context(|| format!("no peer on {ep}")),
            None => listener
                .accept()
                .map(Some)
                .with_context(|| format!("no peer on {ep}")),
        };
    }
    let ep = endpoint
        .connect
        .as_deref()
        .expect("clap requires --bind or --connect");
    let wait = timeout.unwrap_or(DEFAULT_CONNECT_WAIT);
    Ok(Some(builder.connect_timeout(wait).connect(ep)?))
}

fn reject_bind_dash(endpoint: &EndpointArgs) -> Result<()> {
    if endpoint.bind.as_deref() == Some("-") {
        bail!("--bind - makes no sense: use --connect - for standard input or output");
    }
    Ok(())
}

pub fn open_sink(endpoint: &EndpointArgs, timeout: Option<Duration>) -> Result<Option<Sink>> {
    reject_bind_dash(endpoint)?;
    if endpoint.connect.as_deref() == Some("-") {
        let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
        return Ok(Some(Sink::Pipe(PipeSender::from_fd(fd)?)));
    }
    Ok(open_channel(endpoint, timeout)?.map(|c| Sink::Channel(Box::new(c))))
}

pub fn open_source(endpoint: &EndpointArgs, timeout: Option<Duration>) -> Result<Option<Source>> {
    reject_bind_dash(endpoint)?;
    if endpoint.connect.as_deref() == Some("-") {
        let fd = std::io::stdin().as_fd().try_clone_to_owned()?;
        return Ok(Some(Source::Pipe(PipeReceiver::from_fd(fd)?)));
    }
    Ok(open_channel(endpoint, timeout)?.map(|c| Source::Channel(Box::new(c))))
}
