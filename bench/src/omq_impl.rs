//! omq.rs (crate `omq-tokio`), the pure-Rust ZeroMQ, used as its documentation
//! shows: PAIR sockets for round trips, PUSH to PULL for streams, over ipc and
//! tcp (omq has no pipe transport). Three ways to drive it, each its own `Impl`,
//! because none is fastest everywhere and the report shows the best per cell:
//!
//! - `omq`: the blocking API (`Context::new()`, one I/O thread owned by the
//!   context; `send`/`recv` park the calling thread), with its defaults;
//! - `omq-spin`: the same, with `recv_spin` set, so a blocking `recv`
//!   busy-polls for up to [`SPIN`] before parking: what omq offers for
//!   cross-core latency, and what costs a core shared with the peer;
//! - `omq-async`: the async API on a tokio current-thread runtime owned by the
//!   application thread (`Context::current()`), so the connection is driven
//!   on the thread that sends and receives, as a single-threaded tokio program
//!   does; each `send`/`recv` is one `block_on`.
//!
//! Every thread omq starts inherits the process's pinning (see `peer::run`).

use std::time::Duration;

use anyhow::{Result, bail};
use bytes::Bytes;
use omq_tokio::{Context, Message, Options, SocketType, blocking};

use crate::case::{Case, Impl, Mode, Role, Transport};
use crate::measure::Link;
use crate::peer::{Meet, announce};

/// How long `omq-spin` busy-polls before parking: omq's documented example.
pub const SPIN: Duration = Duration::from_micros(50);

/// A socket of either API; the async one with the runtime that drives it.
enum Ends {
    Blocking(blocking::Socket),
    Async {
        rt: tokio::runtime::Runtime,
        socket: omq_tokio::Socket,
    },
}

struct OmqLink {
    ends: Ends,
    /// The payload, shared by every message sent (no copy in user space, as
    /// for conduit).
    payload: Bytes,
    // Keeps the blocking API's context (and its I/O thread) alive.
    _ctx: Option<Context>,
}

impl OmqLink {
    fn send_message(&self, m: Message) -> Result<()> {
        match &self.ends {
            Ends::Blocking(s) => s.send(m)?,
            Ends::Async { rt, socket } => rt.block_on(socket.send(m))?,
        }
        Ok(())
    }

    fn recv_message(&self) -> Result<Message> {
        Ok(match &self.ends {
            Ends::Blocking(s) => s.recv()?,
            Ends::Async { rt, socket } => rt.block_on(socket.recv())?,
        })
    }
}

impl Link for OmqLink {
    fn send(&mut self) -> Result<()> {
        self.send_message(Message::single(self.payload.clone()))
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        // A peer that left is never reported here: omq waits for it to come
        // back. The runner kills this end once it has the other's result.
        Ok(Some(self.recv_message()?.byte_len()))
    }

    fn echo(&mut self) -> Result<bool> {
        let m = self.recv_message()?;
        self.send_message(m)?;
        Ok(true)
    }
}

fn endpoint(case: &Case, meet: &Meet) -> Result<String> {
    Ok(match case.transport {
        Transport::Ipc => format!("ipc://{}", meet.dir.join("omq.sock").display()),
        Transport::Tcp => "tcp://127.0.0.1:0".to_owned(),
        Transport::Pipe => bail!("omq has no pipe transport"),
    })
}

/// Opens an omq link for `case`, with the API that `case.imp` names.
pub fn open(case: &Case, role: Role, meet: Meet) -> Result<Box<dyn Link>> {
    let kind = match (case.mode, role) {
        (Mode::Lat, _) => SocketType::Pair,
        (Mode::Thr, Role::Local) => SocketType::Pull,
        (Mode::Thr, Role::Remote) => SocketType::Push,
    };
    let mut options = Options::default();
    if case.imp == Impl::OmqSpin {
        options = options.recv_spin(SPIN);
    }
    if meet.sockbuf > 0 {
        options = options
            .send_buffer_size(meet.sockbuf)
            .recv_buffer_size(meet.sockbuf);
    }
    let payload = Bytes::from(vec![0xA5; case.size]);
    let link = match case.imp {
        Impl::Omq | Impl::OmqSpin => {
            let ctx = Context::new();
            let socket = ctx.blocking_socket(kind, options);
            match role {
                Role::Local => {
                    let bound = socket.bind(endpoint(case, &meet)?.as_str())?;
                    announce(&bound.to_string());
                }
                Role::Remote => socket.connect(meet.endpoint()?)?,
            }
            OmqLink {
                ends: Ends::Blocking(socket),
                payload,
                _ctx: Some(ctx),
            }
        }
        Impl::OmqAsync => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let socket = {
                let _in_runtime = rt.enter();
                Context::current().socket(kind, options)
            };
            match role {
                Role::Local => {
                    let bound = rt.block_on(socket.bind(endpoint(case, &meet)?.as_str()))?;
                    announce(&bound.to_string());
                }
                Role::Remote => rt.block_on(socket.connect(meet.endpoint()?))?,
            }
            OmqLink {
                ends: Ends::Async { rt, socket },
                payload,
                _ctx: None,
            }
        }
        other => bail!("{other} is not omq"),
    };
    Ok(Box::new(link))
}
