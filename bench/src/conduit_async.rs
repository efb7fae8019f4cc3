//! conduit's `AsyncSocket` (feature `tokio`, issue 13), used as a
//! single-threaded tokio program uses it: the same sockets as `conduit-socket`
//! (PAIR for round trips, PUSH to PULL for streams, bound and connected the
//! same way), made async on a current-thread runtime that the application
//! thread owns. Each end runs its measuring loop (the loops of `measure.rs`,
//! awaited) as one task in one `block_on` for the whole measurement, as a
//! tokio program does: a wait parks the runtime and polls the task again. The
//! waiting task steps the socket's reactor itself, as the blocking `recv`
//! does.
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
use crate::measure::{self, Drained, Laps, Link, RoundTrips};
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
            let mut laps = Laps::start(timing.measure);
            loop {
                this.round_trip(size).await?;
                if laps.lap() {
                    return Ok(laps.finish());
                }
            }
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

    /// The loop of `measure::stream` as one task, likewise.
    fn stream_all(&mut self) {
        let this = &*self;
        this.rt.block_on(async {
            while this
                .socket
                .send(Message::from(this.payload.clone()))
                .await
                .is_ok()
            {}
        });
    }

    /// The loop of `measure::drain` as one task, likewise: the same stride
    /// between looks at the clock, the same windows.
    fn drain(&mut self, size: usize, timing: &Timing) -> Result<Drained> {
        let this = &*self;
        let stride = measure::stride(size);
        let recv_counted = async |until: Instant| -> Result<(u64, Instant)> {
            let mut n = 0u64;
            loop {
                for _ in 0..stride {
                    match closed_or(this.socket.recv().await)? {
                        Some(m) if m.byte_len() == size => {}
                        Some(m) => bail!("received {} bytes, expected {size}", m.byte_len()),
                        None => bail!("the sender closed"),
                    }
                }
                n += stride;
                let now = Instant::now();
                if now >= until {
                    return Ok((n, now));
                }
            }
        };
        this.rt.block_on(async {
            let (mut total, mut t0) = recv_counted(Instant::now() + timing.warmup).await?;
            let window = timing.measure / timing.windows.max(1);
            let mut rates = Vec::new();
            for _ in 0..timing.windows.max(1) {
                let (n, t1) = recv_counted(t0 + window).await?;
                total += n;
                rates.push(n as f64 / (t1 - t0).as_secs_f64().max(1e-9));
                t0 = t1;
            }
            Ok(Drained {
                msgs_per_s: measure::median(&mut rates),
                total,
            })
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
