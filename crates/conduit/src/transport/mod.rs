//! Byte-stream transports: the only code that touches file descriptors for I/O.
//!
//! # The contract every transport keeps
//!
//! A transport is one end of a reliable, ordered byte stream: both directions for
//! a socket, one for a pipe end. Callers above it (the send and receive paths) rely
//! on exactly this:
//!
//! - `read` fills a prefix of `buf` and returns how much; it returns `Ok(0)` only at
//!   the end of the stream, when the peer has closed its writing side and
//!   everything it wrote has been read.
//! - `write` writes a prefix of the concatenated slices and returns how much; it may
//!   be less than asked, never 0 for non-empty input.
//! - [`Wait`] bounds how long either may block: `Never` fails with
//!   [`io::ErrorKind::WouldBlock`] instead of blocking, `Until` with
//!   [`io::ErrorKind::TimedOut`] once the deadline passes. `EINTR` is retried inside.
//! - One thread may read while another writes. Two concurrent readers (or writers)
//!   are the caller's job to prevent.
//! - Writing to a stream whose reader is gone fails with `EPIPE` or `ECONNRESET`; it
//!   never raises `SIGPIPE` on sockets (pipes rely on Rust's default of ignoring
//!   `SIGPIPE`).
//! - `shutdown_write` half-closes: the peer reads everything already written, then
//!   end of stream. A no-op for pipe ends, which close when dropped.
//! - Every descriptor is close-on-exec, so it never leaks into a child process
//!   unless handed over on purpose (see `process`).
//!
//! OS errors are mapped to channel errors in one place: `crate::error`.

use std::fmt;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};

pub(crate) mod ipc;
pub(crate) mod pipe;
pub(crate) mod socket;
pub(crate) mod tcp;

/// How long a transport call may block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Until the call can make progress.
    Forever,
    /// Not at all.
    Never,
    /// Until this instant.
    Until(Instant),
}

impl Wait {
    /// `Until(now + timeout)`, or `Forever` if that overflows.
    pub(crate) fn timeout(timeout: std::time::Duration) -> Wait {
        Instant::now()
            .checked_add(timeout)
            .map_or(Wait::Forever, Wait::Until)
    }
}

/// One end of a byte stream. See the module documentation for the contract.
pub(crate) trait Transport: AsFd + Send + Sync + fmt::Debug + 'static {
    fn read(&self, buf: &mut [MaybeUninit<u8>], wait: Wait) -> io::Result<usize>;
    fn write(&self, bufs: &[IoSlice<'_>], wait: Wait) -> io::Result<usize>;
    fn shutdown_write(&self) -> io::Result<()>;
}

/// Which readiness to wait for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// Waits until `fd` is ready for `interest` or `wait` runs out.
///
/// Returns `Ok(true)` when ready (or hung up, or in error: the next call will say
/// which), `Ok(false)` when `wait` ran out first.
pub(crate) fn wait_ready(fd: BorrowedFd<'_>, interest: Interest, wait: Wait) -> io::Result<bool> {
    let flags = match interest {
        Interest::Read => PollFlags::IN,
        Interest::Write => PollFlags::OUT,
    };
    loop {
        let timeout = match wait {
            Wait::Forever => None,
            Wait::Never => Some(Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
            Wait::Until(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                Some(Timespec {
                    tv_sec: left.as_secs() as _,
                    tv_nsec: left.subsec_nanos() as _,
                })
            }
        };
        let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(0) => {
                // poll's timeout is coarse; only give up once the deadline really passed.
                match wait {
                    Wait::Until(deadline) if Instant::now() < deadline => continue,
                    _ => return Ok(false),
                }
            }
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs a non-blocking `attempt` until it stops saying `WouldBlock`, waiting for
/// readiness in between as `wait` allows. `EINTR` is retried.
pub(crate) fn retry_until_ready<T>(
    fd: BorrowedFd<'_>,
    interest: Interest,
    wait: Wait,
    mut attempt: impl FnMut() -> rustix::io::Result<T>,
) -> io::Result<T> {
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if wait == Wait::Never {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                if !wait_ready(fd, interest, wait)? {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A listening socket of either family.
#[derive(Debug)]
pub(crate) enum Listen {
    Tcp(tcp::TcpListen),
    Ipc(ipc::IpcListen),
}

impl Listen {
    /// Binds and listens with a queue of `backlog` connections not yet
    /// accepted (the kernel caps it at `net.core.somaxconn`).
    pub(crate) fn bind(
        endpoint: &crate::Endpoint,
        ipc_mode: u32,
        backlog: u32,
    ) -> Result<Listen, crate::Error> {
        let listen = match endpoint {
            crate::Endpoint::Inproc(_) => Err(not_a_stream(endpoint)),
            crate::Endpoint::Tcp { .. } => tcp::bind(endpoint).map(Listen::Tcp),
            _ => ipc::bind(endpoint, ipc_mode).map(Listen::Ipc),
        }?;
        // std listens with a backlog of 128; listening again only resizes it.
        let backlog = backlog.clamp(1, i32::MAX as u32) as i32;
        rustix::net::listen(listen.as_fd(), backlog)
            .map_err(|e| crate::Error::io(format!("cannot listen on {endpoint}"), e.into()))?;
        Ok(listen)
    }

    pub(crate) fn endpoint(&self) -> &crate::Endpoint {
        match self {
            Listen::Tcp(l) => l.endpoint(),
            Listen::Ipc(l) => l.endpoint(),
        }
    }

    /// Accepts a connection: the stream, and who it is from (for messages).
    pub(crate) fn accept(&self) -> Result<(socket::SocketStream, String), crate::Error> {
        match self {
            Listen::Tcp(l) => l.accept(),
            Listen::Ipc(l) => l.accept(),
        }
    }

    /// Makes `accept` fail with `WouldBlock` instead of waiting.
    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        let fd = self.as_fd();
        let flags = rustix::fs::fcntl_getfl(fd)?;
        rustix::fs::fcntl_setfl(fd, flags | rustix::fs::OFlags::NONBLOCK)?;
        Ok(())
    }
}

impl AsFd for Listen {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Listen::Tcp(l) => l.as_fd(),
            Listen::Ipc(l) => l.as_fd(),
        }
    }
}

/// Connects a stream socket to `endpoint`.
pub(crate) fn connect(endpoint: &crate::Endpoint) -> Result<socket::SocketStream, crate::Error> {
    match endpoint {
        crate::Endpoint::Inproc(_) => Err(not_a_stream(endpoint)),
        crate::Endpoint::Tcp { .. } => tcp::connect(endpoint),
        _ => ipc::connect(endpoint),
    }
}

/// `inproc://` has no stream: the queues of two sockets are linked directly.
fn not_a_stream(endpoint: &crate::Endpoint) -> crate::Error {
    crate::Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: "inproc:// links Sockets of one process; a Channel needs ipc:// or tcp://".into(),
    }
}
