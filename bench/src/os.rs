//! The few OS calls the runner needs itself: pinning, pipes, handing descriptors to
//! a child.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Pipe buffer size, as `conduit::pipe()` asks for it, for every implementation:
/// the OS channel is the same for all of them.
const PIPE_SIZE: libc::c_int = 1 << 20;

/// Pins the calling thread, and so every thread it starts later, to `cpu`.
pub fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays within it for cpu < CPU_SETSIZE,
    // which is checked first; sched_setaffinity reads the set we pass.
    unsafe {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A pipe, close-on-exec, as (read end, write end). `nonblocking` makes both ends
/// non-blocking; the runner asks for blocking ends for everyone, as
/// `conduit::pipe()` makes them and a raw program would.
pub fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    let flags = libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    // SAFETY: pipe2 writes two descriptors into the array, which we then own.
    let (read, write) = unsafe {
        if libc::pipe2(fds.as_mut_ptr(), flags) != 0 {
            return Err(io::Error::last_os_error());
        }
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    // Best effort, as conduit does: a smaller pipe is slower, not wrong.
    // SAFETY: F_SETPIPE_SZ takes an int and touches no memory of ours.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok((read, write))
}

/// Makes `fds` survive into the child that `command` starts (everything else stays
/// close-on-exec), and names them in its `--fds` argument.
pub fn hand_over(command: &mut Command, fds: &[RawFd]) {
    if fds.is_empty() {
        return;
    }
    let list: Vec<String> = fds.iter().map(RawFd::to_string).collect();
    command.arg("--fds").arg(list.join(","));
    let fds = fds.to_vec();
    // SAFETY: between fork and exec the closure only calls fcntl, which is
    // async-signal-safe, on descriptors the parent keeps open until spawn returns.
    unsafe {
        command.pre_exec(move || {
            for &fd in &fds {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

/// Takes ownership of a descriptor the parent handed over, making it close-on-exec
/// again.
///
/// # Safety
/// `fd` must be open and owned by nothing else in this process.
pub unsafe fn take(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the caller guarantees the descriptor is open and ours alone.
    unsafe {
        if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
