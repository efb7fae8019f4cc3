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

/// Wakes threads blocked in `poll` on a listener when the socket closes.
#[derive(Debug)]
pub(crate) struct Waker {
    read: OwnedFd,
    write: OwnedFd,
}

impl Waker {
    fn new() -> std::io::Result<Waker> {
        let (read, write) = rustix::pipe::pipe_with(
            rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK,
        )?;
        Ok(Waker { read, write })
    }

    pub(crate) fn wake(&self) {
        let _ = rustix::io::write(&self.write, &[1]);
    }

    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.read.as_fd()
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
        let id = st.next_peer_id;
        st.next_peer_id += 1;
        channel.on_drain(self.drain_notifier());
        let peer = Arc::new(Peer {
            id,
            channel,
            info,
            routing_id: routing_id.clone(),
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

    /// A peer's connection thread hands over a message it received. Waits while
    /// the peer's inbound queue is full; returns false if the socket is closing
    /// or the peer is out of service, and an error if the peer must be dropped.
    pub(crate) fn deliver(&self, peer: &Peer, msg: Message) -> Result<bool, Error> {
        let mut st = self.lock();
        loop {
            if st.closing {
                return Ok(false);
            }
            let Some(i) = st.slot(peer.id).filter(|&i| !st.peers[i].gone) else {
                return Ok(false);
            };
            match self.kind {
                SocketType::Pub | SocketType::XPub => {
                    // Subscribers send subscriptions as messages in ZMTP 3.0 form.
                    let sub = match msg.frames() {
                        [frame] => SubscriptionMessage::parse(frame),
                        _ => None,
                    };
                    match sub {
                        // XPUB: held back at the high-water mark below, as messages are.
                        Some(sub) if !self.xpub_full(&st) => {
                            self.on_subscription(&mut st, i, sub)?;
                            return Ok(true);
                        }
                        Some(_) => {}
                        None if self.kind == SocketType::Pub => return Ok(true),
                        None => {}
                    }
                }
                // A PUSH receives nothing; a stray message is dropped.
                SocketType::Push => return Ok(true),
                SocketType::Sub | SocketType::XSub => {
                    let first = msg.first().map_or(&[][..], |f| &f[..]);
                    if !st.subscriptions.matches(first) {
                        return Ok(true);
                    }
                }
                // Only the peer a REQ asked may answer, and only while it waits.
                SocketType::Req if st.req.expecting.map(|(p, _)| p) != Some(peer.id) => {
                    return Ok(true);
                }
                _ => {}
            }
            let queue_len = match self.kind {
                SocketType::XPub => st.xpub_inbound.len(),
                _ => st.peers[i].inbound.len(),
            };
            if queue_len < self.options.rcvhwm {
                match self.kind {
                    SocketType::XPub => st.xpub_inbound.push_back(msg),
                    _ => st.peers[i].inbound.push_back(msg),
                }
                self.notify_app(&st);
                return Ok(true);
            }
            // Full: stop reading from this peer, so the transport pushes back on it.
            st.readers_waiting += 1;
            st = self.readers.wait(st).unwrap_or_else(|e| e.into_inner());
            st.readers_waiting -= 1;
        }
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
                let was_full = st.peers[i].inbound.len() + 1 >= self.options.rcvhwm;
                let peer_id = st.peers[i].peer.id;
                st.recv_cursor = (i + 1) % n;
                if was_full {
                    self.notify_readers(st);
                }
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
        if st.xpub_inbound.len() + 1 >= self.options.rcvhwm {
            self.notify_readers(st);
        }
        Some(msg)
    }

    /// Takes the next message from one peer's queue.
    pub(crate) fn pop_from(&self, st: &mut State, peer_id: u64) -> Option<Message> {
        let i = st.slot(peer_id)?;
        let msg = st.peers[i].inbound.pop_front()?;
        if st.peers[i].inbound.len() + 1 >= self.options.rcvhwm {
            self.notify_readers(st);
        }
        self.drop_slot_if_drained(st, i);
        Some(msg)
    }

    /// Wakes everything so that it notices the socket is closing.
    pub(crate) fn wake_all(&self) {
        self.app.notify_all();
        self.readers.notify_all();
        self.closed.notify_all();
        self.waker.wake();
    }
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
