//! The state a socket shares between the application's threads and its
//! connection threads, and the rules for peers joining, leaving and delivering.
//!
//! One mutex guards it all. Nothing blocks while holding it: sends under it are
//! `try_send` (which queues, never waits), and waits release it through one of
//! two condition variables: `app` for application threads (a message arrived, a
//! peer joined, a queue drained) and `readers` for connection threads (room in
//! an inbound queue).

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::AtomicU16;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use conduit_proto::{Command, Message, PeerInfo, SocketType, SubscriptionMessage, Subscriptions};

use super::events::SocketEvent;
use super::options::SocketOptions;
use crate::channel::Channel;
use crate::error::Error;
use crate::transport::Wait;

/// A connected peer in service.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) id: u64,
    pub(crate) channel: Arc<Channel>,
    pub(crate) info: PeerInfo,
    /// How a ROUTER addresses it.
    pub(crate) routing_id: Bytes,
    /// Who reads the channel: its connection thread, or an application thread
    /// waiting in `recv` (see `links::read_direct`).
    pub(crate) role: Mutex<ReadRole>,
    /// Signalled when the role changes hands.
    pub(crate) role_changed: Condvar,
    /// Wakes the connection thread from its wait for input, so that it hands
    /// the role to the application.
    pub(crate) wake: Waker,
    /// The TTL of the last PING that an application thread read, for the
    /// connection thread's heartbeat (0: none since it last looked).
    pub(crate) ping_ttl: AtomicU16,
    /// Messages an application thread read but found no room for: the
    /// connection thread delivers them first, waiting for room as usual.
    pub(crate) leftover: Mutex<VecDeque<Message>>,
}

/// Who reads a peer's channel. Only the holder reads, and the connection thread
/// never blocks inside a read, only in `poll` or on `role_changed`, so the role
/// can change hands without waiting for the peer to send something.
#[derive(Debug, Default)]
pub(crate) struct ReadRole {
    /// An application thread holds the role. It keeps it between calls to
    /// `recv` (a ping-pong peer then never involves the connection thread)
    /// until the connection thread takes it back, which it does only while no
    /// application thread is in `recv`.
    pub(crate) app: bool,
    /// The holding application thread is inside `recv` now.
    pub(crate) app_in_recv: bool,
    /// An application thread asked for the role.
    pub(crate) wanted: bool,
    /// The connection thread waits for input in `poll`, where `wake` reaches it.
    pub(crate) conn_polling: bool,
    /// The connection thread stopped reading for good.
    pub(crate) conn_done: bool,
}

impl Peer {
    pub(crate) fn role(&self) -> MutexGuard<'_, ReadRole> {
        self.role.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    /// The peer's connection thread waits for room in `inbound`: the application
    /// wakes it when it makes some.
    pub(crate) blocked: bool,
}

/// REQ: the request whose reply we wait for.
#[derive(Debug, Default)]
pub(crate) struct ReqState {
    pub(crate) expecting: Option<(u64, Option<u32>)>,
    pub(crate) next_request_id: u32,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) peers: Vec<Slot>,
    pub(crate) next_peer_id: u64,
    /// Round-robin position for sending and fair-queueing position for receiving.
    pub(crate) send_cursor: usize,
    pub(crate) recv_cursor: usize,
    pub(crate) closing: bool,
    /// Connections still in their handshake, so that closing can abort them.
    pub(crate) handshaking: HashMap<u64, Arc<Channel>>,
    pub(crate) threads: Vec<JoinHandle<()>>,
    pub(crate) app_waiting: usize,
    /// An application thread reads a peer's channel itself (`links::read_direct`).
    pub(crate) app_reading: bool,
    pub(crate) readers_waiting: usize,
    pub(crate) req: ReqState,
    /// REP: the peer and envelope of the request being answered.
    pub(crate) rep: Option<(u64, Vec<Bytes>)>,
    /// SUB and XSUB: our subscriptions, for filtering and for new publishers.
    pub(crate) subscriptions: Subscriptions,
    /// XPUB: subscriptions over all peers (a topic counts once per peer), and
    /// what is waiting for the application.
    pub(crate) xpub_topics: Subscriptions,
    pub(crate) xpub_inbound: VecDeque<Message>,
    /// XPUB: connection threads wait for room in `xpub_inbound`.
    pub(crate) xpub_blocked: bool,
    /// ROUTER: routing id to peer id.
    pub(crate) routing: HashMap<Bytes, u64>,
    pub(crate) next_routing_id: u32,
}

