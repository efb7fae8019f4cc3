//! Stream sockets (Unix domain and TCP) as a [`Transport`].
//!
//! The descriptor stays in blocking mode, so a blocking receive or send is a single
//! system call: that is what keeps round-trip latency at the raw socket's. The
//! non-blocking and deadline variants ask for `MSG_DONTWAIT` per call and poll in
//! between.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::net::{RecvFlags, SendAncillaryBuffer, SendFlags, Shutdown};

use super::{Interest, Transport, Wait, retry_until_ready};
use crate::error::Error;

/// Which family a socket belongs to, for messages and options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Unix,
    Tcp,
}

#[derive(Debug)]
pub(crate) struct SocketStream {
    fd: OwnedFd,
    family: Family,
    /// Descriptors that arrived with the bytes (Unix only; see `fd_passing`).
    inbox: crate::fd_passing::Inbox,
}

impl SocketStream {
    /// Wraps a connected stream socket; it must be in blocking mode.
    pub(crate) fn new(fd: OwnedFd, family: Family) -> SocketStream {
        SocketStream {
            fd,
            family,
            inbox: Default::default(),
        }
    }

    pub(crate) fn family(&self) -> Family {
        self.family
    }

    /// Descriptors received with the bytes read so far, not yet given out.
    pub(crate) fn inbox(&self) -> &crate::fd_passing::Inbox {
        &self.inbox
    }

