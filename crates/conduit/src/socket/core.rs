//! The state a socket shares between the application's threads and its I/O
//! thread, and the rules for peers joining, leaving and delivering.
//!
//! One mutex guards it all (`Core::state`); nothing blocks while holding it.
//! The I/O thread hands over runs of received messages under it
//! ([`Core::deliver`]) and never waits for room: when a peer's queue is full it
//! stops reading that connection until the application makes room, which
//! sends it a `Resume` task. Application threads wait on one condition
//! variable, signalled only when someone waits. Lock order: `state`, then a
//! peer's send queue (`engine::out`), then the I/O thread's inbox.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use bytes::Bytes;
use conduit_proto::{Message, PeerInfo, SocketType, SubscriptionMessage, Subscriptions};

use super::events::SocketEvent;
use super::fanout::{Fanout, TailLook, Watch};
use super::options::SocketOptions;
use crate::engine::outlet::Outlet;
use crate::engine::{Doorbell, Reactor, Task};
use crate::error::Error;
use crate::transport::Wait;
use crate::transport::socket::SocketStream;

/// A connected peer in service.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: u64,
    pub(crate) info: PeerInfo,
    /// How a ROUTER addresses it.
    pub(crate) routing_id: Bytes,
    /// Where messages to it go: its connection's send queue, or the pipe to
    /// an inproc peer.
    pub(crate) out: Outlet,
}

/// A peer with what the socket keeps for it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) peer: Arc<Peer>,
    /// Received messages not yet taken by the application, at most the RCVHWM.
    pub(crate) inbound: VecDeque<Message>,
    /// PUB and XPUB: what this peer subscribed to.
    pub(crate) subscriptions: Subscriptions,
    /// The peer has left, and the slot stays only until the application has read
    /// what it sent: a disconnect never throws received messages away.
    pub(crate) gone: bool,
    /// Its I/O thread stopped reading it for want of room in `inbound`: the
    /// application resumes it when it makes some.
    pub(crate) blocked: bool,
    /// The peer is in `State::ready` (it has, or had, messages queued).
    pub(crate) in_ready: bool,
}

/// REQ: the request whose reply we wait for.
#[derive(Debug, Default)]
pub(crate) struct ReqState {
    pub(crate) expecting: Option<(u64, Option<u32>)>,
    pub(crate) next_request_id: u32,
}

/// Where closing stands, as the I/O thread reports it.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    /// The I/O thread has closed every connection and listener.
    pub(crate) io_done: bool,
    /// Streams to wait on until the peer has what we sent.
    pub(crate) lingering: Vec<(Arc<SocketStream>, bool)>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) peers: Vec<Slot>,
    /// Peer id to its position in `peers` (looked up per message: ids are
    /// our own counter, so no need for SipHash's defence against chosen keys).
    index: HashMap<u64, usize, BuildHasherDefault<PeerIdHasher>>,
    /// Peers with messages queued, in the order they are read from: fair
    /// queueing without a look at every peer per message.
    ready: VecDeque<u64>,
    pub(crate) next_peer_id: u64,
    /// Round-robin position for sending.
    pub(crate) send_cursor: usize,
    pub(crate) closing: bool,
    pub(crate) close: Closing,
    pub(crate) app_waiting: usize,
    pub(crate) req: ReqState,
    /// REP: the peer and envelope of the request being answered.
    pub(crate) rep: Option<(u64, Vec<Bytes>)>,
    /// SUB and XSUB: our subscriptions, for filtering and for new publishers.
    pub(crate) subscriptions: Subscriptions,
    /// XPUB: subscriptions over all peers (a topic counts once per peer), and
    /// what is waiting for the application.
    pub(crate) xpub_topics: Subscriptions,
    pub(crate) xpub_inbound: VecDeque<Message>,
    /// XPUB: the I/O thread stopped reading for want of room in `xpub_inbound`.
    pub(crate) xpub_blocked: bool,
    /// ROUTER: routing id to peer id.
    pub(crate) routing: HashMap<Bytes, u64>,
    pub(crate) next_routing_id: u32,
    /// Endpoints bound and connected, as `bind` returned them and `connect`
    /// was given them, for `unbind` and `disconnect`.
    pub(crate) bound: Vec<String>,
    pub(crate) connected: Vec<String>,
    /// Messages queued for the application (all peers, and XPUB's queue).
    queued: usize,
    /// Whether the readiness descriptor is signalled.
    ready_signalled: bool,
    /// Pollers waiting for this socket to accept a send.
    pub(crate) send_watchers: usize,
    /// Bumped by every change an application thread may wait for.
    pub(crate) changes: u64,
    /// PUB and XPUB: the batch shared by the subscribers to every topic.
    pub(crate) fanout: Fanout,
}

