//! Waiting on many sockets, channels, pipes and plain descriptors at once
//! (libzmq's `zmq_poll`, ipc-channel's `IpcReceiverSet`).

use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::channel::Channel;
use crate::error::Error;
use crate::pipe::{PipeReceiver, PipeSender};
use crate::reader::Reader;
use crate::socket::Socket;

/// What to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    readable: bool,
    writable: bool,
}

impl Interest {
    /// A receive would not wait (a whole message is there, or the end).
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    /// A send would not wait.
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    /// Either.
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// Something a [`Poller`] waits on.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Pollable<'a> {
    /// A pattern socket.
    Socket(&'a Socket),
    /// A one-peer channel.
    Channel(&'a Channel),
    /// The reading end of a pipe.
    PipeReceiver(&'a PipeReceiver),
    /// The writing end of a pipe.
    PipeSender(&'a PipeSender),
    /// Any descriptor (a plain socket, a terminal, an eventfd): readiness as
    /// `poll(2)` reports it.
    Fd(BorrowedFd<'a>),
}

impl<'a> From<&'a Socket> for Pollable<'a> {
    fn from(s: &'a Socket) -> Self {
        Pollable::Socket(s)
    }
}
impl<'a> From<&'a Channel> for Pollable<'a> {
    fn from(c: &'a Channel) -> Self {
        Pollable::Channel(c)
    }
}
impl<'a> From<&'a PipeReceiver> for Pollable<'a> {
    fn from(p: &'a PipeReceiver) -> Self {
        Pollable::PipeReceiver(p)
    }
}
impl<'a> From<&'a PipeSender> for Pollable<'a> {
    fn from(p: &'a PipeSender) -> Self {
        Pollable::PipeSender(p)
    }
}
impl<'a> From<BorrowedFd<'a>> for Pollable<'a> {
    fn from(fd: BorrowedFd<'a>) -> Self {
        Pollable::Fd(fd)
    }
}

/// What a [`Poller`] found ready: the item's index (in the order added) and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The index [`Poller::add`] returned.
    pub index: usize,
    /// A receive would not wait.
    pub readable: bool,
    /// A send would not wait.
    pub writable: bool,
}

/// Waits until one of many items is ready, in one call with a timeout.
///
/// Level-triggered, like `zmq_poll`: an item stays ready until the receive or
/// send that it announces is done. Sockets are watched through their
/// readiness descriptors, so waiting costs no thread and no spinning.
///
/// ```
/// use std::time::Duration;
/// use conduit::{Interest, Poller, Socket, SocketType};
///
/// let a = Socket::new(SocketType::Pull)?;
/// let b = Socket::new(SocketType::Pull)?;
/// let endpoint = b.bind("tcp://127.0.0.1:*")?;
/// let push = Socket::new(SocketType::Push)?;
/// push.connect(&endpoint.to_string())?;
/// push.send("to b")?;
///
/// let mut poller = Poller::new();
/// poller.add(&a, Interest::READABLE);
/// let ib = poller.add(&b, Interest::READABLE);
/// let ready = poller.poll(Some(Duration::from_secs(5)))?;
/// assert_eq!(ready[0].index, ib);
/// assert_eq!(b.try_recv()?.concat(), "to b");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct Poller<'a> {
    items: Vec<(Pollable<'a>, Interest)>,
}

