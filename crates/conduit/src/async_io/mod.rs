//! Async sockets and channels on tokio (cargo feature `tokio`).
//!
//! # Contract
//!
//! - An adapter over the blocking library, not a second engine: every
//!   operation is the blocking type's `try_*` call, retried when a readiness
//!   descriptor says something changed. No thread is started per socket or
//!   channel; waiting is tokio's reactor watching a descriptor.
//! - [`AsyncSocket`]: the socket's receive readiness eventfd (level-triggered,
//!   readable exactly while a message is queued or the socket is closed, kept
//!   so only while a task waits on it), its send readiness eventfd (written on
//!   every change that may let a send through, while a sender waits), and its
//!   reactor's epoll descriptor, all duplicated into tokio's `AsyncFd`. A
//!   waiting task steps the reactor itself when that is readable, as a
//!   blocking `recv` does, so the socket's I/O thread stays out of the way
//!   (`engine/io_thread.rs`); a message the task queues itself needs no
//!   signal of the eventfd, which is why it counts as a waiter only while it
//!   waits. A receive takes queued messages without a step (the reactor's
//!   readiness shows when there is I/O), and a reactor with one connection
//!   and no listener has that connection read without its `epoll_wait`
//!   (`Reactor::read_sole`). Waiting on the reactor alone would lose
//!   wake-ups: another thread stepping it consumes the event before tokio's
//!   nested epoll looks, so the eventfd stays. One wait at a time (per
//!   adapter) watches the descriptors through tokio's reader slot, which
//!   costs fewer locks but keeps one waker; any other wait at the same time
//!   goes through tokio's waiter list, and tokio wakes both.
//! - [`AsyncChannel`]: a channel has no I/O thread; its connection is the
//!   descriptor. Its receive waits on that descriptor's readability after the
//!   channel's own buffer is found empty; its send waits on writability.
//! - Cancellation: a receive takes a message only in the poll that returns it,
//!   so a dropped receive future loses nothing. A send future holds its message
//!   until it is sent; [`SocketSend::take_message`] hands an unsent one back.
//!   Written per method below.
//! - Readiness is a hint that is never missed, not a promise: after a wake-up
//!   the `try_*` call decides.

mod channel;
mod socket;

pub use channel::AsyncChannel;
pub use socket::{AsyncSocket, SocketSend};

use crate::error::Error;

/// The error for a tokio registration or readiness wait that failed.
fn wait_error(e: std::io::Error) -> Error {
    Error::io("cannot wait for readiness in the tokio reactor", e)
}

/// Registers a descriptor of our own with tokio's reactor.
fn register(
    fd: std::os::fd::OwnedFd,
    interest: tokio::io::Interest,
) -> Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>, Error> {
    // SAFETY: an `OwnedFd` is a valid open descriptor that only its drop
    // closes, and it always returns the same number; the `AsyncFd` owns it,
    // so it stays open and the same file description for the `AsyncFd`'s life.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, interest) }
        .map_err(|e| wait_error(e.into_parts().1))
}

/// Fails unless called in a tokio runtime: `AsyncFd` would panic.
fn need_runtime() -> Result<(), Error> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|_| {
            Error::io(
                "async sockets and channels are made inside a tokio runtime",
                std::io::Error::other("no tokio runtime on this thread"),
            )
        })
}
