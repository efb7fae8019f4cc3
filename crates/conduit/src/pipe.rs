//! One-way channels over OS pipes: the same frames as on a socket, no handshake.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use conduit_proto::{Command, Message};
use rustix::pipe::PipeFlags;

use crate::channel::ChannelBuilder;
use crate::error::{
    Error, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::options::Options;
use crate::process::{EndKind, take_from_parent};
use crate::reader::{Reader, RecvFail};
use crate::transport::pipe::PipeEnd;
use crate::transport::{Transport, Wait};
use crate::writer::{SendFail, Writer};

/// Pipe buffer size asked for: 1 MiB, the default ceiling for unprivileged
/// processes (`/proc/sys/fs/pipe-max-size`). The default 64 KiB makes a large
/// message cost many more context switches.
const PIPE_SIZE: usize = 1 << 20;

/// Creates an OS pipe, both ends close-on-exec and blocking (the transport asks
/// for non-blocking calls one at a time), sized for throughput when the system
/// allows. Returns (read end, write end).
pub(crate) fn os_pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)
        .map_err(|e| Error::io("cannot create a pipe", e.into()))?;
    // Best effort: a smaller pipe is slower, not wrong.
    let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
    Ok((read, write))
}

/// Creates a pipe with the default options: messages sent on the [`PipeSender`]
/// arrive whole, in order, on the [`PipeReceiver`].
///
/// ```
/// let (tx, rx) = conduit::pipe()?;
/// tx.send("line 1")?;
/// tx.close()?;
/// assert_eq!(rx.recv()?.concat(), "line 1");
/// assert!(matches!(rx.recv(), Err(conduit::RecvError::Closed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pipe() -> Result<(PipeSender, PipeReceiver), Error> {
    ChannelBuilder::new().pipe()
}

/// The sending end of a pipe.
///
/// Dropping it closes it as [`close`](Self::close) does: whatever was queued is
/// written first.
#[derive(Debug)]
pub struct PipeSender {
    writer: Writer,
    options: Options,
    closed: bool,
}

impl PipeSender {
    pub(crate) fn open(fd: OwnedFd, options: Options) -> Result<PipeSender, Error> {
        let end: Arc<dyn Transport> =
            Arc::new(PipeEnd::new(fd).map_err(|e| Error::io("cannot use the pipe", e))?);
        Ok(PipeSender {
            writer: Writer::new(end, options.sndhwm),
            options,
            closed: false,
        })
    }

    /// Sends on a descriptor this process already has: a pipe's write end,
    /// standard output, a file.
    ///
    /// ```no_run
    /// let stdout = conduit::PipeSender::from_fd(std::io::stdout().as_fd().try_clone_to_owned()?)?;
    /// # use std::os::fd::AsFd;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fd(fd: OwnedFd) -> Result<PipeSender, Error> {
        PipeSender::open(fd, ChannelBuilder::new().options().clone())
    }

    /// Opens the pipe end this process's parent handed it (see
    /// [`process`](crate::process)).
    pub fn from_parent() -> Result<PipeSender, Error> {
        let fd = take_from_parent(EndKind::PipeWrite)?;
        PipeSender::open(fd, ChannelBuilder::new().options().clone())
    }

    /// Sends a message, waiting while the reader is not keeping up.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.writer
            .send(message.into(), Wait::Forever)
            .map_err(SendFail::into_send)
    }

    /// Sends a message only if that needs no waiting.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        self.writer
            .send(message.into(), Wait::Never)
            .map_err(SendFail::into_try)
    }

    /// Sends a message, waiting at most `timeout` for room.
    pub fn send_timeout(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.writer
            .send(message.into(), Wait::timeout(timeout))
            .map_err(SendFail::into_timeout)
    }

    /// Waits until every queued message has been written into the pipe.
    pub fn flush(&self) -> Result<(), Error> {
        self.writer.flush(Wait::Forever)
    }

    pub(crate) fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Writes whatever is queued and gives up the descriptor without closing
    /// the pipe, for another process to take over.
    pub(crate) fn hand_over(mut self) -> Result<OwnedFd, Error> {
        self.closed = true;
        self.writer.stop(self.options.linger_wait())?;
        self.writer.dup_fd()
    }

    /// Writes whatever is queued and closes the pipe; the reader then sees
    /// [`RecvError::Closed`] after the last message.
    pub fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.writer.close(self.options.linger_wait())
    }
}

impl Drop for PipeSender {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.writer.close(self.options.linger_wait());
        }
    }
}

/// The receiving end of a pipe.
#[derive(Debug)]
pub struct PipeReceiver {
    /// Boxed: the reader holds its buffers' bookkeeping inline, and a receiver
    /// is moved around (and put in enums) by value.
    reader: Box<Reader>,
}

impl PipeReceiver {
    pub(crate) fn open(fd: OwnedFd, options: Options) -> Result<PipeReceiver, Error> {
        let end: Arc<dyn Transport> =
            Arc::new(PipeEnd::new(fd).map_err(|e| Error::io("cannot use the pipe", e))?);
        Ok(PipeReceiver {
            reader: Box::new(Reader::new(end, options.max_message_size)),
        })
    }

    /// Gives up the descriptor, with what was read but not yet received, for
    /// another process to take over.
    pub(crate) fn hand_over(self) -> Result<(OwnedFd, bytes::Bytes), Error> {
        let buffered = self.reader.take_buffered().ok_or_else(|| {
            Error::Attachment("a pipe with a message read but not taken cannot travel".into())
        })?;
        Ok((self.reader.dup_fd()?, buffered.freeze()))
    }

    /// Takes over a pipe end another process handed over.
    pub(crate) fn adopt(fd: OwnedFd, buffered: &[u8]) -> Result<PipeReceiver, Error> {
        let receiver = PipeReceiver::from_fd(fd)?;
        receiver.reader.preload(buffered);
        Ok(receiver)
    }

    /// Receives from a descriptor this process already has: a pipe's read end,
    /// standard input, a file of frames.
    pub fn from_fd(fd: OwnedFd) -> Result<PipeReceiver, Error> {
        PipeReceiver::open(fd, ChannelBuilder::new().options().clone())
    }

    /// Opens the pipe end this process's parent handed it (see
    /// [`process`](crate::process)).
    pub fn from_parent() -> Result<PipeReceiver, Error> {
        let fd = take_from_parent(EndKind::PipeRead)?;
        PipeReceiver::open(fd, ChannelBuilder::new().options().clone())
    }

    pub(crate) fn reader(&self) -> &Reader {
        &self.reader
    }

    /// Receives the next message, waiting until one has arrived whole.
    ///
    /// [`RecvError::Closed`] means the writer closed after its last message; a
    /// writer that died partway through a message gives [`Error::Truncated`].
    pub fn recv(&self) -> Result<Message, RecvError> {
        self.recv_within(Wait::Forever).map_err(RecvFail::into_recv)
    }

    /// Receives a message only if one has arrived whole already.
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        self.recv_within(Wait::Never).map_err(RecvFail::into_try)
    }

    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.recv_within(Wait::timeout(timeout))
            .map_err(RecvFail::into_timeout)
    }

    fn recv_within(&self, wait: Wait) -> Result<Message, RecvFail> {
        self.reader.recv(wait, |cmd| match cmd {
            // A pipe has nobody to answer a PING to; only an ERROR means anything.
            Command::Error(reason) => Err(Error::Protocol(
                conduit_proto::ProtocolError::PeerError(reason),
            )),
            _ => Ok(()),
        })
    }
}