impl<'a> Poller<'a> {
    /// An empty poller.
    pub fn new() -> Poller<'a> {
        Poller { items: Vec::new() }
    }

    /// Adds an item; returns its index in what [`poll`](Self::poll) reports.
    pub fn add(&mut self, item: impl Into<Pollable<'a>>, interest: Interest) -> usize {
        self.items.push((item.into(), interest));
        self.items.len() - 1
    }

    /// Waits until at least one item is ready or `timeout` passes (`None`:
    /// without a limit), and returns the ready ones (empty on timeout).
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<Vec<Ready>, Error> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            // Announce the wait for sends before looking, so that no change
            // between the look and the wait goes unnoticed.
            let watch = SendWatch::new(&self.items);
            let ready = self.check();
            if !ready.is_empty() {
                return Ok(ready);
            }
            let left = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(ready);
                    }
                    Some(left)
                }
                None => None,
            };
            let mut fds = Vec::with_capacity(self.items.len() * 2);
            for (item, interest) in &self.items {
                wait_fds(item, *interest, &mut fds);
            }
            let spec = left.map(|d| Timespec {
                tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
                tv_nsec: d.subsec_nanos() as _,
            });
            match rustix::event::poll(&mut fds, spec.as_ref()) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(Error::io("cannot poll", e.into())),
            }
            drop(watch);
        }
    }

    fn check(&self) -> Vec<Ready> {
        let mut out = Vec::new();
        for (index, (item, interest)) in self.items.iter().enumerate() {
            let (r, w) = readiness(item);
            let ready = Ready {
                index,
                readable: interest.readable && r,
                writable: interest.writable && w,
            };
            if ready.readable || ready.writable {
                out.push(ready);
            }
        }
        out
    }
}

/// Registers the poller as waiting for sends on its sockets, for as long as it
/// lives.
struct SendWatch<'p, 'a> {
    items: &'p [(Pollable<'a>, Interest)],
}

impl<'p, 'a> SendWatch<'p, 'a> {
    fn new(items: &'p [(Pollable<'a>, Interest)]) -> Self {
        for (item, interest) in items {
            if let (Pollable::Socket(s), true) = (item, interest.writable) {
                s.watch_sends(true);
            }
        }
        SendWatch { items }
    }
}

impl Drop for SendWatch<'_, '_> {
    fn drop(&mut self) {
        for (item, interest) in self.items {
            if let (Pollable::Socket(s), true) = (item, interest.writable) {
                s.watch_sends(false);
            }
        }
    }
}

/// Whether an item is readable and writable now.
fn readiness(item: &Pollable<'_>) -> (bool, bool) {
    match item {
        Pollable::Socket(s) => (s.has_message(), s.can_send()),
        Pollable::Channel(c) => {
            let (reader, writer) = c.halves();
            (reader_ready(reader), fd_ready(writer.fd(), PollFlags::OUT))
        }
        Pollable::PipeReceiver(p) => (reader_ready(p.reader()), false),
        Pollable::PipeSender(p) => (false, fd_ready(p.writer().fd(), PollFlags::OUT)),
        Pollable::Fd(fd) => (fd_ready(*fd, PollFlags::IN), fd_ready(*fd, PollFlags::OUT)),
    }
}

fn reader_ready(reader: &Reader) -> bool {
    reader.buffered() || fd_ready(reader.fd(), PollFlags::IN)
}

/// Whether `poll` reports `flags` (or a hang-up or error, which the next call
/// reports) on `fd` now.
pub(crate) fn fd_ready(fd: BorrowedFd<'_>, flags: PollFlags) -> bool {
    let mut fds = [PollFd::from_borrowed_fd(fd, flags)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).is_ok_and(|n| n > 0)
}

/// The descriptors to wait on for an item.
fn wait_fds<'a>(item: &'a Pollable<'a>, interest: Interest, fds: &mut Vec<PollFd<'a>>) {
    let mut add = |fd: BorrowedFd<'a>, flags: PollFlags| {
        fds.push(PollFd::from_borrowed_fd(fd, flags));
    };
    match item {
        Pollable::Socket(s) => {
            if interest.readable {
                add(s.as_fd(), PollFlags::IN);
            }
            if interest.writable {
                add(s.send_fd(), PollFlags::IN);
            }
        }
        Pollable::Channel(c) => {
            let (reader, writer) = c.halves();
            if interest.readable {
                add(reader.fd(), PollFlags::IN);
            }
            if interest.writable {
                add(writer.fd(), PollFlags::OUT);
            }
        }
        Pollable::PipeReceiver(p) if interest.readable => add(p.reader().fd(), PollFlags::IN),
        Pollable::PipeSender(p) if interest.writable => add(p.writer().fd(), PollFlags::OUT),
        Pollable::Fd(fd) => {
            let mut flags = PollFlags::empty();
            if interest.readable {
                flags |= PollFlags::IN;
            }
            if interest.writable {
                flags |= PollFlags::OUT;
            }
            add(*fd, flags);
        }
        _ => {}
    }
}
