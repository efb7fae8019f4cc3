//! The I/O threads, and who drives a socket's reactor when.
//!
//! Each socket has a reactor (`reactor.rs`) with an epoll set of its own. Its
//! I/O thread watches that set's descriptor and runs a step of the reactor
//! whenever it is readable. An application thread about to sleep waiting on
//! the socket (in `recv`, or in `send` at the high-water mark) runs the
//! reactor itself instead, blocking in its epoll set: then a message that
//! arrives is read, queued and taken by the thread that wants it, with no
//! wake-up of another thread in between. On one core that is the difference
//! between one context switch per message and two.
//!
//! For that to pay, the I/O thread must not be woken by the same readiness,
//! so the driving thread takes the reactor out of the I/O thread's set (it
//! *disarms* it), and leaves it out between calls while it keeps coming back
//! (a ping-pong does). The I/O thread puts it back (*arms* it) once no
//! application thread has driven it for [`LEASE`]; a task that needs the I/O
//! thread (a tail of queued messages to write, say) arms it at once. A socket
//! whose readiness descriptor was handed out is *pinned*: only its I/O thread
//! drives it, since its application waits elsewhere.
//!
//! Lock order: a reactor, then the socket's state, then a peer's send queue,
//! then the doorbell's `drive` and `inbox`. Taking a reactor from an
//! application thread is only ever a `try_lock`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use slab::Slab;

use super::reactor::Task;
use crate::socket::core::Core;

/// How long an application thread keeps driving a socket's reactor after it
/// last did: what arrives meanwhile while it is not waiting on the socket (a
/// PING, a peer leaving) waits at most this long.
pub(crate) const LEASE: Duration = Duration::from_millis(50);

const WAKE: Token = Token(usize::MAX);

/// A queue of work for a loop, woken through a waker once per batch: after
/// one wake-up the loop has been woken and not yet taken the queue, so
/// another would only cost a system call. Counted by wake-ups made, not by
/// the queue being empty: a task queued without one (`submit_lazy`) must not
/// stop the next task that needs one from getting it.
#[derive(Debug)]
struct Inbox<T>(Mutex<Queued<T>>);

#[derive(Debug)]
struct Queued<T> {
    items: Vec<T>,
    /// A wake-up was made since the loop last took the queue.
    woken: bool,
}