impl State {
    pub(crate) fn slot(&self, peer_id: u64) -> Option<usize> {
        self.peers.iter().position(|s| s.peer.id == peer_id)
    }

    /// Drops the slots of departed peers with nothing left to read, after a bulk
    /// change to the queues.
    pub(crate) fn sweep(&mut self) {
        self.peers.retain(|s| !(s.gone && s.inbound.is_empty()));
        if self.recv_cursor >= self.peers.len() {
            self.recv_cursor = 0;
        }
        if self.send_cursor >= self.peers.len() {
            self.send_cursor = 0;
        }
    }
}

/// Wakes threads blocked in `poll`: on a listener when the socket closes, and
/// a peer's reader when the reading role changes hands. An eventfd, so that it
/// costs one descriptor, not a pipe's two: a socket has one per peer.
#[derive(Debug)]
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> std::io::Result<Waker> {
        use rustix::event::{EventfdFlags, eventfd};
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Waker { fd })
    }

    pub(crate) fn wake(&self) {
        // Adds 1 to the counter; it only fails when the counter would overflow,
        // and then the eventfd is readable anyway.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Resets the counter, for a waker that is used more than once.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
    }
}

#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) kind: SocketType,
    pub(crate) options: SocketOptions,
    pub(crate) state: Mutex<State>,
    pub(crate) app: Condvar,
    pub(crate) readers: Condvar,
    /// Signalled only when the socket starts closing (for sleeping reconnectors).
    pub(crate) closed: Condvar,
    pub(crate) waker: Waker,
    /// Wakes an application thread that reads a peer's channel itself (and so
    /// waits in `poll`, not on `app`) when something else changed: another
    /// peer's messages were queued, a peer joined or left.
    pub(crate) app_wake: Waker,
}

/// Why a waiting application call gave up.
pub(crate) enum Gave {
    /// Its deadline passed.
    Up,
    /// The socket is closing.
    Closing,
}

