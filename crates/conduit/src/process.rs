//! Spawning a child process with a channel end already open in it.
//!
//! The parent makes the channel, keeps one end, and hands the other to the child
//! through an inherited descriptor whose number travels in the environment
//! variable [`ENV_VAR`]. The child opens it with one call:
//! [`Channel::from_parent`], [`PipeReceiver::from_parent`] or
//! [`PipeSender::from_parent`].
//!
//! Every descriptor conduit creates is close-on-exec; only the handed-over end has
//! that flag cleared, in the child alone, between `fork` and `exec`. So no other
//! descriptor leaks into the child, and the child's end is closed in the parent
//! once the child has it, so each side sees the other close.
//!
//! ```no_run
//! use std::process::Command;
//!
//! // Parent:
//! let (mut child, channel) = conduit::process::spawn_with_channel(Command::new("worker"))?;
//! channel.send("job 1")?;
//! let answer = channel.recv()?;
//! child.wait()?;
//!
//! // Worker:
//! let parent = conduit::Channel::from_parent()?;
//! let job = parent.recv()?;
//! parent.send(job)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use rustix::io::FdFlags;

use crate::channel::{Channel, ChannelBuilder};
use crate::error::{Error, Misuse, ParentEndError};
use crate::pipe::{PipeReceiver, PipeSender, os_pipe};

/// The environment variable that tells a child which descriptor is its end, as
/// `KIND:FD` with KIND one of `socket`, `pipe-read`, `pipe-write`.
pub const ENV_VAR: &str = "CONDUIT_FD";

/// What kind of end a descriptor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndKind {
    Socket,
    PipeRead,
    PipeWrite,
}

impl EndKind {
    fn as_str(self) -> &'static str {
        match self {
            EndKind::Socket => "socket",
            EndKind::PipeRead => "pipe-read",
            EndKind::PipeWrite => "pipe-write",
        }
    }

    fn opener(self) -> &'static str {
        match self {
            EndKind::Socket => "Channel::from_parent",
            EndKind::PipeRead => "PipeReceiver::from_parent",
            EndKind::PipeWrite => "PipeSender::from_parent",
        }
    }
}

/// An end of a channel or pipe, not yet opened, to give to a child process with
/// [`spawn`] (or to open in this process).
#[derive(Debug)]
pub struct ChildEnd {
    fd: OwnedFd,
    kind: EndKind,
}

impl ChildEnd {
    /// Both ends of a two-way channel (a Unix socket pair).
    pub fn socket_pair() -> Result<(ChildEnd, ChildEnd), Error> {
        let (a, b) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("cannot create a socket pair", e))?;
        let end = |s: std::os::unix::net::UnixStream| ChildEnd {
            fd: s.into(),
            kind: EndKind::Socket,
        };
        Ok((end(a), end(b)))
    }

    /// Both ends of a pipe: (the end to send on, the end to receive from). Give
    /// each to a child to connect two children, as a shell's `|` does.
    pub fn pipe() -> Result<(ChildEnd, ChildEnd), Error> {
        let (read, write) = os_pipe()?;
        Ok((
            ChildEnd {
                fd: write,
                kind: EndKind::PipeWrite,
            },
            ChildEnd {
                fd: read,
                kind: EndKind::PipeRead,
            },
        ))
    }

    /// Opens a socket end in this process.
    pub fn into_channel(self, builder: &ChannelBuilder) -> Result<Channel, Error> {
        self.expect(EndKind::Socket)?;
        Channel::start(
            crate::transport::socket::SocketStream::new(
                self.fd,
                crate::transport::socket::Family::Unix,
            ),
            builder.options().clone(),
        )
    }

    /// Opens a pipe's sending end in this process.
    pub fn into_sender(self, builder: &ChannelBuilder) -> Result<PipeSender, Error> {
        self.expect(EndKind::PipeWrite)?;
        PipeSender::open(self.fd, builder.options().clone())
    }

    /// Opens a pipe's receiving end in this process.
    pub fn into_receiver(self, builder: &ChannelBuilder) -> Result<PipeReceiver, Error> {
        self.expect(EndKind::PipeRead)?;
        PipeReceiver::open(self.fd, builder.options().clone())
    }

    fn expect(&self, kind: EndKind) -> Result<(), Error> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(Misuse::WrongEnd {
                actual: self.kind.as_str(),
                wanted: kind.as_str(),
            }
            .into())
        }
    }
}

/// Spawns `command` with `end` open in the child, and closes `end` here.
pub fn spawn(mut command: Command, end: ChildEnd) -> Result<Child, Error> {
    let raw = end.fd.as_raw_fd();
    command.env(ENV_VAR, format!("{}:{raw}", end.kind.as_str()));
    // SAFETY: the closure only calls fcntl, which is async-signal-safe, on a
    // descriptor that stays open in the parent until `spawn` has returned.
    unsafe {
        command.pre_exec(move || {
            let fd = rustix::fd::BorrowedFd::borrow_raw(raw);
            rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
            Ok(())
        });
    }
    let child = command
        .spawn()
        .map_err(|e| Error::io(format!("cannot spawn {:?}", command.get_program()), e))?;
    drop(end);
    Ok(child)
}

/// Spawns `command` with a two-way channel to it; the child opens its end with
/// [`Channel::from_parent`].
///
/// The handshake completes on the first send or receive, so this returns without
/// waiting for the child to start.
pub fn spawn_with_channel(command: Command) -> Result<(Child, Channel), Error> {
    let (mine, theirs) = ChildEnd::socket_pair()?;
    let child = spawn(command, theirs)?;
    Ok((child, mine.into_channel(&ChannelBuilder::new())?))
}

/// Takes the end named by [`ENV_VAR`], checking it is the kind asked for and
/// making it close-on-exec again so it does not leak into our own children.
pub(crate) fn take_from_parent(kind: EndKind) -> Result<OwnedFd, Error> {
    let value = std::env::var(ENV_VAR).map_err(|_| ParentEndError::NotSpawned {
        opener: kind.opener(),
        variable: ENV_VAR,
    })?;
    let (name, fd) = value.split_once(':').unwrap_or(("", ""));
    let fd: RawFd = fd.parse().map_err(|_| ParentEndError::Malformed {
        variable: ENV_VAR,
        value: value.clone(),
    })?;
    if name != kind.as_str() {
        return Err(ParentEndError::WrongKind {
            handed: name.to_owned(),
            opener: kind.opener(),
            wanted: kind.as_str(),
        }
        .into());
    }
    // SAFETY: checked below that the descriptor is open; the parent handed it to us
    // for exactly this use, and we take it only once per process (see TAKEN).
    let borrowed = unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) };
    rustix::io::fcntl_getfd(borrowed).map_err(|e| {
        Error::io(
            format!("{ENV_VAR} names descriptor {fd}, which is not open"),
            e.into(),
        )
    })?;
    if TAKEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(ParentEndError::AlreadyTaken.into());
    }
    rustix::io::fcntl_setfd(borrowed, FdFlags::CLOEXEC)
        .map_err(|e| Error::io("cannot make the inherited end close-on-exec", e.into()))?;
    // SAFETY: open (checked above) and owned by nobody else in this process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Set once the parent's end has been opened: opening it twice would give two
/// owners of one descriptor.
static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
