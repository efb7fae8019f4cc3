//! Pipe ends as a [`Transport`].
//!
//! Pipes conduit creates stay in blocking mode, like sockets: a blocking receive
//! or send is then one system call, where a non-blocking descriptor needs three
//! (`read` fails with `EAGAIN`, `poll`, `read` again), and that was most of a
//! round trip's cost. The non-blocking and deadline variants ask for
//! `RWF_NOWAIT` per call (`preadv2`/`pwritev2`): an empty pipe answers `EAGAIN`,
//! a full one `EAGAIN` or a short write, and nothing else about the descriptor
//! changes. A kernel or descriptor that refuses `RWF_NOWAIT` (`EOPNOTSUPP`) is
//! remembered, and those variants then poll before a plain call, as below.
//!
//! A pipe end conduit is handed (standard input or output) keeps the mode it came
//! with, because its open file description may be shared with other processes (a
//! terminal, a shell). A non-blocking one polls whenever a call would block. A
//! blocking one uses `RWF_NOWAIT` when it is a pipe; anything else (a terminal, a
//! file) polls first, and there a write larger than the free space may still
//! block until the reader makes room.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{FileType, OFlags};
use rustix::io::Errno;

use super::{Interest, Transport, Wait, retry_until_ready, wait_ready};

#[derive(Debug)]
pub(crate) struct PipeEnd {
    fd: OwnedFd,
    nonblocking: bool,
    /// Whether the per-call `RWF_NOWAIT` variants may be tried (a blocking pipe
    /// whose kernel has not refused them yet).
    nowait: AtomicBool,
}

impl PipeEnd {
    /// Wraps a pipe end (or any stream-like descriptor: a file, a terminal) in
    /// whatever blocking mode it is in.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<PipeEnd> {
        let nonblocking = rustix::fs::fcntl_getfl(&fd)?.contains(OFlags::NONBLOCK);
        let is_pipe = rustix::fs::fstat(&fd)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Fifo);
        Ok(PipeEnd {
            fd,
            nonblocking,
            nowait: AtomicBool::new(!nonblocking && is_pipe && NOWAIT_BUILT),
        })
    }

    /// Whether the `RWF_NOWAIT` variants are in use (for tests).
    #[cfg(test)]
    pub(crate) fn uses_nowait(&self) -> bool {
        self.nowait.load(Ordering::Relaxed)
    }

    /// Runs `op` within `wait`: `op(true)` must not block (it fails with
    /// `EAGAIN` instead, or `EOPNOTSUPP` if it cannot promise that), `op(false)`
    /// may.
    fn run(
        &self,
        interest: Interest,
        wait: Wait,
        mut op: impl FnMut(bool) -> rustix::io::Result<usize>,
    ) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        if self.nonblocking {
            return retry_until_ready(fd, interest, wait, || op(false));
        }
        if wait == Wait::Forever {
            return retry_interrupted(|| op(false));
        }
        run_blocking(fd, interest, wait, &self.nowait, op)
    }
}

/// Runs `op(false)` until it is not interrupted.
fn retry_interrupted(mut op: impl FnMut() -> rustix::io::Result<usize>) -> io::Result<usize> {
    loop {
        match op() {
            Err(Errno::INTR) => continue,
            other => return Ok(other?),
        }
    }
}

/// A bounded `wait` on a blocking descriptor: `op(true)` (no waiting, by
/// `RWF_NOWAIT`) while `nowait` holds, polling between tries; once the kernel
/// refuses it, `nowait` is cleared and this polls before one `op(false)`.
fn run_blocking(
    fd: BorrowedFd<'_>,
    interest: Interest,
    wait: Wait,
    nowait: &AtomicBool,
    mut op: impl FnMut(bool) -> rustix::io::Result<usize>,
) -> io::Result<usize> {
    let gave_up = || -> io::Error {
        match wait {
            Wait::Never => io::ErrorKind::WouldBlock.into(),
            _ => io::ErrorKind::TimedOut.into(),
        }
    };
    while nowait.load(Ordering::Relaxed) {
        match op(true) {
            Ok(n) => return Ok(n),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                if wait == Wait::Never || !wait_ready(fd, interest, wait)? {
                    return Err(gave_up());
                }
            }
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => nowait.store(false, Ordering::Relaxed),
            Err(e) => return Err(e.into()),
        }
    }
    if !wait_ready(fd, interest, wait)? {
        return Err(gave_up());
    }
    retry_interrupted(|| op(false))
}

/// Whether this build can ask for `RWF_NOWAIT` at all.
const NOWAIT_BUILT: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// `preadv2(fd, buf, -1, RWF_NOWAIT)`: reads what is there, or fails with `EAGAIN`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_nowait(fd: BorrowedFd<'_>, buf: &mut [MaybeUninit<u8>]) -> rustix::io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over memory we may write (uninitialized is fine for the
    // kernel); an offset of -1 (both halves) means the current position, which
    // is what a pipe has.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_preadv2,
            fd.as_raw_fd(),
            &iov as *const libc::iovec,
            1 as libc::c_int,
            -1 as libc::c_long,
            -1 as libc::c_long,
            libc::RWF_NOWAIT,
        )
    };
    syscall_result(rc)
}

/// `pwritev2(fd, bufs, -1, RWF_NOWAIT)`: writes what fits, or fails with `EAGAIN`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn write_nowait(fd: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> rustix::io::Result<usize> {
    let count = bufs.len().min(1024);
    // SAFETY: `IoSlice` is ABI-compatible with `iovec` on Unix, and the kernel only
    // reads these buffers; the offset is as in `read_nowait`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pwritev2,
            fd.as_raw_fd(),
            bufs.as_ptr().cast::<libc::iovec>(),
            count as libc::c_int,
            -1 as libc::c_long,
            -1 as libc::c_long,
            libc::RWF_NOWAIT,
        )
    };
    syscall_result(rc)
}