impl Core {
    pub(crate) fn new(kind: SocketType, options: SocketOptions) -> std::io::Result<Arc<Core>> {
        let state = State {
            // libzmq starts generated routing ids at a random number.
            next_routing_id: random_u32(),
            ..State::default()
        };
        Ok(Arc::new(Core {
            kind,
            options,
            state: Mutex::new(state),
            app: Condvar::new(),
            readers: Condvar::new(),
            closed: Condvar::new(),
            waker: Waker::new()?,
            app_wake: Waker::new()?,
        }))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn emit(&self, event: SocketEvent) {
        if let Some(monitor) = &self.options.monitor {
            monitor(&event);
        }
    }

    pub(crate) fn notify_app(&self, st: &State) {
        if st.app_waiting > 0 {
            self.app.notify_all();
        }
        if st.app_reading {
            self.app_wake.wake();
        }
    }

    fn notify_readers(&self, st: &State) {
        if st.readers_waiting > 0 {
            self.readers.notify_all();
        }
    }

    /// Waits for a change an application thread cares about, within `wait`.
    pub(crate) fn wait_app<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        wait: Wait,
    ) -> Result<MutexGuard<'a, State>, (MutexGuard<'a, State>, Gave)> {
        if st.closing {
            return Err((st, Gave::Closing));
        }
        let deadline = match wait {
            Wait::Never => return Err((st, Gave::Up)),
            Wait::Forever => None,
            Wait::Until(d) => Some(d),
        };
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
        if st.closing {
            return Err((st, Gave::Closing));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err((st, Gave::Up));
        }
        Ok(st)
    }

    /// A notifier for a peer's send queue draining: wakes application threads
    /// waiting for room.
    fn drain_notifier(self: &Arc<Core>) -> Arc<dyn Fn() + Send + Sync> {
        let core: Weak<Core> = Arc::downgrade(self);
        Arc::new(move || {
            let Some(core) = core.upgrade() else { return };
            if SENDING_UNDER_LOCK.get() {
                // Called from a send made under the lock (see `under_lock`):
                // taking it again would deadlock, and holding it, we know no
                // waiter is between checking for room and waiting.
                core.app.notify_all();
            } else {
                let st = core.lock();
                core.notify_app(&st);
            }
        })
    }

    /// Puts a peer that completed its handshake in service, or says why not.
    pub(crate) fn add_peer(
        self: &Arc<Core>,
        channel: Arc<Channel>,
        info: PeerInfo,
    ) -> Result<Arc<Peer>, (Arc<Channel>, String)> {
        let mut st = self.lock();
        if st.closing {
            return Err((channel, "the socket is closing".into()));
        }
        if self.kind == SocketType::Pair && Core::live_peers(&st).next().is_some() {
            return Err((
                channel,
                "a PAIR socket talks to one peer, and has one".into(),
            ));
        }
        let mut routing_id = Bytes::new();
        if self.kind == SocketType::Router {
            if info.identity.is_empty() {
                routing_id = generate_routing_id(&mut st);
            } else if let Some(&holder) = st.routing.get(&info.identity) {
                if !self.options.router_handover {
                    return Err((
                        channel,
                        format!(
                            "identity {:?} is already in use",
                            String::from_utf8_lossy(&info.identity)
                        ),
                    ));
                }
                // ROUTER_HANDOVER: the newcomer takes the identity over.
                st.routing.remove(&info.identity);
                if let Some(i) = st.slot(holder) {
                    st.peers[i].peer.channel.abort();
                }
                routing_id = info.identity.clone();
            } else {
                routing_id = info.identity.clone();
            }
        }
        let wake = match Waker::new() {
            Ok(w) => w,
            Err(e) => return Err((channel, format!("cannot make a pipe: {e}"))),
        };
        let id = st.next_peer_id;
        st.next_peer_id += 1;
        channel.on_drain(self.drain_notifier());
        let peer = Arc::new(Peer {
            id,
            channel,
            info,
            routing_id: routing_id.clone(),
            role: Mutex::default(),
            role_changed: Condvar::new(),
            wake,
            ping_ttl: AtomicU16::new(0),
            leftover: Mutex::default(),
        });
        if self.kind == SocketType::Router {
            st.routing.insert(routing_id, id);
        }
        if matches!(self.kind, SocketType::Sub | SocketType::XSub) {
            for (topic, _) in st.subscriptions.iter() {
                send_subscription(&peer, SubscriptionMessage::Subscribe(topic));
            }
        }
        st.peers.push(Slot {
            peer: peer.clone(),
            inbound: VecDeque::new(),
            subscriptions: Subscriptions::new(),
            gone: false,
            blocked: false,
        });
        self.notify_app(&st);
        Ok(peer)
    }

    /// Takes a peer out of service. What it sent and the application has not read
    /// yet stays readable; the slot goes once that is read.
    pub(crate) fn remove_peer(&self, peer_id: u64) {
        let mut st = self.lock();
        let Some(i) = st.slot(peer_id) else {
            return;
        };
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
                }
            }
        }
        st.peers[i].subscriptions = Subscriptions::new();
        self.drop_slot_if_drained(&mut st, i);
        self.notify_app(&st);
        self.notify_readers(&st);
    }

    /// Removes slot `i` if its peer is gone and nothing of it is left to read.
    fn drop_slot_if_drained(&self, st: &mut State, i: usize) {
        if !(st.peers[i].gone && st.peers[i].inbound.is_empty()) {
            return;
        }
        st.peers.remove(i);
        if st.recv_cursor > i {
            st.recv_cursor -= 1;
        }
        if st.send_cursor > i {
            st.send_cursor -= 1;
        }
    }

    /// Peers in service (not counting departed ones whose messages are still
    /// being read).
    pub(crate) fn live_peers(st: &State) -> impl Iterator<Item = &Slot> {
        st.peers.iter().filter(|s| !s.gone)
    }

    /// A peer's connection thread hands over the messages it received, taking
    /// them in order from the front of `batch`.
    ///
    /// One lock and at most one wake-up of the application for the whole batch
    /// rather than per message: with a lock and a condition variable per message
    /// the two threads hand the lock back and forth (a context switch each time
    /// when they share a core), which capped a PULL at a quarter of what the
    /// peer's channel alone reaches. Waits while the peer's inbound queue is full,
    /// so the RCVHWM holds as before; returns false, leaving the rest in `batch`,
    /// if the socket is closing or the peer is out of service, and an error if
    /// the peer must be dropped.
    pub(crate) fn deliver(
        &self,
        peer: &Peer,
        batch: &mut VecDeque<Message>,
    ) -> Result<bool, Error> {
        let mut st = self.lock();
        let mut queued = false;
        let outcome = 'deliver: loop {
            if st.closing {
                break Ok(false);
            }
            let Some(i) = st.slot(peer.id).filter(|&i| !st.peers[i].gone) else {
                break Ok(false);
            };
            st.peers[i].blocked = false;
            if let Err(e) = self.admit_run(&mut st, i, peer, batch, &mut queued) {
                break 'deliver Err(e);
            }
            if batch.is_empty() {
                break Ok(true);
            }
            // Full: stop reading from this peer, so the transport pushes back on
            // it, until the application has made room.
            if std::mem::take(&mut queued) {
                self.notify_app(&st);
            }
            match self.kind {
                SocketType::XPub => st.xpub_blocked = true,
                _ => st.peers[i].blocked = true,
            }
            st.readers_waiting += 1;
            st = self.readers.wait(st).unwrap_or_else(|e| e.into_inner());
            st.readers_waiting -= 1;
        };
        if queued {
            self.notify_app(&st);
        }
        outcome
    }

    /// What an application thread read from `peer` itself: admitted as
    /// [`deliver`](Self::deliver) does, without waiting. False, with the rest
    /// left in `batch`, if a queue filled up or the peer is out of service.
    pub(crate) fn admit_direct(&self, peer: &Peer, batch: &mut VecDeque<Message>) -> bool {
        let mut st = self.lock();
        let Some(i) = st.slot(peer.id).filter(|&i| !st.peers[i].gone) else {
            return false;
        };
        let mut queued = false;
        // Only subscriptions (PUB, XPUB) fail, and those sockets are never
        // read here (see `routing::direct_peer`).
        let _ = self.admit_run(&mut st, i, peer, batch, &mut queued);
        // Not `notify_app`: this thread is the one reading.
        if queued && st.app_waiting > 0 {
            self.app.notify_all();
        }
        batch.is_empty()
    }

    /// Admits messages from the front of `batch` until one finds no room (it
    /// stays at the front); sets `queued` if any was queued for the application.
    fn admit_run(
        &self,
        st: &mut State,
        i: usize,
        peer: &Peer,
        batch: &mut VecDeque<Message>,
        queued: &mut bool,
    ) -> Result<(), Error> {
        while let Some(msg) = batch.pop_front() {
            match self.admit(st, i, peer, msg)? {
                Admit::Queued => *queued = true,
                Admit::Done => {}
                Admit::Full(msg) => {
                    batch.push_front(msg);
                    break;
                }
            }
        }
        Ok(())
    }

    /// Takes one message from peer `i` as the socket type does: queues it for
    /// the application, uses it (a subscription), drops it, or hands it back
    /// because the queue is full; an error drops the peer.
    fn admit(&self, st: &mut State, i: usize, peer: &Peer, msg: Message) -> Result<Admit, Error> {
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
            SocketType::Req if st.req.expecting.map(|(p, _)| p) != Some(peer.id) => {
                return Ok(Admit::Done);
            }
            _ => {}
        }
        let queue = match self.kind {
            SocketType::XPub => &mut st.xpub_inbound,
            _ => &mut st.peers[i].inbound,
        };
        if queue.len() >= self.options.rcvhwm {
            return Ok(Admit::Full(msg));
        }
        queue.push_back(msg);
        Ok(Admit::Queued)
    }

    /// A command that arrived from a peer (PING and ERROR are the channel's).
    /// An error drops the peer.
    pub(crate) fn on_command(&self, peer: &Peer, cmd: &Command) -> Result<(), Error> {
        if !matches!(self.kind, SocketType::Pub | SocketType::XPub) {
            return Ok(());
        }
        let sub = match cmd {
            Command::Subscribe(t) => SubscriptionMessage::Subscribe(t.clone()),
            Command::Cancel(t) => SubscriptionMessage::Cancel(t.clone()),
            _ => return Ok(()),
        };
        let mut st = self.lock();
        // An XPUB hands subscriptions to the application: while its queue is at
        // the high-water mark, stop reading from this peer, as for a message.
        // Otherwise a peer subscribing and cancelling without end, to an
        // application not reading, would fill our memory.
        while self.xpub_full(&st) && !st.closing {
            if st.slot(peer.id).is_none_or(|i| st.peers[i].gone) {
                return Ok(());
            }
            st.xpub_blocked = true;
            st.readers_waiting += 1;
            st = self.readers.wait(st).unwrap_or_else(|e| e.into_inner());
            st.readers_waiting -= 1;
        }
        if st.closing {
            return Ok(());
        }
        match st.slot(peer.id) {
            Some(i) => self.on_subscription(&mut st, i, sub),
            None => Ok(()),
        }
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
            self.notify_app(st);
        }
        Ok(())
    }

    /// Takes the next message fairly from the peers' queues: round the peers,
    /// one message from each that has one.
    pub(crate) fn fair_pop(&self, st: &mut State) -> Option<(u64, Message)> {
        let n = st.peers.len();
        for k in 0..n {
            let i = (st.recv_cursor + k) % n;
            if let Some(msg) = st.peers[i].inbound.pop_front() {
                let peer_id = st.peers[i].peer.id;
                st.recv_cursor = (i + 1) % n;
                self.unblock(st, i);
                self.drop_slot_if_drained(st, i);
                return Some((peer_id, msg));
            }
        }
        None
    }

    /// [`fair_pop`](Self::fair_pop), with the routing id of the peer it came from.
    pub(crate) fn fair_pop_routed(&self, st: &mut State) -> Option<(u64, Message, Bytes)> {
        let n = st.peers.len();
        let i = (0..n)
            .map(|k| (st.recv_cursor + k) % n)
            .find(|&i| !st.peers[i].inbound.is_empty())?;
        let routing_id = st.peers[i].peer.routing_id.clone();
        let (peer, msg) = self.fair_pop(st)?;
        Some((peer, msg, routing_id))
    }

    /// XPUB: takes the next subscription or message for the application, and
    /// wakes the connection threads waiting for room in the queue.
    pub(crate) fn pop_xpub(&self, st: &mut State) -> Option<Message> {
        let msg = st.xpub_inbound.pop_front()?;
        if st.xpub_blocked && st.xpub_inbound.len() < self.options.rcvhwm {
            st.xpub_blocked = false;
            self.notify_readers(st);
        }
        Some(msg)
    }

    /// Takes the next message from one peer's queue.
    pub(crate) fn pop_from(&self, st: &mut State, peer_id: u64) -> Option<Message> {
        let i = st.slot(peer_id)?;
        let msg = st.peers[i].inbound.pop_front()?;
        self.unblock(st, i);
        self.drop_slot_if_drained(st, i);
        Some(msg)
    }

    /// Wakes peer `i`'s connection thread if it waits for room and there is some.
    ///
    /// Once per wait, not per message taken: the flag is cleared here and set
    /// again only when the thread finds the queue full again. It is woken at the
    /// first free place rather than at a low-water mark (as libzmq does): it
    /// holds a batch ready, and a queue of a thousand 64-byte messages lasts only
    /// some tens of microseconds at full speed, about what waking a thread takes,
    /// so waiting for half of it to drain starved the application (7.7 against
    /// 10-12 M/s, PUSH to PULL over ipc on separate cores).
    fn unblock(&self, st: &mut State, i: usize) {
        let slot = &mut st.peers[i];
        if slot.blocked && slot.inbound.len() < self.options.rcvhwm {
            slot.blocked = false;
            self.notify_readers(st);
        }
    }

    /// [`unblock`](Self::unblock) for every peer, after the application threw
    /// queued messages away in bulk.
    pub(crate) fn unblock_all(&self, st: &mut State) {
        for i in 0..st.peers.len() {
            self.unblock(st, i);
        }
    }

    /// Wakes everything so that it notices the socket is closing.
    pub(crate) fn wake_all(&self) {
        self.app.notify_all();
        self.readers.notify_all();
        self.closed.notify_all();
        self.waker.wake();
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

thread_local! {
    /// Whether this thread is sending to a peer while holding its socket's lock.
    static SENDING_UNDER_LOCK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `send`, a send to a peer of a socket whose lock this thread holds. A
/// send that drains a queue once full, or finds the stream broken, calls the
/// socket's drain notifier from this thread, which must then not take the lock
/// (a PUB publishing to subscribers that stalled and left deadlocked so).
pub(crate) fn under_lock<R>(send: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SENDING_UNDER_LOCK.set(self.0);
        }
    }
    let _reset = Reset(SENDING_UNDER_LOCK.replace(true));
    send()
}