impl State {
    pub(crate) fn slot(&self, peer_id: u64) -> Option<usize> {
        self.index.get(&peer_id).copied()
    }

    fn push_slot(&mut self, slot: Slot) {
        self.fanout.invalidate();
        self.index.insert(slot.peer.id, self.peers.len());
        self.peers.push(slot);
    }

    fn remove_slot(&mut self, i: usize) {
        self.fanout.invalidate();
        let slot = self.peers.swap_remove(i);
        self.index.remove(&slot.peer.id);
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.peer.id, i);
        }
        if self.send_cursor >= self.peers.len() {
            self.send_cursor = 0;
        }
    }

    /// Drops the slots of departed peers with nothing left to read, and
    /// recounts the queues, after a bulk change to them.
    pub(crate) fn sweep(&mut self) {
        let mut i = 0;
        while i < self.peers.len() {
            if self.peers[i].gone && self.peers[i].inbound.is_empty() {
                self.remove_slot(i);
            } else {
                i += 1;
            }
        }
        self.queued =
            self.peers.iter().map(|s| s.inbound.len()).sum::<usize>() + self.xpub_inbound.len();
    }

    /// Whether anything is queued for the application.
    pub(crate) fn has_queued(&self) -> bool {
        self.queued > 0
    }
}

/// Hashes a peer id (a counter) by multiplying it by a large odd constant:
/// fast, and spreads consecutive ids over the table.
#[derive(Debug, Default)]
pub(crate) struct PeerIdHasher(u64);

impl std::hash::Hasher for PeerIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Descriptors that make a socket's state visible to event loops. Made with
/// the socket, kept up to date only once someone asked for them.
#[derive(Debug)]
pub(crate) struct Readiness {
    /// Readable while a message is queued for the application (or the socket is
    /// closed): level-triggered.
    recv: OwnedFd,
    /// Written when a send may have become possible, while a poller waits for it.
    send: OwnedFd,
    /// `recv` was handed out: keep it up to date (a system call per change).
    used: AtomicBool,
    /// Async tasks waiting on `recv` (`Core::watch_recv`). While there are
    /// none and `used` is false, it is not kept up to date: a task that reads
    /// its own messages saves a write and a read of it per message. Counted
    /// up under the state lock (which brings `recv` up to date), down
    /// without it: a delivery that still sees a waiter gone only signals
    /// once too often, and the next waiter brings `recv` up to date again.
    recv_waiters: AtomicUsize,
}