impl<T> Inbox<T> {
    fn new() -> Inbox<T> {
        Inbox(Mutex::new(Queued {
            items: Vec::new(),
            woken: false,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Queued<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`. With `wake`, returns true if the loop has not been woken
    /// since it last took the queue: the caller wakes it now.
    fn push(&self, item: T, wake: bool) -> bool {
        let mut q = self.lock();
        q.items.push(item);
        let owed = wake && !q.woken;
        q.woken |= owed;
        owed
    }

    fn take(&self, into: &mut Vec<T>) {
        let mut q = self.lock();
        std::mem::swap(&mut q.items, into);
        q.woken = false;
    }

    fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }
}

/// Whether and by whom a socket's reactor is driven.
#[derive(Debug, Default)]
pub(crate) struct Drive {
    /// The reactor is in its I/O thread's epoll set.
    armed: bool,
    /// Application threads driving it now.
    drivers: usize,
    /// When an application thread last drove it.
    last_drive: Option<Instant>,
    /// The I/O thread has a lease check scheduled.
    lease_pending: bool,
    /// Only the I/O thread drives it.
    pinned: bool,
    /// The socket is closed: nothing drives it any more.
    closed: bool,
}

/// How application threads (and the reactor itself) reach a socket's reactor:
/// a task queue and a waker in the reactor's epoll set.
#[derive(Debug)]
pub(crate) struct Doorbell {
    inbox: Inbox<Task>,
    waker: Waker,
    /// The reactor's epoll descriptor, for the I/O thread's set.
    reactor_fd: RawFd,
    drive: Mutex<Drive>,
    /// The I/O thread, and the socket's key there.
    io: OnceLock<(Arc<IoHandle>, usize)>,
    /// Messages application threads have handed to this socket's send
    /// queues: how the reactor tells a sender that keeps sending, to any
    /// peer, from one that paused, to time the tails of a fan-out's bursts
    /// (`Reactor::look_at_tails`). Written per message by the sending thread
    /// and read by the reactor only when it looks at tails: on a line of its
    /// own, so that the writes do not bounce the doorbell's other fields
    /// between cores.
    queued: Padded<AtomicU64>,
}

/// A value alone on its cache lines (two, for the adjacent-line prefetcher).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl Doorbell {
    pub(crate) fn new(waker: Waker, reactor_fd: RawFd) -> Doorbell {
        Doorbell {
            inbox: Inbox::new(),
            waker,
            reactor_fd,
            drive: Mutex::new(Drive::default()),
            io: OnceLock::new(),
            queued: Padded::default(),
        }
    }

    /// Counts a message handed to one of the socket's send queues. Senders
    /// hold the socket's state lock, so a load and a store do (a lock-free
    /// add would cost more per subscriber of a PUB); were one lost, a tail
    /// would only be written sooner.
    pub(crate) fn note_queued(&self) {
        let n = self.queued.0.load(Ordering::Relaxed);
        self.queued.0.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// Messages handed to the socket's send queues so far.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.0.load(Ordering::Relaxed)
    }

    /// The reactor's epoll descriptor.
    #[cfg(feature = "tokio")]
    pub(crate) fn reactor_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the reactor owns the descriptor and lives as long as the
        // socket whose doorbell this is; the borrow is tied to `self`.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.reactor_fd) }
    }

    fn drive(&self) -> MutexGuard<'_, Drive> {
        self.drive.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a task for the reactor and makes sure something will run it.
    /// A closed socket's reactor runs nothing more: the task is dropped, which
    /// ends what it holds (an inproc link made as the socket closed).
    pub(crate) fn submit(&self, task: Task) {
        let mut d = self.drive();
        if d.closed {
            drop(d);
            drop(task);
            return;
        }
        if self.inbox.push(task, true) {
            let _ = self.waker.wake();
        }
        if !d.armed && d.drivers == 0 {
            self.arm(&mut d);
        }
    }

    /// Queues a task that only matters to whoever drives the reactor next
    /// (room made in a queue): wakes a driver blocked in it now, but does not
    /// call the I/O thread in for a reactor an application thread leases.
    /// While an application drains its queue this costs no system call: the
    /// thread finds the task when it next drives, once the queue is empty.
    pub(crate) fn submit_lazy(&self, task: Task) {
        let d = self.drive();
        let someone_waits = d.armed || d.drivers > 0 || d.pinned || d.closed;
        if self.inbox.push(task, someone_waits) {
            let _ = self.waker.wake();
        }
    }

    /// Queues a task that a peer's message makes (an inproc peer sent
    /// something) and wakes whoever waits on the reactor now: an application
    /// thread stepping it, the I/O thread if it watches it, an async task
    /// waiting on its descriptor. Unlike [`submit`](Self::submit) it does not
    /// call the I/O thread in for a reactor an application thread leases
    /// (two `epoll_ctl`s and a wake-up of that thread per message on a
    /// ping-pong): the leasing thread finds the task when it next waits, and
    /// when the lease ends the I/O thread finds the waker readable.
    pub(crate) fn ring(&self, task: Task) {
        if self.inbox.push(task, true) {
            let _ = self.waker.wake();
        }
    }

    /// Wakes an application thread blocked in the reactor now, if one is.
    pub(crate) fn wake_driver(&self) {
        if self.drive().drivers > 0 {
            let _ = self.waker.wake();
        }
    }

    /// Whether tasks wait: a step must not block before taking them.
    pub(crate) fn has_tasks(&self) -> bool {
        !self.inbox.is_empty()
    }

    pub(crate) fn take(&self, into: &mut Vec<Task>) {
        self.inbox.take(into);
    }

    /// Arms the reactor in its I/O thread unless an application thread is
    /// driving it right now (which then sees the task itself).
    pub(crate) fn ensure_watched(&self) {
        let mut d = self.drive();
        if !d.armed && d.drivers == 0 && !d.closed {
            self.arm(&mut d);
        }
    }

    fn arm(&self, d: &mut Drive) {
        if let Some((io, key)) = self.io.get() {
            let registered = io.registry.register(
                &mut SourceFd(&self.reactor_fd),
                Token(*key),
                Interest::READABLE,
            );
            d.armed = registered.is_ok();
        }
    }

    fn disarm(&self, d: &mut Drive) {
        if let Some((io, key)) = self.io.get() {
            let _ = io.registry.deregister(&mut SourceFd(&self.reactor_fd));
            d.armed = false;
            if !d.lease_pending {
                d.lease_pending = true;
                io.submit(IoTask::Lease(*key));
            }
        }
    }

    /// Only the I/O thread drives the reactor from now on.
    pub(crate) fn pin(&self) {
        let mut d = self.drive();
        d.pinned = true;
        if !d.armed && d.drivers == 0 && !d.closed {
            self.arm(&mut d);
        }
    }

    /// An application thread may drive the reactor now: takes the driver's
    /// place (disarming the I/O thread's watch) and returns true, or false if
    /// it may not (pinned, closed).
    pub(crate) fn enter(&self) -> bool {
        let mut d = self.drive();
        if d.pinned || d.closed {
            return false;
        }
        if d.armed {
            self.disarm(&mut d);
        }
        d.drivers += 1;
        true
    }

    /// Whether only the I/O thread drives the reactor (see [`pin`](Self::pin)).
    pub(crate) fn pinned(&self) -> bool {
        self.drive().pinned
    }

    /// The application thread stopped driving.
    pub(crate) fn leave(&self) {
        let mut d = self.drive();
        d.drivers -= 1;
        d.last_drive = Some(Instant::now());
    }

    /// Whether the reactor is out of the I/O thread's set (an application
    /// thread leases it), so that nothing reads it unless someone drives.
    pub(crate) fn leased(&self) -> bool {
        let d = self.drive();
        !d.armed && !d.pinned && !d.closed
    }

    /// The socket is closed: takes the reactor out of its I/O thread for good.
    pub(crate) fn close(&self) {
        let mut d = self.drive();
        d.closed = true;
        if let Some((io, key)) = self.io.get() {
            if d.armed {
                let _ = io.registry.deregister(&mut SourceFd(&self.reactor_fd));
                d.armed = false;
            }
            io.submit(IoTask::Remove(*key));
        }
        drop(d);
        // Tasks left after the last step are dropped here, with no lock held:
        // some hold the socket itself, which would otherwise never be freed.
        let mut left = Vec::new();
        self.inbox.take(&mut left);
        drop(left);
    }
}

/// Work for an I/O thread itself.
#[derive(Debug)]
enum IoTask {
    /// Check whether a socket's lease ran out.
    Lease(usize),
    /// Forget a closed socket.
    Remove(usize),
}

/// An I/O thread: the sockets assigned to it, and the way to wake it.
#[derive(Debug)]
pub(crate) struct IoHandle {
    registry: Registry,
    waker: Waker,
    inbox: Inbox<IoTask>,
    sockets: Mutex<Slab<Arc<Core>>>,
}

impl IoHandle {
    fn submit(&self, task: IoTask) {
        if self.inbox.push(task, true) {
            let _ = self.waker.wake();
        }
    }

    fn sockets(&self) -> MutexGuard<'_, Slab<Arc<Core>>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Assigns a new socket to this thread, which watches its reactor from now on.
    pub(crate) fn add(self: &Arc<IoHandle>, core: &Arc<Core>) {
        let key = self.sockets().insert(core.clone());
        let _ = core.doorbell.io.set((self.clone(), key));
        core.doorbell.ensure_watched();
    }
}

/// Starts I/O thread number `index`.
pub(crate) fn start(index: usize) -> std::io::Result<Arc<IoHandle>> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKE)?;
    let handle = Arc::new(IoHandle {
        registry: poll.registry().try_clone()?,
        waker,
        inbox: Inbox::new(),
        sockets: Mutex::new(Slab::new()),
    });
    let h = handle.clone();
    std::thread::Builder::new()
        .name(format!("conduit-io-{index}"))
        .spawn(move || run(poll, &h))?;
    Ok(handle)
}

fn run(mut poll: Poll, io: &IoHandle) {
    let mut events = Events::with_capacity(1024);
    let mut leases: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
    let mut again: Vec<usize> = Vec::new();
    let mut tasks = Vec::new();
    loop {
        let timeout = if !again.is_empty() {
            Some(Duration::ZERO)
        } else {
            leases
                .peek()
                .map(|Reverse((at, _))| at.saturating_duration_since(Instant::now()))
        };
        if poll.poll(&mut events, timeout).is_err() {
            events.clear();
        }
        let mut keys: Vec<usize> = std::mem::take(&mut again);
        for event in events.iter() {
            if event.token() != WAKE {
                keys.push(event.token().0);
            }
        }
        for key in keys {
            let Some(core) = io.sockets().get(key).cloned() else {
                continue;
            };
            match core.reactor.try_lock() {
                Ok(mut reactor) => {
                    reactor.step(Some(Duration::ZERO));
                    if reactor.has_more() {
                        again.push(key);
                    }
                }
                // Only this thread drives a pinned reactor: whoever holds it
                // only looked (an application thread's try, refused by
                // `enter`) and handles nothing, so look again rather than
                // lose the event (the set is edge-triggered). That cost an
                // async receive on a pinned socket a stall of seconds.
                Err(_) if core.doorbell.pinned() => again.push(key),
                // An application thread driving it handles what is ready.
                Err(_) => {}
            }
        }
        io.inbox.take(&mut tasks);
        let now = Instant::now();
        for task in tasks.drain(..) {
            match task {
                IoTask::Lease(key) => leases.push(Reverse((now + LEASE, key))),
                IoTask::Remove(key) => {
                    let mut sockets = io.sockets();
                    sockets.try_remove(key);
                }
            }
        }
        while let Some(Reverse((at, key))) = leases.peek().copied() {
            if at > now {
                break;
            }
            leases.pop();
            let Some(core) = io.sockets().get(key).cloned() else {
                continue;
            };
            let bell = &core.doorbell;
            let mut d = bell.drive();
            if d.closed || d.armed {
                d.lease_pending = false;
                continue;
            }
            let until = d.last_drive.map(|t| t + LEASE);
            if d.drivers > 0 {
                leases.push(Reverse((now + LEASE, key)));
            } else if let Some(until) = until.filter(|&u| u > now) {
                leases.push(Reverse((until, key)));
            } else {
                d.lease_pending = false;
                bell.arm(&mut d);
                // Registering reports what is ready already; no step needed here.
            }
        }
    }
}