/// Sends a subscription change to a publisher, as a command to a ZMTP 3.1 peer
/// and as a message to a 3.0 one. Subscriptions bypass the high-water mark.
/// Called with the socket's lock held.
pub(crate) fn send_subscription(peer: &Peer, sub: SubscriptionMessage) {
    let _ = under_lock(|| {
        if peer.info.greeting.is_3_1() {
            peer.channel.send_command(&match sub {
                SubscriptionMessage::Subscribe(t) => Command::Subscribe(t),
                SubscriptionMessage::Cancel(t) => Command::Cancel(t),
            })
        } else {
            peer.channel.send_unbounded(Message::from(sub.to_frame()))
        }
    });
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
    use super::*;

    /// A PULL core with `rcvhwm`, and a peer in service on it (the other end of
    /// the channel is returned to keep it open).
    fn pull_with_peer(core: &Arc<Core>) -> (Arc<Peer>, Channel) {
        let (ours, theirs) = Channel::pair().unwrap();
        let info = ours.peer().unwrap().clone();
        let peer = core.add_peer(Arc::new(ours), info).unwrap();
        (peer, theirs)
    }

    fn pull(rcvhwm: usize) -> Arc<Core> {
        let mut options = SocketOptions::new(SocketType::Pull);
        options.rcvhwm = rcvhwm;
        Core::new(SocketType::Pull, options).unwrap()
    }

    fn numbered(range: std::ops::Range<u32>) -> VecDeque<Message> {
        range.map(|i| Message::from(i.to_string())).collect()
    }

    fn text(msg: &Message) -> String {
        String::from_utf8(msg.concat().to_vec()).unwrap()
    }

    /// Delivers `batch` from `peer` on a thread of its own, as its connection
    /// thread would; the thread returns whether the peer stayed in service and
    /// how many messages were left undelivered.
    fn deliver_on_thread(
        core: &Arc<Core>,
        peer: &Arc<Peer>,
        mut batch: VecDeque<Message>,
    ) -> std::thread::JoinHandle<(bool, usize)> {
        let (core, peer) = (core.clone(), peer.clone());
        std::thread::spawn(move || {
            let in_service = core.deliver(&peer, &mut batch).unwrap();
            (in_service, batch.len())
        })
    }

    /// Waits (without a time limit: the test harness has one) until `f` holds.
    fn until(core: &Core, f: impl Fn(&State) -> bool) {
        while !f(&core.lock()) {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_batch_fills_the_queue_to_the_high_water_mark_and_waits_for_room() {
        let core = pull(4);
        let (peer, _theirs) = pull_with_peer(&core);
        let reader = deliver_on_thread(&core, &peer, numbered(0..10));
        // The connection thread stops at the high-water mark with the rest held.
        until(&core, |st| st.readers_waiting == 1);
        assert_eq!(core.lock().peers[0].inbound.len(), 4);
        // Taking one makes room and wakes the connection thread, once.
        let mut got = Vec::new();
        {
            let mut st = core.lock();
            assert!(st.peers[0].blocked);
            got.push(core.fair_pop(&mut st).unwrap().1);
            assert!(!st.peers[0].blocked, "woken when there is room");
        }
        loop {
            let mut st = core.lock();
            assert!(st.peers[0].inbound.len() <= 4);
            if let Some((_, m)) = core.fair_pop(&mut st) {
                got.push(m);
            } else if got.len() == 10 {
                break;
            }
        }
        assert_eq!(reader.join().unwrap(), (true, 0));
        let got: Vec<String> = got.iter().map(text).collect();
        let want: Vec<String> = (0..10).map(|i| i.to_string()).collect();
        assert_eq!(got, want, "all of it, in order");
    }

    #[test]
    fn batches_from_several_peers_are_still_read_one_per_peer_in_turn() {
        let core = pull(1000);
        let (a, _ta) = pull_with_peer(&core);
        let (b, _tb) = pull_with_peer(&core);
        let mut batch = numbered(0..5);
        assert!(core.deliver(&a, &mut batch).unwrap());
        let mut batch: VecDeque<Message> = (0..5).map(|i| Message::from(format!("b{i}"))).collect();
        assert!(core.deliver(&b, &mut batch).unwrap());
        let mut st = core.lock();
        let got: Vec<String> = std::iter::from_fn(|| core.fair_pop(&mut st))
            .map(|(_, m)| text(&m))
            .collect();
        assert_eq!(
            got,
            ["0", "b0", "1", "b1", "2", "b2", "3", "b3", "4", "b4"],
            "fair queueing takes one message per peer in turn"
        );
    }

    #[test]
    fn a_closing_socket_stops_a_waiting_delivery() {
        let core = pull(2);
        let (peer, _theirs) = pull_with_peer(&core);
        let reader = deliver_on_thread(&core, &peer, numbered(0..5));
        until(&core, |st| st.readers_waiting == 1);
        core.lock().closing = true;
        core.wake_all();
        assert_eq!(reader.join().unwrap(), (false, 3));
    }
}
