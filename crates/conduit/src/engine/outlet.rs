//! Where a peer's messages go: a connection's send queue, or an inproc pipe.

use std::sync::Arc;

use conduit_proto::{Command, Message, SubscriptionMessage};

use super::inproc::Pipe;
use super::out::{PeerOut, Refused, Unbounded};
use super::reactor::Task;
use crate::error::Error;

#[derive(Debug, Clone)]
pub(crate) enum Outlet {
    /// A connection's send queue, written to its stream (`out.rs`).
    Stream(Arc<PeerOut>),
    /// The pipe to a socket of this process (`inproc/`).
    Inproc(Arc<Pipe>),
}

impl Outlet {
    /// Queues `msg` without waiting, or gives it back (see [`Refused`]).
    pub(crate) fn offer(&self, msg: Message) -> Result<(), Refused> {
        match self {
            Outlet::Stream(out) => out.offer(msg),
            Outlet::Inproc(pipe) => pipe.offer(msg, true),
        }
    }

    /// Queues a copy of `msg` without waiting (a stream's queue encodes it
    /// straight from the caller's message); false if it was refused.
    pub(crate) fn offer_ref(&self, msg: &Message) -> bool {
        match self {
            Outlet::Stream(out) => out.offer_ref(msg).is_ok(),
            Outlet::Inproc(pipe) => pipe.offer(msg.clone(), true).is_ok(),
        }
    }

    /// Whether a send would be refused for the high-water mark.
    pub(crate) fn is_full(&self) -> bool {
        match self {
            Outlet::Stream(out) => out.is_full(),
            Outlet::Inproc(pipe) => pipe.is_full(),
        }
    }

    /// Tells a publisher of a subscription change, past the high-water mark:
    /// as a command to a ZMTP 3.1 peer, else as a message in ZMTP 3.0 form,
    /// which is also what an inproc publisher admits.
    pub(crate) fn subscription(&self, sub: SubscriptionMessage, peer_is_3_1: bool) {
        match self {
            Outlet::Stream(out) if peer_is_3_1 => {
                let cmd = match sub {
                    SubscriptionMessage::Subscribe(t) => Command::Subscribe(t),
                    SubscriptionMessage::Cancel(t) => Command::Cancel(t),
                };
                out.push_unbounded(Unbounded::Command(&cmd));
            }
            Outlet::Stream(out) => {
                out.push_unbounded(Unbounded::Message(&Message::from(sub.to_frame())));
            }
            Outlet::Inproc(pipe) => {
                let _ = pipe.offer(Message::from(sub.to_frame()), false);
            }
        }
    }

    /// The task that makes the socket's reactor read this peer again, once
    /// the socket has room for its messages.
    pub(crate) fn resume_task(&self) -> Task {
        match self {
            Outlet::Stream(out) => Task::Resume(out.conn()),
            Outlet::Inproc(pipe) => Task::InprocResume(pipe.link()),
        }
    }

    /// The task that drops this peer, for `error`.
    pub(crate) fn kick_task(&self, error: Error) -> Task {
        match self {
            Outlet::Stream(out) => Task::Kick(out.conn(), error),
            Outlet::Inproc(pipe) => Task::InprocKick(pipe.link(), error),
        }
    }
}
