//! The I/O engine: a fixed set of I/O threads, each one event loop over the
//! non-blocking connections of the sockets assigned to it.
//!
//! # Contract
//!
//! - A process has [`io_threads`] I/O threads (default 1; `CONDUIT_IO_THREADS`
//!   in the environment, or [`set_io_threads`] before the first socket). They
//!   start with the first `Socket` and live as long as the process.
//! - Each socket has a reactor (`reactor.rs`): an epoll set of its own over its
//!   listeners and connections, its timers, and a doorbell (a task queue and a
//!   waker). The reactor accepts, connects and reconnects, runs handshakes and
//!   their timeouts, heartbeats, reads into the peers' inbound queues and
//!   writes what application threads left queued. Nothing else reads a
//!   connection or closes its descriptor.
//! - A socket is assigned to one I/O thread (round-robin) for its whole life,
//!   which runs its reactor whenever it has work; an application thread about
//!   to sleep waiting on the socket runs it instead (`io_thread.rs` says when,
//!   and why).
//! - Application threads reach a reactor only through its [`Doorbell`], and
//!   may write to a connection themselves only while its send queue is empty
//!   (`out.rs`): bytes are never reordered.
//! - Events flow back as values: the I/O thread delivers messages into the
//!   socket's state under its lock and signals the socket's condition variable;
//!   it never calls application code while holding a lock (the monitor callback
//!   runs with no lock held).
//!
//! # Lock order
//!
//! `Core::reactor`, then `Core::state` (the socket's pattern state), then
//! `PeerOut::state` (one peer's send queue), then the doorbell's locks.
//! Application threads take a reactor only with `try_lock`, never while
//! holding another of these.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, Misuse};

mod conn;
mod connect;
pub(crate) mod inproc;
mod io_thread;
pub(crate) mod out;
pub(crate) mod outlet;
mod reactor;
mod timers;

pub(crate) use io_thread::{Doorbell, IoHandle};
pub(crate) use reactor::{Reactor, Task};

/// The I/O threads of this process, made on first use.
struct Engine {
    threads: Vec<Arc<IoHandle>>,
    next: AtomicUsize,
}

static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();

/// The I/O thread count asked for before the engine started (0: not set).
static REQUESTED: AtomicUsize = AtomicUsize::new(0);

/// Sets how many I/O threads this process runs (like libzmq's
/// `ZMQ_IO_THREADS`), before the first socket is made. The environment
/// variable `CONDUIT_IO_THREADS` sets it too; this call wins over it.
///
/// One thread serves tens of thousands of connections; more help only when
/// several sockets each move a lot of data, since a socket's connections all
/// belong to one thread.
///
/// ```
/// // Typically the first thing `main` does, if anything.
/// let _ = conduit::set_io_threads(1);
/// ```
pub fn set_io_threads(n: usize) -> Result<(), Error> {
    if n == 0 {
        return Err(Misuse::NoIoThreads.into());
    }
    if ENGINE.get().is_some() {
        if io_threads() == n {
            return Ok(());
        }
        return Err(Misuse::IoThreadsStarted.into());
    }
    REQUESTED.store(n, Ordering::Relaxed);
    Ok(())
}

/// How many I/O threads this process runs (or will, once the first socket is
/// made).
pub fn io_threads() -> usize {
    if let Some(Ok(engine)) = ENGINE.get() {
        return engine.threads.len();
    }
    wanted_threads()
}

fn wanted_threads() -> usize {
    match REQUESTED.load(Ordering::Relaxed) {
        0 => std::env::var("CONDUIT_IO_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or(1)
            .min(64),
        n => n,
    }
}

/// The I/O thread that a new socket is assigned to.
pub(crate) fn assign() -> Result<Arc<IoHandle>, Error> {
    let engine = ENGINE.get_or_init(|| {
        let mut threads = Vec::new();
        for i in 0..wanted_threads() {
            threads.push(io_thread::start(i).map_err(|e| format!("cannot start I/O thread: {e}"))?);
        }
        Ok(Engine {
            threads,
            next: AtomicUsize::new(0),
        })
    });
    match engine {
        Ok(engine) => {
            let i = engine.next.fetch_add(1, Ordering::Relaxed) % engine.threads.len();
            Ok(engine.threads[i].clone())
        }
        Err(e) => Err(Error::io(
            e.clone(),
            std::io::Error::other("the I/O engine could not start"),
        )),
    }
}
