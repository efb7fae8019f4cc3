//! conduit's `AsyncSocket` (feature `tokio`, issue 13), used as a
//! single-threaded tokio program uses it: the same sockets as `conduit-socket`
//! (PAIR for round trips, PUSH to PULL for streams, bound and connected the
//! same way), made async on a current-thread runtime that the application
//! thread owns. Each send and receive is one `block_on`, so the waiting task
//! steps the socket's reactor itself, as the blocking `recv` does.
//!
//! Current-thread rather than multi-thread: the async adapter needs no worker
//! of its own (readiness comes from the socket's descriptors), and a
//! multi-thread runtime's `block_on` would add a hand-off to a worker for
//! nothing the measurement uses.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use anyhow::Result;
use bytes::Bytes;
use conduit::{AsyncSocket, Message};
use tokio::runtime::Runtime;

use crate::case::{Case, Role};
use crate::conduit_impl::{MessageEnd, closed_or, socket_end};
use crate::measure::Link;
use crate::peer::Meet;

struct AsyncLink {
    // Declared first so that it drops before the runtime it is registered with.
    socket: AsyncSocket,
    rt: Runtime,
    payload: Bytes,
}

impl AsyncLink {
    /// Runs `future` to completion as a task looping over sends or receives
    /// would: its first poll happens right away, and only a future that has
    /// to wait goes to the runtime. A `block_on` per message would measure
    /// tokio entering and leaving its runtime (a random seed, metrics, clock
    /// reads: most of a 64 B stream's time), which a program running its
    /// loop in one task never pays per message.
    ///
    /// The first poll is outside the runtime's context (entering it costs a
    /// thread-local swap per message): the PAIR, PUSH and PULL futures
    /// measured here only poll tokio's readiness, which needs none. (A REQ's
    /// receive may start a timer, which does.)
    fn run<F: Future>(&self, future: F) -> F::Output {
        let mut future = pin!(future);
        match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(output) => output,
            // The next poll, under `block_on`, registers the real waker.
            Poll::Pending => self.rt.block_on(future),
        }
    }
}

impl MessageEnd for AsyncLink {
    fn payload(&self) -> &Bytes {
        &self.payload
    }

    fn send_message(&mut self, m: Message) -> Result<()> {
        self.run(self.socket.send(m))?;
        Ok(())
    }

    fn recv_message(&mut self) -> Result<Option<Message>> {
        closed_or(self.run(self.socket.recv()))
    }
}

/// Opens a `conduit-async` end for `case`.
pub fn open(case: &Case, role: Role, meet: Meet) -> Result<Box<dyn Link>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let socket = socket_end(case, role, &meet)?;
    let socket = {
        // The adapter registers the socket's descriptors with this runtime.
        let _in_runtime = rt.enter();
        socket.into_async()?
    };
    Ok(Box::new(AsyncLink {
        socket,
        rt,
        payload: Bytes::from(vec![0xA5; case.size]),
    }))
}