fn eventfd() -> std::io::Result<OwnedFd> {
    use rustix::event::{EventfdFlags, eventfd};
    Ok(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

fn signal(fd: &OwnedFd) {
    // Adds 1; it only fails when the counter would overflow, and then it is
    // readable anyway.
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}

fn unsignal(fd: &OwnedFd) {
    let mut buf = [0u8; 8];
    let _ = rustix::io::read(fd, &mut buf);
}

static NEXT_SOCKET_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub(crate) struct Core {
    /// Tells this socket apart in its I/O thread's tables.
    pub(crate) id: u64,
    pub(crate) kind: SocketType,
    pub(crate) options: SocketOptions,
    /// The socket's I/O: driven by its I/O thread, or by an application
    /// thread waiting on the socket (`engine/io_thread.rs`).
    pub(crate) reactor: Mutex<Reactor>,
    pub(crate) doorbell: Arc<Doorbell>,
    pub(crate) state: Mutex<State>,
    pub(crate) app: Condvar,
    pub(crate) readiness: Readiness,
}

/// Why a waiting application call gave up.
pub(crate) enum Gave {
    /// Its deadline passed.
    Up,
    /// The socket is closing.
    Closing,
}

impl Core {
    pub(crate) fn new(kind: SocketType, options: SocketOptions) -> Result<Arc<Core>, Error> {
        let io = crate::engine::assign()?;
        let (reactor, doorbell) =
            Reactor::new().map_err(|e| Error::io("cannot make the socket's event loop", e))?;
        let state = State {
            // libzmq starts generated routing ids at a random number.
            next_routing_id: random_u32(),
            ..State::default()
        };
        let core = Arc::new(Core {
            id: NEXT_SOCKET_ID.fetch_add(1, Ordering::Relaxed),
            kind,
            options,
            reactor: Mutex::new(reactor),
            doorbell,
            state: Mutex::new(state),
            app: Condvar::new(),
            readiness: Readiness {
                recv: eventfd()
                    .map_err(|e| Error::io("cannot make the readiness descriptor", e))?,
                send: eventfd()
                    .map_err(|e| Error::io("cannot make the readiness descriptor", e))?,
                used: AtomicBool::new(false),
                recv_waiters: AtomicUsize::new(0),
            },
        });
        io.add(&core);
        Ok(core)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn emit(&self, event: SocketEvent) {
        if let Some(monitor) = &self.options.monitor {
            monitor(&event);
        }
    }

    /// Wakes application threads waiting for a change, and brings the
    /// readiness descriptors up to date.
    pub(crate) fn notify_app(&self, st: &mut State) {
        st.changes = st.changes.wrapping_add(1);
        if st.app_waiting > 0 {
            self.app.notify_all();
        }
        self.update_readiness(st);
        if st.send_watchers > 0 {
            signal(&self.readiness.send);
        }
    }

    /// Keeps the receive readiness descriptor readable exactly while something
    /// is queued for the application or the socket is closed. Costs nothing
    /// until the descriptor is asked for.
    pub(crate) fn update_readiness(&self, st: &mut State) {
        if !self.readiness.used.load(Ordering::Relaxed)
            && self.readiness.recv_waiters.load(Ordering::Relaxed) == 0
        {
            return;
        }
        let want = st.has_queued() || st.closing;
        if want != st.ready_signalled {
            st.ready_signalled = want;
            if want {
                signal(&self.readiness.recv)
            } else {
                unsignal(&self.readiness.recv)
            }
        }
    }

    /// The receive readiness descriptor, kept up to date from now on. Its
    /// application waits on the descriptor, not in the socket, so only the
    /// I/O thread steps the reactor from now on (`pin`).
    pub(crate) fn recv_fd(&self) -> BorrowedFd<'_> {
        self.doorbell.pin();
        self.recv_fd_unpinned()
    }

    /// The receive readiness descriptor for a waiter that also steps the
    /// reactor itself when it wakes (the async adapter, which waits on the
    /// reactor's descriptor too): no pinning.
    pub(crate) fn recv_fd_unpinned(&self) -> BorrowedFd<'_> {
        if !self.readiness.used.swap(true, Ordering::Relaxed) {
            let mut st = self.lock();
            self.update_readiness(&mut st);
        }
        self.readiness.recv.as_fd()
    }

    /// The receive readiness descriptor for the async adapter, kept up to
    /// date only while a task waits on it ([`watch_recv`](Self::watch_recv)).
    #[cfg(feature = "tokio")]
    pub(crate) fn async_recv_fd(&self) -> BorrowedFd<'_> {
        self.readiness.recv.as_fd()
    }

    /// An async task starts waiting on the receive readiness descriptor
    /// (until [`unwatch_recv`](Self::unwatch_recv)). Starting brings the
    /// descriptor up to date (it may be stale from while nobody waited), so
    /// that the next message queued is a new edge. Returns whether a message
    /// is queued (or the socket closed): then there is nothing to wait for.
    #[cfg(feature = "tokio")]
    pub(crate) fn watch_recv(&self) -> bool {
        let mut st = self.lock();
        self.readiness.recv_waiters.fetch_add(1, Ordering::Relaxed);
        self.update_readiness(&mut st);
        st.has_queued() || st.closing
    }

    /// An async task stops waiting on the receive readiness descriptor: no
    /// lock (see `Readiness::recv_waiters`).
    #[cfg(feature = "tokio")]
    pub(crate) fn unwatch_recv(&self) {
        self.readiness.recv_waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// The reactor's epoll descriptor: readable when the socket has I/O to do.
    #[cfg(feature = "tokio")]
    pub(crate) fn reactor_fd(&self) -> BorrowedFd<'_> {
        self.doorbell.reactor_fd()
    }

    /// Steps the reactor once without waiting, on this thread, if it may and
    /// nobody else is stepping it (the async adapter's way of reading its
    /// own messages, as a blocking `recv` does).
    #[cfg(feature = "tokio")]
    pub(crate) fn step_now(&self) {
        self.drive(Some(std::time::Duration::ZERO));
    }

    /// As [`step_now`](Self::step_now) after tokio found the reactor's
    /// descriptor readable, reading the socket's only connection directly
    /// when that is all the readiness can be for (`Reactor::read_sole`): the
    /// `epoll_wait` that a step would make to find it is then saved.
    #[cfg(feature = "tokio")]
    pub(crate) fn step_woken(&self) {
        let Ok(mut reactor) = self.reactor.try_lock() else {
            return;
        };
        if self.doorbell.enter() {
            if !reactor.read_sole() {
                reactor.step(Some(std::time::Duration::ZERO));
            }
            drop(reactor);
            self.doorbell.leave();
        }
    }

    /// As [`step_now`](Self::step_now), before an async task waits, unless
    /// the step would find nothing the task's watch of the reactor's
    /// descriptor does not show: an application thread leases the reactor,
    /// no task was queued without a wake-up (`submit_lazy`) and no
    /// connection has input left over from its read budget. Then anything
    /// left to handle makes the descriptor readable, and the step would be an
    /// empty `epoll_wait`. Otherwise the step takes the reactor over from
    /// the I/O thread, so the next message is read by the task that wants it.
    #[cfg(feature = "tokio")]
    pub(crate) fn step_if_owed(&self) {
        let more = || self.reactor.try_lock().is_ok_and(|r| r.has_more());
        if !self.doorbell.leased() || self.doorbell.has_tasks() || more() {
            self.step_now();
        }
    }

    /// The descriptor a poller waits on for a send to become possible.
    pub(crate) fn send_fd(&self) -> BorrowedFd<'_> {
        self.readiness.send.as_fd()
    }

    /// Resets the send readiness descriptor before a poller looks at the state.
    pub(crate) fn clear_send_fd(&self) {
        unsignal(&self.readiness.send);
    }

    /// Waits for a change an application thread cares about, within `wait`:
    /// drives the socket's reactor meanwhile if nobody else does, else sleeps
    /// until the one that does signals a change.
    pub(crate) fn wait_app<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        wait: Wait,
    ) -> Result<MutexGuard<'a, State>, (MutexGuard<'a, State>, Gave)> {
        if st.closing {
            return Err((st, Gave::Closing));
        }
        let deadline = match wait {
            Wait::Never => {
                // Nothing reads a leased reactor unless someone drives it.
                if self.doorbell.leased() {
                    drop(st);
                    self.drive(Some(std::time::Duration::ZERO));
                    st = self.lock();
                }
                return Err((st, Gave::Up));
            }
            Wait::Forever => None,
            Wait::Until(d) => Some(d),
        };
        let seen = st.changes;
        if !self.options.busy_poll.is_zero() {
            let (guard, changed) = self.spin(st, seen, deadline);
            st = guard;
            if changed {
                return Ok(st);
            }
        }
        match self.try_drive(st, seen, deadline) {
            Ok(guard) => st = guard,
            Err(guard) => {
                st = guard;
                st.app_waiting += 1;
                st = match deadline {
                    None => self.app.wait(st).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let left = d.saturating_duration_since(Instant::now());
                        self.app
                            .wait_timeout(st, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0
                    }
                };
                st.app_waiting -= 1;
            }
        }
        if st.closing {
            return Err((st, Gave::Closing));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err((st, Gave::Up));
        }
        Ok(st)
    }

    /// Busy-polls (`busy_poll`): steps the reactor without waiting until
    /// something changes, the spin time runs out or `deadline` comes.
    /// Between looks the thread yields the core, so that a peer sharing it
    /// runs at once instead of waiting out the spin. True if something
    /// changed.
    fn spin<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        seen: u64,
        deadline: Option<Instant>,
    ) -> (MutexGuard<'a, State>, bool) {
        let mut end = Instant::now() + self.options.busy_poll;
        if let Some(d) = deadline {
            end = end.min(d);
        }
        let mut first = true;
        loop {
            drop(st);
            if !std::mem::take(&mut first) {
                std::thread::yield_now();
            }
            self.drive(Some(std::time::Duration::ZERO));
            st = self.lock();
            if st.changes != seen || st.closing {
                return (st, true);
            }
            if Instant::now() >= end {
                return (st, false);
            }
        }
    }

    /// Runs one step of the reactor on this thread, blocking in it until
    /// something happens or `deadline`, if this thread may drive it and
    /// nobody else does; hands the state lock back either way.
    fn try_drive<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        seen: u64,
        deadline: Option<Instant>,
    ) -> Result<MutexGuard<'a, State>, MutexGuard<'a, State>> {
        let Ok(mut reactor) = self.reactor.try_lock() else {
            return Err(st);
        };
        if !self.doorbell.enter() {
            return Err(st);
        }
        // A change since the caller looked (delivered before we held the
        // reactor) must not wait for the next one.
        let changed = st.changes != seen;
        drop(st);
        let timeout = if changed {
            Some(std::time::Duration::ZERO)
        } else {
            deadline.map(|d| d.saturating_duration_since(Instant::now()))
        };
        reactor.step(timeout);
        drop(reactor);
        self.doorbell.leave();
        let st = self.lock();
        if st.closing {
            self.doorbell.ensure_watched();
        }
        if st.app_waiting > 0 {
            // Another thread waits on the socket: one of them drives next.
            self.app.notify_all();
        }
        Ok(st)
    }

    /// One step of the reactor with `timeout`, if this thread may drive it now.
    fn drive(&self, timeout: Option<std::time::Duration>) {
        let Ok(mut reactor) = self.reactor.try_lock() else {
            return;
        };
        if self.doorbell.enter() {
            reactor.step(timeout);
            drop(reactor);
            self.doorbell.leave();
        }
    }

    /// A full send queue has room again (the I/O thread wrote it): senders
    /// waiting for room look again.
    pub(crate) fn room_freed(&self) {
        let mut st = self.lock();
        self.notify_app(&mut st);
    }

    /// As [`room_freed`](Self::room_freed), from another socket's reactor
    /// (an inproc peer took from a full pipe): a thread of ours driving our
    /// reactor sleeps in it, not on the condition variable, so it is woken
    /// there too.
    pub(crate) fn room_freed_elsewhere(&self) {
        self.room_freed();
        self.doorbell.wake_driver();
    }

    /// The I/O thread's look at the tail of a PUB's batch (`Task::FanoutTail`).
    /// A sender holding the lock is at work (handing out a batch takes a
    /// write per subscriber, longer than the look's wait), which is not the
    /// pause a tail waits for: look again later rather than wait for it.
    pub(crate) fn look_at_fanout_tail(&self, seen: Watch, overdue: bool) -> TailLook {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return TailLook::Again(Watch {
                    fresh: false,
                    ..seen
                });
            }
        };
        st.fanout.look_at_tail(seen, overdue)
    }

    /// The I/O thread closed everything of this socket's.
    pub(crate) fn io_closed(&self, lingering: Vec<(Arc<SocketStream>, bool)>) {
        let mut st = self.lock();
        st.close.io_done = true;
        st.close.lingering = lingering;
        self.app.notify_all();
    }

    /// Puts a peer that completed its handshake in service (returning its id),
    /// or says why not.
    pub(crate) fn add_peer(&self, info: PeerInfo, out: Outlet) -> Result<u64, String> {
        let mut st = self.lock();
        if st.closing {
            return Err("the socket is closing".into());
        }
        if self.kind == SocketType::Pair && Core::live_peers(&st).next().is_some() {
            return Err("a PAIR socket talks to one peer, and has one".into());
        }
        let mut routing_id = Bytes::new();
        if self.kind == SocketType::Router {
            if info.identity.is_empty() {
                routing_id = generate_routing_id(&mut st);
            } else if let Some(&holder) = st.routing.get(&info.identity) {
                if !self.options.router_handover {
                    return Err(format!(
                        "identity {:?} is already in use",
                        String::from_utf8_lossy(&info.identity)
                    ));
                }
                // ROUTER_HANDOVER: the newcomer takes the identity over.
                st.routing.remove(&info.identity);
                if let Some(i) = st.slot(holder) {
                    let kick = st.peers[i].peer.out.kick_task(Error::Disconnected);
                    self.doorbell.submit(kick);
                }
                routing_id = info.identity.clone();
            } else {
                routing_id = info.identity.clone();
            }
        }
        let id = st.next_peer_id;
        st.next_peer_id += 1;
        let peer = Arc::new(Peer {
            id,
            info,
            routing_id: routing_id.clone(),
            out,
        });
        if self.kind == SocketType::Router {
            st.routing.insert(routing_id, id);
        }
        if matches!(self.kind, SocketType::Sub | SocketType::XSub) {
            for (topic, _) in st.subscriptions.iter() {
                send_subscription(&peer, SubscriptionMessage::Subscribe(topic));
            }
        }
        st.push_slot(Slot {
            peer,
            inbound: VecDeque::new(),
            subscriptions: Subscriptions::new(),
            gone: false,
            blocked: false,
            in_ready: false,
        });
        self.notify_app(&mut st);
        Ok(id)
    }

    /// Takes a peer out of service. What it sent and the application has not read
    /// yet stays readable; the slot goes once that is read.
    pub(crate) fn remove_peer(&self, peer_id: u64) {
        let mut st = self.lock();
        let Some(i) = st.slot(peer_id) else {
            return;
        };
        st.fanout.invalidate();
        st.peers[i].gone = true;
        let routing_id = st.peers[i].peer.routing_id.clone();
        if self.kind == SocketType::Router && st.routing.get(&routing_id) == Some(&peer_id) {
            st.routing.remove(&routing_id);
        }
        if self.kind == SocketType::XPub {
            // Its subscriptions end with it; the application hears of the topics
            // nobody wants any more.
            let topics = std::mem::take(&mut st.peers[i].subscriptions);
            for (topic, _) in topics.iter() {
                if st.xpub_topics.remove(&topic) || self.options.xpub_verbose {
                    let cancel = SubscriptionMessage::Cancel(topic).to_frame();
                    st.xpub_inbound.push_back(Message::from(cancel));
                    st.queued += 1;
                }
            }
        }
        st.peers[i].subscriptions = Subscriptions::new();
        if st.peers[i].inbound.is_empty() {
            st.remove_slot(i);
        }
        self.notify_app(&mut st);
    }

    /// Peers in service (not counting departed ones whose messages are still
    /// being read).
    pub(crate) fn live_peers(st: &State) -> impl Iterator<Item = &Slot> {
        st.peers.iter().filter(|s| !s.gone)
    }

    /// The I/O thread hands over messages it received from a peer, taking them
    /// in order from the front of `batch`.
    ///
    /// One lock and at most one wake-up of the application for the whole run
    /// rather than per message. Never waits: returns false, leaving the rest in
    /// `batch`, when the peer's queue is full (the I/O thread then stops reading
    /// it until the application makes room) and true when all was taken (or
    /// dropped: the peer is out of service, or the socket closing). An error
    /// drops the peer.
    pub(crate) fn deliver(
        &self,
        peer_id: u64,
        batch: &mut VecDeque<Message>,
    ) -> Result<bool, Error> {
        let mut st = self.lock();
        if st.closing {
            batch.clear();
            return Ok(true);
        }
        let Some(i) = st.slot(peer_id).filter(|&i| !st.peers[i].gone) else {
            batch.clear();
            return Ok(true);
        };
        let mut queued = false;
        let mut result = Ok(true);
        while let Some(msg) = batch.pop_front() {
            match self.admit(&mut st, i, msg) {
                Ok(Admit::Queued) => queued = true,
                Ok(Admit::Done) => {}
                Ok(Admit::Full(msg)) => {
                    batch.push_front(msg);
                    match self.kind {
                        SocketType::XPub => st.xpub_blocked = true,
                        _ => st.peers[i].blocked = true,
                    }
                    result = Ok(false);
                    break;
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if queued {
            self.notify_app(&mut st);
        }
        result
    }

    /// Takes one message from peer `i` as the socket type does: queues it for
    /// the application, uses it (a subscription), drops it, or hands it back
    /// because the queue is full; an error drops the peer.
    fn admit(&self, st: &mut State, i: usize, msg: Message) -> Result<Admit, Error> {
        let peer_id = st.peers[i].peer.id;
        match self.kind {
            SocketType::Pub | SocketType::XPub => {
                // Subscribers send subscriptions as messages in ZMTP 3.0 form.
                let sub = match msg.frames() {
                    [frame] => SubscriptionMessage::parse(frame),
                    _ => None,
                };
                match sub {
                    // XPUB: held back at the high-water mark below, as messages are.
                    Some(sub) if !self.xpub_full(st) => {
                        self.on_subscription(st, i, sub)?;
                        return Ok(Admit::Done);
                    }
                    Some(_) => {}
                    None if self.kind == SocketType::Pub => return Ok(Admit::Done),
                    None => {}
                }
            }
            // A PUSH receives nothing; a stray message is dropped.
            SocketType::Push => return Ok(Admit::Done),
            SocketType::Sub | SocketType::XSub => {
                let first = msg.first().map_or(&[][..], |f| &f[..]);
                if !st.subscriptions.matches(first) {
                    return Ok(Admit::Done);
                }
            }
            // Only the peer a REQ asked may answer, and only while it waits.
            SocketType::Req if st.req.expecting.map(|(p, _)| p) != Some(peer_id) => {
                return Ok(Admit::Done);
            }
            _ => {}
        }
        if self.kind == SocketType::XPub {
            if st.xpub_inbound.len() >= self.options.rcvhwm {
                return Ok(Admit::Full(msg));
            }
            st.xpub_inbound.push_back(msg);
            st.queued += 1;
            return Ok(Admit::Queued);
        }
        if st.peers[i].inbound.len() >= self.options.rcvhwm {
            return Ok(Admit::Full(msg));
        }
        Core::enqueue(st, i, msg);
        Ok(Admit::Queued)
    }

    /// XPUB: whether the queue for the application is at the high-water mark.
    fn xpub_full(&self, st: &State) -> bool {
        self.kind == SocketType::XPub && st.xpub_inbound.len() >= self.options.rcvhwm
    }

    /// Applies a subscriber's subscription or cancellation. A new topic past
    /// the subscriber's limits is an error that drops it: we keep every topic,
    /// so they are all that stands between a subscriber inventing topics
    /// without end and our memory.
    fn on_subscription(
        &self,
        st: &mut State,
        i: usize,
        sub: SubscriptionMessage,
    ) -> Result<(), Error> {
        // Counted per peer, as ZMTP 3.1 says.
        let limits = self.options.subscription_limits;
        let (SubscriptionMessage::Subscribe(t) | SubscriptionMessage::Cancel(t)) = &sub;
        if t.is_empty() {
            // May make the peer take every message, or stop.
            st.fanout.invalidate();
        }
        let changed_for_peer = match &sub {
            SubscriptionMessage::Subscribe(t) => st.peers[i].subscriptions.add_within(t, limits)?,
            SubscriptionMessage::Cancel(t) => st.peers[i].subscriptions.remove(t),
        };
        if self.kind != SocketType::XPub {
            return Ok(());
        }
        // XPUB tells the application of a topic's first subscriber and of its last
        // cancellation (all of them when verbose).
        let changed_overall = changed_for_peer
            && match &sub {
                SubscriptionMessage::Subscribe(t) => st.xpub_topics.add(t),
                SubscriptionMessage::Cancel(t) => st.xpub_topics.remove(t),
            };
        if changed_overall || self.options.xpub_verbose {
            // Never dropped, which would leave the application with a wrong
            // picture: the connection threads wait for room before coming here
            // (a peer leaving may still add its cancellations past the mark).
            st.xpub_inbound.push_back(Message::from(sub.to_frame()));
            st.queued += 1;
            self.notify_app(st);
        }
        Ok(())
    }

    /// Queues `msg` from slot `i` for the application.
    fn enqueue(st: &mut State, i: usize, msg: Message) {
        let slot = &mut st.peers[i];
        slot.inbound.push_back(msg);
        if !slot.in_ready {
            slot.in_ready = true;
            let id = slot.peer.id;
            st.ready.push_back(id);
        }
        st.queued += 1;
    }

    /// Takes the next message fairly from the peers' queues: round the peers
    /// with messages, one message from each in turn.
    #[cfg(test)]
    pub(crate) fn fair_pop(&self, st: &mut State) -> Option<(u64, Message)> {
        self.fair_pop_routed(st, None).map(|(p, m, _)| (p, m))
    }

    /// [`fair_pop`](Self::fair_pop), with the routing id of the peer it came
    /// from, and what the peer said in its handshake if `info` asks for it.
    pub(crate) fn fair_pop_routed(
        &self,
        st: &mut State,
        info: Option<&mut Option<PeerInfo>>,
    ) -> Option<(u64, Message, Bytes)> {
        while let Some(peer_id) = st.ready.pop_front() {
            let Some(i) = st.slot(peer_id) else {
                continue; // gone meanwhile
            };
            let Some(msg) = st.peers[i].inbound.pop_front() else {
                st.peers[i].in_ready = false; // emptied in bulk meanwhile
                continue;
            };
            st.queued -= 1;
            let routing_id = st.peers[i].peer.routing_id.clone();
            if let Some(info) = info {
                *info = Some(st.peers[i].peer.info.clone());
            }
            if st.peers[i].inbound.is_empty() {
                st.peers[i].in_ready = false;
            } else {
                st.ready.push_back(peer_id);
            }
            self.after_pop(st, i);
            return Some((peer_id, msg, routing_id));
        }
        None
    }

    /// XPUB: takes the next subscription or message for the application, and
    /// resumes reading if the I/O thread had stopped for want of room.
    pub(crate) fn pop_xpub(&self, st: &mut State) -> Option<Message> {
        let msg = st.xpub_inbound.pop_front()?;
        st.queued -= 1;
        if st.xpub_blocked && st.xpub_inbound.len() < self.options.rcvhwm {
            st.xpub_blocked = false;
            self.doorbell.submit_lazy(Task::ResumeAll(self.id));
        }
        self.update_readiness(st);
        Some(msg)
    }

    /// Takes the next message from one peer's queue (and what the peer said
    /// in its handshake, if `info` asks for it).
    pub(crate) fn pop_from(
        &self,
        st: &mut State,
        peer_id: u64,
        info: Option<&mut Option<PeerInfo>>,
    ) -> Option<Message> {
        let i = st.slot(peer_id)?;
        let msg = st.peers[i].inbound.pop_front()?;
        if let Some(info) = info {
            *info = Some(st.peers[i].peer.info.clone());
        }
        st.queued -= 1;
        self.after_pop(st, i);
        Some(msg)
    }

    /// After a message was taken from slot `i`: resume its reading, drop the
    /// slot once its departed peer is read out, update readiness.
    fn after_pop(&self, st: &mut State, i: usize) {
        self.unblock(st, i);
        if st.peers[i].gone && st.peers[i].inbound.is_empty() {
            st.remove_slot(i);
        }
        self.update_readiness(st);
    }

    /// Resumes reading peer `i` if its I/O thread stopped for want of room and
    /// there is some.
    ///
    /// At the first free place rather than at a low-water mark (as libzmq
    /// does): the I/O thread holds a run ready, and a queue of a thousand
    /// small messages lasts only some tens of microseconds at full speed.
    fn unblock(&self, st: &mut State, i: usize) {
        let slot = &mut st.peers[i];
        if slot.blocked && slot.inbound.len() < self.options.rcvhwm {
            slot.blocked = false;
            self.doorbell.submit_lazy(slot.peer.out.resume_task());
        }
    }

    /// [`unblock`](Self::unblock) for every peer, after the application threw
    /// queued messages away in bulk.
    pub(crate) fn unblock_all(&self, st: &mut State) {
        for i in 0..st.peers.len() {
            self.unblock(st, i);
        }
    }
}

/// What [`Core::admit`] did with a message.
enum Admit {
    /// Queued for the application.
    Queued,
    /// Used up or dropped, as the socket type says.
    Done,
    /// Not taken: the queue is at the high-water mark.
    Full(Message),
}

/// Sends a subscription change to a publisher, as a command to a ZMTP 3.1 peer
/// and as a message to a 3.0 one. Subscriptions bypass the high-water mark.
pub(crate) fn send_subscription(peer: &Peer, sub: SubscriptionMessage) {
    peer.out.subscription(sub, peer.info.greeting.is_3_1());
}

/// libzmq's form of a generated routing id: a zero byte, then a 32-bit counter.
fn generate_routing_id(st: &mut State) -> Bytes {
    loop {
        let n = st.next_routing_id;
        st.next_routing_id = n.wrapping_add(1);
        let mut id = vec![0u8];
        id.extend_from_slice(&n.to_be_bytes());
        let id = Bytes::from(id);
        if !st.routing.contains_key(&id) {
            return id;
        }
    }
}

fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use conduit_proto::{Greeting, Properties};

    use super::*;
    use crate::engine::out::{ConnId, PeerOut};
    use crate::transport::socket::Family;

    fn pull(rcvhwm: usize) -> Arc<Core> {
        let mut options = SocketOptions::new(SocketType::Pull);
        options.rcvhwm = rcvhwm;
        Core::new(SocketType::Pull, options).unwrap()
    }

    /// A PUSH peer in service on `core` (the other end of its stream is
    /// returned to keep it open).
    fn add_push(core: &Core) -> (u64, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let stream = Arc::new(SocketStream::new(ours.into(), Family::Unix));
        let conn = ConnId {
            token: usize::MAX,
            serial: 0,
        };
        let out = Arc::new(PeerOut::new(stream, core.doorbell.clone(), conn, 10));
        let info = PeerInfo {
            socket_type: SocketType::Push,
            identity: Bytes::new(),
            properties: Properties::new(),
            greeting: Greeting { major: 3, minor: 1 },
            user_id: None,
        };
        (core.add_peer(info, Outlet::Stream(out)).unwrap(), theirs)
    }

    fn batch(prefix: &str, n: usize) -> VecDeque<Message> {
        (0..n)
            .map(|i| Message::from(format!("{prefix}{i}")))
            .collect()
    }

    fn text(m: &Message) -> String {
        String::from_utf8(m.concat().to_vec()).unwrap()
    }

    #[test]
    fn runs_from_several_peers_are_read_one_message_per_peer_in_turn() {
        let core = pull(1000);
        let (a, _ta) = add_push(&core);
        let (b, _tb) = add_push(&core);
        assert!(core.deliver(a, &mut batch("a", 3)).unwrap());
        assert!(core.deliver(b, &mut batch("b", 2)).unwrap());
        let mut st = core.lock();
        let got: Vec<String> = std::iter::from_fn(|| core.fair_pop(&mut st))
            .map(|(_, m)| text(&m))
            .collect();
        assert_eq!(got, ["a0", "b0", "a1", "b1", "a2"]);
        assert!(!st.has_queued());
    }

    #[test]
    fn a_full_queue_takes_no_more_and_says_so_until_the_application_reads() {
        let core = pull(4);
        let (a, _ta) = add_push(&core);
        let mut run = batch("m", 10);
        assert!(!core.deliver(a, &mut run).unwrap(), "not all taken");
        assert_eq!(run.len(), 6, "the rest is handed back, in order");
        assert_eq!(text(&run[0]), "m4");
        {
            let mut st = core.lock();
            assert!(st.peers[0].blocked, "the I/O side stops reading it");
            assert_eq!(text(&core.fair_pop(&mut st).unwrap().1), "m0");
            assert!(!st.peers[0].blocked, "room: reading resumes");
        }
        assert!(!core.deliver(a, &mut run).unwrap());
        assert_eq!(run.len(), 5, "exactly the room made is filled");
    }

    #[test]
    fn what_a_departed_peer_sent_stays_readable_then_its_slot_goes() {
        let core = pull(1000);
        let (a, _ta) = add_push(&core);
        assert!(core.deliver(a, &mut batch("x", 2)).unwrap());
        core.remove_peer(a);
        assert_eq!(Core::live_peers(&core.lock()).count(), 0);
        let mut st = core.lock();
        assert_eq!(text(&core.fair_pop(&mut st).unwrap().1), "x0");
        assert_eq!(text(&core.fair_pop(&mut st).unwrap().1), "x1");
        assert!(st.peers.is_empty(), "the slot goes once read out");
        drop(st);
        // A late delivery for it is dropped, not queued.
        assert!(core.deliver(a, &mut batch("y", 1)).unwrap());
        assert!(!core.lock().has_queued());
    }
}