/// A raw system call's return: a byte count, or the error `errno` holds.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn syscall_result(rc: libc::c_long) -> rustix::io::Result<usize> {
    if rc < 0 {
        Err(Errno::from_io_error(&io::Error::last_os_error()).unwrap_or(Errno::IO))
    } else {
        Ok(rc as usize)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_nowait(_: BorrowedFd<'_>, _: &mut [MaybeUninit<u8>]) -> rustix::io::Result<usize> {
    Err(Errno::OPNOTSUPP)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn write_nowait(_: BorrowedFd<'_>, _: &[IoSlice<'_>]) -> rustix::io::Result<usize> {
    Err(Errno::OPNOTSUPP)
}

impl AsFd for PipeEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Transport for PipeEnd {
    fn read(&self, buf: &mut [MaybeUninit<u8>], wait: Wait) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        self.run(Interest::Read, wait, |nowait| {
            if nowait {
                read_nowait(fd, buf)
            } else {
                rustix::io::read(fd, &mut *buf).map(|(filled, _)| filled.len())
            }
        })
    }

    fn write(&self, bufs: &[IoSlice<'_>], wait: Wait) -> io::Result<usize> {
        let fd = self.fd.as_fd();
        self.run(Interest::Write, wait, |nowait| {
            if nowait {
                write_nowait(fd, bufs)
            } else {
                rustix::io::writev(fd, bufs)
            }
        })
    }

    fn shutdown_write(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn blocking_pipe() -> (PipeEnd, PipeEnd) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        (PipeEnd::new(r).unwrap(), PipeEnd::new(w).unwrap())
    }

    fn read_some(end: &PipeEnd, wait: Wait) -> io::Result<Vec<u8>> {
        let mut buf = [MaybeUninit::<u8>::uninit(); 64];
        let n = end.read(&mut buf, wait)?;
        // SAFETY: the transport initialized the first n bytes.
        Ok(buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect())
    }

    /// Fills the pipe with non-blocking writes; returns how much went in.
    fn fill(w: &PipeEnd) -> usize {
        let chunk = [7u8; 4096];
        let mut total = 0;
        loop {
            match w.write(&[IoSlice::new(&chunk)], Wait::Never) {
                Ok(n) => total += n,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    return total;
                }
            }
        }
    }

    #[test]
    fn a_blocking_pipe_uses_rwf_nowait_and_stays_blocking() {
        let (r, w) = blocking_pipe();
        assert!(r.uses_nowait() && w.uses_nowait());
        let err = read_some(&r, Wait::Never).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let start = Instant::now();
        let err = read_some(&r, Wait::timeout(Duration::from_millis(30))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(30));
        w.write(&[IoSlice::new(b"ab"), IoSlice::new(b"c")], Wait::Never)
            .unwrap();
        assert_eq!(read_some(&r, Wait::Never).unwrap(), b"abc");
        // The kernel never refused it, and the descriptors are still blocking.
        assert!(r.uses_nowait() && w.uses_nowait());
        for end in [&r, &w] {
            let flags = rustix::fs::fcntl_getfl(&end.fd).unwrap();
            assert!(!flags.contains(OFlags::NONBLOCK));
        }
    }

    #[test]
    fn a_full_blocking_pipe_says_would_block_then_takes_more_once_read() {
        let (r, w) = blocking_pipe();
        let total = fill(&w);
        assert!(total >= 4096, "only {total} bytes went in");
        let start = Instant::now();
        let err = w
            .write(
                &[IoSlice::new(&[1; 4096])],
                Wait::timeout(Duration::from_millis(20)),
            )
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(20));
        let mut drained = 0;
        while drained < total {
            drained += read_some(&r, Wait::Never).unwrap().len();
        }
        assert!(w.write(&[IoSlice::new(b"x")], Wait::Never).unwrap() == 1);
    }

    #[test]
    fn a_refused_rwf_nowait_falls_back_to_polling_for_good() {
        let (r, w) = blocking_pipe();
        let nowait = AtomicBool::new(true);
        let mut tries = Vec::new();
        // The kernel refuses the no-wait call: the plain one runs after a poll.
        w.write(&[IoSlice::new(b"hi")], Wait::Forever).unwrap();
        let n = run_blocking(r.as_fd(), Interest::Read, Wait::Never, &nowait, |no_wait| {
            tries.push(no_wait);
            if no_wait {
                Err(Errno::OPNOTSUPP)
            } else {
                let mut buf = [0u8; 8];
                rustix::io::read(r.as_fd(), &mut buf)
            }
        })
        .unwrap();
        assert_eq!((n, &tries[..]), (2, &[true, false][..]));
        assert!(!nowait.load(Ordering::Relaxed));
        // From then on only the polled path runs, and it still gives up in time.
        tries.clear();
        let err = run_blocking(
            r.as_fd(),
            Interest::Read,
            Wait::timeout(Duration::from_millis(10)),
            &nowait,
            |no_wait| {
                tries.push(no_wait);
                Ok(0)
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(tries.is_empty());
        drop(w);
    }

    #[test]
    fn a_non_pipe_descriptor_polls_instead() {
        let file = tempfile::tempfile().unwrap();
        let end = PipeEnd::new(file.into()).unwrap();
        assert!(!end.uses_nowait());
        end.write(&[IoSlice::new(b"data")], Wait::Never).unwrap();
    }
}
