//! conduit's `AsyncSocket` (feature `tokio`, issue 13), used as a
//! single-threaded tokio program uses it: the same sockets as `conduit-socket`
//! (PAIR for round trips, PUSH to PULL for streams, bound and connected the
//! same way), made async on a current-thread runtime that the application
//! thread owns. A round trip's two ends each run their loop as one task in one
//! `block_on` (`Link::ping_pong`, `Link::echo_all`), as a tokio program does.
//! A stream's sends and receives are polled once at once and go to a
//! `block_on` of their own only when they must wait, which a stream seldom
//! does. Either way the waiting task steps the socket's reactor itself, as
//! the blocking `recv` does.
//!
//! Current-thread rather than multi-thread: the async adapter needs no worker
//! of its own (readiness comes from the socket's descriptors), and a
//! multi-thread runtime's `block_on` would add a hand-off to a worker for
//! nothing the measurement uses.

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use std::time::Instant;

use anyhow::{Result, bail};
use bytes::Bytes;
use conduit::{AsyncSocket, Message};
use tokio::runtime::Runtime;

use crate::case::{Case, Role, Timing};
use crate::conduit_impl::{closed_or, socket_end};
use crate::measure::{Link, RoundTrips};
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

impl AsyncLink {
    /// One round trip, awaited.
    async fn round_trip(&self, size: usize) -> Result<()> {
        self.socket
            .send(Message::from(self.payload.clone()))
            .await?;
        match closed_or(self.socket.recv().await)? {
            Some(m) if m.byte_len() == size => Ok(()),
            Some(m) => bail!("echo of {} bytes, sent {size}", m.byte_len()),
            None => bail!("the echoing end closed"),
        }
    }
}

impl Link for AsyncLink {
    fn send(&mut self) -> Result<()> {
        self.run(self.socket.send(Message::from(self.payload.clone())))?;
        Ok(())
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        Ok(closed_or(self.run(self.socket.recv()))?.map(|m| m.byte_len()))
    }

    fn echo(&mut self) -> Result<bool> {
        match closed_or(self.run(self.socket.recv()))? {
            Some(m) => {
                self.run(self.socket.send(m))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The loop of `measure::ping_pong` as one task awaiting each send and
    /// receive, in one `block_on` for the whole measurement, as a tokio
    /// program runs it: a wait for the echo parks the runtime and polls the
    /// task again, where a `block_on` per receive also entered and left the
    /// runtime each time.
    fn ping_pong(&mut self, size: usize, timing: &Timing) -> Result<RoundTrips> {
        let this = &*self;
        this.rt.block_on(async {
            let start = Instant::now();
            while start.elapsed() < timing.warmup {
                this.round_trip(size).await?;
            }
            let mut times = Vec::with_capacity(1 << 16);
            let start = Instant::now();
            let mut t0 = start;
            loop {
                this.round_trip(size).await?;
                let t1 = Instant::now();
                times.push((t1 - t0).as_nanos() as u64);
                if t1 - start >= timing.measure {
                    break;
                }
                t0 = t1;
            }
            Ok(RoundTrips::from_times(times))
        })
    }

    /// The loop of `measure::echo` as one task, likewise.
    fn echo_all(&mut self) -> Result<()> {
        let this = &*self;
        this.rt.block_on(async {
            while let Some(m) = closed_or(this.socket.recv().await)? {
                this.socket.send(m).await?;
            }
            Ok(())
        })
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
