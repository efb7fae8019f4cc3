//! Pipe ends as a [`Transport`].
//!
//! Pipes conduit creates are non-blocking, and blocking calls poll. A pipe end it
//! is handed (standard input or output) keeps the mode it came with, because its
//! open file description may be shared with other processes (a terminal, a
//! shell): there, the non-blocking variants poll first, and a write larger than the
//! free space in the pipe may still block until the reader makes room.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::OFlags;

use super::{Interest, Transport, Wait, retry_until_ready, wait_ready};

#[derive(Debug)]
pub(crate) struct PipeEnd {
    fd: OwnedFd,
    nonblocking: bool,
}

impl PipeEnd {
    /// Wraps a pipe end (or any stream-like descriptor: a file, a terminal) in
    /// whatever blocking mode it is in.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<PipeEnd> {
        let nonblocking = rustix::fs::fcntl_getfl(&fd)?.contains(OFlags::NONBLOCK);
        Ok(PipeEnd { fd, nonblocking })
    }

    /// Runs `op`, which may block, within `wait`.
    fn run(
        &self,
        interest: Interest,
        wait: Wait,
        mut op: impl FnMut() -> rustix::io::Result<usize>,
    ) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        if self.nonblocking {
            return retry_until_ready(fd, interest, wait, op);
        }
        if wait != Wait::Forever && !wait_ready(fd, interest, wait)? {
            return Err(match wait {
                Wait::Never => io::ErrorKind::WouldBlock.into(),
                _ => io::ErrorKind::TimedOut.into(),
            });
        }
        loop {
            match op() {
                Err(rustix::io::Errno::INTR) => continue,
                other => return Ok(other?),
            }
        }
    }
}

impl AsFd for PipeEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Transport for PipeEnd {
    fn read(&self, buf: &mut [MaybeUninit<u8>], wait: Wait) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        self.run(Interest::Read, wait, || {
            rustix::io::read(fd, &mut *buf).map(|(filled, _)| filled.len())
        })
    }

    fn write(&self, bufs: &[IoSlice<'_>], wait: Wait) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        self.run(Interest::Write, wait, || rustix::io::writev(fd, bufs))
    }

    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}
