//! [`AsyncChannel`]: a [`Channel`] whose waits are tokio futures.
//!
//! A channel has no I/O thread: its connection's descriptor is the only
//! thing that changes under it. So the adapter registers duplicates of that
//! descriptor with tokio (reading and writing apart: a channel's two halves may
//! be two pipes) and waits on them between `try_recv` / `try_send` calls. The
//! descriptor stays blocking (the blocking API shares it); the `try_*` calls
//! never block on it. tokio's registration is edge-triggered, and a
//! `try_recv` may leave bytes in the kernel (a message ends mid-read) or in
//! the channel's buffer, so readiness is cleared only after a zero-timeout
//! `poll(2)` finds nothing more there and the channel buffers nothing.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use conduit_proto::Message;
use rustix::event::PollFlags;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::{need_runtime, register, wait_error};
use crate::channel::Channel;
use crate::error::{Error, RecvError, SendError, TryRecvError, TrySendError};
use crate::poller::fd_ready;

/// A [`Channel`] for async code on tokio: `recv().await` and `send(..).await`.
///
/// The same channel, not a copy ([`get_ref`](Self::get_ref),
/// [`into_inner`](Self::into_inner)); no thread is started for it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use conduit::{AsyncChannel, Channel};
///
/// let (a, b) = Channel::pair()?;
/// let (a, b) = (AsyncChannel::new(a)?, AsyncChannel::new(b)?);
/// a.send("hello").await?;
/// assert_eq!(b.recv().await?.concat(), "hello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncChannel {
    channel: Channel,
    readable: AsyncFd<OwnedFd>,
    writable: AsyncFd<OwnedFd>,
}

impl AsyncChannel {
    /// Makes `channel` async. Call it inside a tokio runtime with I/O enabled:
    /// outside one it fails; in a runtime built without I/O tokio panics.
    pub fn new(channel: Channel) -> Result<AsyncChannel, Error> {
        need_runtime()?;
        let (reader, writer) = channel.halves();
        let dup = |fd: BorrowedFd<'_>| {
            fd.try_clone_to_owned()
                .map_err(|e| Error::io("cannot duplicate the channel's descriptor", e))
        };
        let readable = register(dup(reader.fd())?, Interest::READABLE)?;
        let writable = register(dup(writer.fd())?, Interest::WRITABLE)?;
        Ok(AsyncChannel {
            channel,
            readable,
            writable,
        })
    }

    /// The blocking channel underneath.
    pub fn get_ref(&self) -> &Channel {
        &self.channel
    }

    /// The blocking channel back.
    pub fn into_inner(self) -> Channel {
        self.channel
    }

    /// Receives the next message, waiting until one has arrived whole.
    /// [`RecvError::Closed`] means the peer closed cleanly.
    ///
    /// Cancel safety: safe. A message is decoded and taken only in the poll
    /// that returns it; bytes read before are kept in the channel's buffer.
    pub async fn recv(&self) -> Result<Message, RecvError> {
        loop {
            match self.channel.try_recv() {
                Ok(m) => return Ok(m),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Failed(e)) => return Err(RecvError::Failed(e)),
                Err(TryRecvError::Empty) => {}
            }
            let mut guard = self.readable.readable().await.map_err(wait_error)?;
            let (reader, _) = self.channel.halves();
            if fd_ready(reader.fd(), PollFlags::IN) {
                // More bytes in the kernel than the last look took: read on,
                // after giving other tasks a turn.
                drop(guard);
                tokio::task::yield_now().await;
            } else {
                // Bytes that arrive from now on come with a new edge.
                guard.clear_ready();
            }
        }
    }

    /// Receives a message only if one has arrived whole already.
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        self.channel.try_recv()
    }

    /// Sends a message, waiting while the peer is not keeping up.
    ///
    /// Cancel safety: the message moves into the future; if it is dropped
    /// before completing, the message was not sent (no part of it is written:
    /// a message is written whole or queued whole by `try_send`) and is dropped
    /// with it. Use [`try_send`](Self::try_send) with
    /// [`writable`](Self::writable) to keep the message in hand.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        let mut message = message.into();
        loop {
            match self.channel.try_send(message) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Failed(e)) => return Err(e),
                Err(TrySendError::Full(m)) => message = m,
            }
            if let Err(error) = self.writable().await {
                return Err(SendError { message, error });
            }
        }
    }

    /// Waits until the channel's descriptor may take more bytes: then a
    /// [`try_send`](Self::try_send) is worth trying. Cancel safe.
    pub async fn writable(&self) -> Result<(), Error> {
        let mut guard = self.writable.writable().await.map_err(wait_error)?;
        let (_, writer) = self.channel.halves();
        if fd_ready(writer.fd(), PollFlags::OUT) {
            // The kernel has room, yet the last send was refused: the
            // channel's own queue is full or another task is writing. Look
            // again shortly rather than wait for an edge that may not come.
            drop(guard);
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            guard.clear_ready();
        }
        Ok(())
    }

    /// Sends a message only if that needs no waiting.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        self.channel.try_send(message)
    }

    /// Closes the channel as [`Channel::close`] does, waiting for queued
    /// messages on tokio's blocking pool.
    pub async fn close(self) -> Result<(), Error> {
        let AsyncChannel { channel, .. } = self;
        tokio::task::spawn_blocking(move || channel.close())
            .await
            .map_err(|e| Error::io("closing the channel failed", std::io::Error::other(e)))?
    }
}

impl Channel {
    /// This channel as an [`AsyncChannel`] (feature `tokio`).
    pub fn into_async(self) -> Result<AsyncChannel, Error> {
        AsyncChannel::new(self)
    }
}