    /// Writes all of `bufs` with `fds` attached to the first byte. Only the
    /// first write waits as `wait` allows, so a `WouldBlock` or `TimedOut`
    /// error means nothing was written; once it went out, the rest is written
    /// whatever it takes (a message is never left half-sent).
    pub(crate) fn write_all_with_fds(
        &self,
        bufs: &[IoSlice<'_>],
        fds: &[BorrowedFd<'_>],
        wait: Wait,
    ) -> io::Result<()> {
        let fd = self.fd.as_fd();
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let first = retry_until_ready(fd, Interest::Write, wait, || {
            crate::fd_passing::send_with(fd, bufs, fds, wait != Wait::Forever)
        })?;
        let mut rest: Vec<u8> = Vec::new();
        if first < total {
            // Rare (a message larger than the socket buffer): copy the rest once.
            rest.reserve(total - first);
            let mut skip = first;
            for b in bufs {
                let take = skip.min(b.len());
                rest.extend_from_slice(&b[take..]);
                skip -= take;
            }
        }
        let mut done = 0;
        while done < rest.len() {
            done += self.write(&[IoSlice::new(&rest[done..])], Wait::Forever)?;
        }
        Ok(())
    }

    /// Sets `SO_SNDBUF` and `SO_RCVBUF`; 0 leaves one at the kernel's default.
    pub(crate) fn set_buffer_sizes(&self, send: usize, recv: usize) -> Result<(), Error> {
        let fail = |e: rustix::io::Errno| Error::io("cannot set a socket buffer size", e.into());
        if send > 0 {
            rustix::net::sockopt::set_socket_send_buffer_size(&self.fd, send).map_err(fail)?;
        }
        if recv > 0 {
            rustix::net::sockopt::set_socket_recv_buffer_size(&self.fd, recv).map_err(fail)?;
        }
        Ok(())
    }

    /// Bytes written but not yet acknowledged by the peer's host (TCP), or not
    /// yet read by the peer (Unix: the memory its unread data still holds here).
    fn unsent(&self) -> io::Result<usize> {
        let mut n: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int through the pointer, which is valid.
        let rc = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n.max(0) as usize)
    }

    /// Shuts down both directions, waking threads blocked reading or writing.
    pub(crate) fn shutdown_both(&self) {
        let _ = rustix::net::shutdown(&self.fd, Shutdown::Both);
    }

    /// Whether the connection is over in both directions (reset, or both sides shut
    /// down): then the peer can send nothing more that would provoke a reset.
    fn hung_up(&self) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            &self.fd,
            rustix::event::PollFlags::empty(),
        )];
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&zero)).is_ok()
            && fds[0]
                .revents()
                .intersects(rustix::event::PollFlags::HUP | rustix::event::PollFlags::ERR)
    }

    /// Before a socket is closed, waits (as `wait` allows) until the peer has what
    /// we sent, or has hung up:
    ///
    /// - TCP: until the peer's host acknowledged it. A TCP socket that receives data
    ///   after it is closed answers with a reset, and a reset throws away whatever
    ///   was still unacknowledged; once all of it is, nothing can be lost.
    /// - Unix, when `until_read`: until the peer has read it. Closing a Unix socket
    ///   raises a hang-up on the peer at once, and libzmq (4.3) takes a hang-up
    ///   that arrives while its receive high-water mark is full as an I/O error,
    ///   dropping whatever it had not read yet.
    pub(crate) fn wait_delivered(&self, until_read: bool, wait: Wait) {
        if self.family == Family::Unix && !until_read {
            return;
        }
        let mut pause = Duration::from_micros(50);
        while self.unsent().is_ok_and(|n| n > 0) && !self.hung_up() {
            let now = Instant::now();
            match wait {
                Wait::Never => return,
                Wait::Until(deadline) if now >= deadline => return,
                _ => {}
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }
}

impl AsFd for SocketStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn recv_len(
    fd: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    flags: RecvFlags,
) -> rustix::io::Result<usize> {
    rustix::net::recv(fd, buf, flags).map(|((filled, _), _)| filled.len())
}

impl Transport for SocketStream {
    fn read(&self, buf: &mut [MaybeUninit<u8>], wait: Wait) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        if self.family == Family::Unix {
            // Unix sockets may carry descriptors: keep them with the bytes.
            let inbox = &self.inbox;
            if wait == Wait::Forever {
                loop {
                    match crate::fd_passing::recv_into(fd, buf, false, inbox) {
                        Err(rustix::io::Errno::INTR) => continue,
                        other => return Ok(other?),
                    }
                }
            }
            return retry_until_ready(fd, Interest::Read, wait, || {
                crate::fd_passing::recv_into(fd, buf, true, inbox)
            });
        }
        if wait == Wait::Forever {
            loop {
                match recv_len(fd, buf, RecvFlags::empty()) {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => return Ok(other?),
                }
            }
        }
        retry_until_ready(fd, Interest::Read, wait, || {
            recv_len(fd, buf, RecvFlags::DONTWAIT)
        })
    }

    fn write(&self, bufs: &[IoSlice<'_>], wait: Wait) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        let send =
            |flags| rustix::net::sendmsg(fd, bufs, &mut SendAncillaryBuffer::default(), flags);
        if wait == Wait::Forever {
            loop {
                match send(SendFlags::NOSIGNAL) {
                    Err(rustix::io::Errno::INTR) => continue,
                    other => return Ok(other?),
                }
            }
        }
        retry_until_ready(fd, Interest::Write, wait, || {
            send(SendFlags::NOSIGNAL | SendFlags::DONTWAIT)
        })
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match rustix::net::shutdown(&self.fd, Shutdown::Write) {
            // Already disconnected: the peer will see the end of the stream anyway.
            Ok(()) | Err(rustix::io::Errno::NOTCONN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use rustix::net::sockopt;

    use super::*;

    /// The kernel takes the sizes asked for (doubled, for its bookkeeping), and
    /// 0 leaves a buffer as the kernel made it.
    #[test]
    fn buffer_sizes_reach_the_socket_and_zero_keeps_the_default() {
        let (a, _b) = UnixStream::pair().unwrap();
        let s = SocketStream::new(a.into(), Family::Unix);
        let default_recv = sockopt::socket_recv_buffer_size(&s.fd).unwrap();
        s.set_buffer_sizes(96 << 10, 0).unwrap();
        assert!(sockopt::socket_send_buffer_size(&s.fd).unwrap() >= 96 << 10);
        assert_eq!(
            sockopt::socket_recv_buffer_size(&s.fd).unwrap(),
            default_recv
        );
    }
}
