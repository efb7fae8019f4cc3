//! conduit, used as an application would: a PAIR `Channel` over ipc and tcp, and
//! `PipeSender`/`PipeReceiver` over pipes made as `conduit::pipe()` makes them;
//! and conduit's pattern `Socket` (PAIR for round trips, PUSH to PULL for
//! streams) over ipc and tcp.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use conduit::{
    Channel, ChannelBuilder, Message, PipeReceiver, PipeSender, RecvError, Socket, SocketType,
};

use crate::case::{Case, Impl, Mode, Role, Transport, curve_keys};
use crate::measure::Link;
use crate::peer::{Meet, announce};

/// The two directions of a link; a one-way pipe has only one of them.
enum Ends {
    // Boxed: a Channel is large next to two pipe ends, and one link lives per run.
    Channel(Box<Channel>),
    Pipes {
        tx: Option<PipeSender>,
        rx: Option<PipeReceiver>,
    },
}

struct ConduitLink {
    ends: Ends,
    /// The payload, shared by every message sent: a send costs no copy in user
    /// space, as with any `Bytes` an application already has.
    payload: Bytes,
}

pub fn closed_or<T>(r: Result<T, RecvError>) -> Result<Option<T>> {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(RecvError::Closed) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An end that moves whole conduit messages; every such end is a [`Link`] the
/// same way (the payload it sends, its echo).
pub trait MessageEnd {
    /// The payload every message sent carries.
    fn payload(&self) -> &Bytes;
    fn send_message(&mut self, m: Message) -> Result<()>;
    /// `None` once the peer closed.
    fn recv_message(&mut self) -> Result<Option<Message>>;
}

impl<T: MessageEnd> Link for T {
    fn send(&mut self) -> Result<()> {
        let m = Message::from(self.payload().clone());
        self.send_message(m)
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        Ok(self.recv_message()?.map(|m| m.byte_len()))
    }

    fn echo(&mut self) -> Result<bool> {
        match self.recv_message()? {
            Some(m) => self.send_message(m).map(|()| true),
            None => Ok(false),
        }
    }
}

impl MessageEnd for ConduitLink {
    fn payload(&self) -> &Bytes {
        &self.payload
    }

    fn send_message(&mut self, m: Message) -> Result<()> {
        match &self.ends {
            Ends::Channel(ch) => ch.send(m)?,
            Ends::Pipes { tx, .. } => tx.as_ref().context("no sending end")?.send(m)?,
        }
        Ok(())
    }

    fn recv_message(&mut self) -> Result<Option<Message>> {
        match &self.ends {
            Ends::Channel(ch) => closed_or(ch.recv()),
            Ends::Pipes { rx, .. } => closed_or(rx.as_ref().context("no receiving end")?.recv()),
        }
    }
}

/// Connects a conduit link for `case`.
pub fn open(case: &Case, role: Role, meet: Meet) -> Result<Box<dyn Link>> {
    let mut builder = ChannelBuilder::new().connect_timeout(Duration::from_secs(10));
    if meet.sockbuf > 0 {
        builder = builder
            .send_buffer_size(meet.sockbuf)
            .recv_buffer_size(meet.sockbuf);
    }
    let ends = match case.transport {
        Transport::Pipe => {
            let mut fds = meet.fds.into_iter();
            let mut next = || fds.next().ok_or_else(|| anyhow!("missing a pipe end"));
            match (case.mode, role) {
                (Mode::Lat, _) => Ends::Pipes {
                    rx: Some(PipeReceiver::from_fd(next()?)?),
                    tx: Some(PipeSender::from_fd(next()?)?),
                },
                (Mode::Thr, Role::Local) => Ends::Pipes {
                    rx: Some(PipeReceiver::from_fd(next()?)?),
                    tx: None,
                },
                (Mode::Thr, Role::Remote) => Ends::Pipes {
                    rx: None,
                    tx: Some(PipeSender::from_fd(next()?)?),
                },
            }
        }
        Transport::Ipc | Transport::Tcp => Ends::Channel(Box::new(match role {
            Role::Local => {
                let endpoint = match case.transport {
                    Transport::Ipc => format!("ipc://{}", meet.dir.join("conduit.sock").display()),
                    _ => "tcp://127.0.0.1:0".to_owned(),
                };
                let listener = builder.listen(&endpoint)?;
                announce(&listener.endpoint().to_string());
                listener.accept()?
            }
            Role::Remote => builder.connect(meet.endpoint()?)?,
        })),
    };
    Ok(Box::new(ConduitLink {
        ends,
        payload: Bytes::from(vec![0xA5; case.size]),
    }))
}

/// A conduit `Socket` end.
struct SocketLink {
    socket: Socket,
    payload: Bytes,
}

impl MessageEnd for SocketLink {
    fn payload(&self) -> &Bytes {
        &self.payload
    }

    fn send_message(&mut self, m: Message) -> Result<()> {
        self.socket.send(m)?;
        Ok(())
    }

    fn recv_message(&mut self) -> Result<Option<Message>> {
        closed_or(self.socket.recv())
    }
}

/// Opens a conduit `Socket` end for `case` (see [`socket_end`]).
pub fn open_socket(case: &Case, role: Role, meet: Meet) -> Result<Box<dyn Link>> {
    Ok(Box::new(SocketLink {
        socket: socket_end(case, role, &meet)?,
        payload: Bytes::from(vec![0xA5; case.size]),
    }))
}

/// How long `conduit-spin` busy-polls before sleeping: as `omq-spin`.
pub const SPIN: std::time::Duration = crate::omq_impl::SPIN;

/// A bound or connected conduit `Socket` for `case`: the local end binds (PAIR
/// for a round trip, PULL for a stream), the remote one connects (PAIR, PUSH).
/// With `conduit-curve`, the local end is the CURVE server and the remote end
/// its client, with the fixed keys of `curve_keys`.
pub fn socket_end(case: &Case, role: Role, meet: &Meet) -> Result<Socket> {
    let kind = match (case.mode, role) {
        (Mode::Lat, _) => SocketType::Pair,
        (Mode::Thr, Role::Local) => SocketType::Pull,
        (Mode::Thr, Role::Remote) => SocketType::Push,
    };
    let mut builder = Socket::builder(kind);
    if meet.sockbuf > 0 {
        builder = builder
            .send_buffer_size(meet.sockbuf)
            .recv_buffer_size(meet.sockbuf);
    }
    if case.imp == Impl::ConduitSpin {
        builder = builder.busy_poll(SPIN);
    }
    if case.imp == Impl::ConduitCurve {
        let (server, client) = curve_keys();
        builder = match role {
            Role::Local => builder.curve_server(server),
            Role::Remote => builder.curve_client(server.public, Some(client)),
        };
    }
    let socket = builder.build()?;
    match role {
        Role::Local => {
            let endpoint = match case.transport {
                Transport::Ipc => format!("ipc://{}", meet.dir.join("socket.sock").display()),
                Transport::Tcp => "tcp://127.0.0.1:*".to_owned(),
                Transport::Pipe => anyhow::bail!("conduit's sockets have no pipe transport"),
            };
            let bound = socket.bind(&endpoint)?;
            announce(&bound.to_string());
        }
        // Returns at once; the first send waits until the connection is up.
        Role::Remote => socket.connect(meet.endpoint()?)?,
    }
    Ok(socket)
}
