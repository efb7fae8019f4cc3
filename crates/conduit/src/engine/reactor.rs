//! A socket's reactor: one edge-triggered epoll set (through mio) over the
//! socket's listeners and connections, its timers, and the tasks application
//! threads leave at its doorbell.
//!
//! A reactor is driven one step at a time ([`Reactor::step`]) by whoever holds
//! its lock: the socket's I/O thread when the reactor's epoll descriptor
//! (registered in the I/O thread's own) becomes readable, or an application
//! thread that waits on the socket (see `io_thread.rs`). Every source is in one
//! slab; a token is its index, and a serial number tells a reused index from
//! the source a task or timer was meant for.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::conn::{Conn, Ended, Origin, Phase, READ_BUDGET, Read};
use super::connect;
use super::inproc::{self, Drained, Half, LinkId, Side};
use super::io_thread::Doorbell;
use super::out::{BATCH_MSGS, ConnId, Flushed, PeerOut, TAIL_WAIT, TAIL_WAIT_MAX};
use super::outlet::Outlet;
use super::timers::{Timer, Timers};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::socket::core::Core;
use crate::socket::events::SocketEvent;
use crate::socket::fanout::{TailLook, Watch};
use crate::transport::Listen;
use crate::transport::socket::SocketStream;

const WAKE: Token = Token(usize::MAX);
const TIMER: Token = Token(usize::MAX - 1);

/// How long a listener that ran out of descriptors waits before trying again
/// (it also tries whenever one of its thread's connections closes).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Work for an I/O thread from an application thread (or from itself).
#[derive(Debug)]
pub(crate) enum Task {
    /// Accept on a bound listener.
    Bind { core: Arc<Core>, listen: Listen },
    /// Connect to an endpoint, and reconnect whenever the connection ends.
    Connect { core: Arc<Core>, endpoint: Endpoint },
    /// Stop accepting on an endpoint, and close the connections it accepted.
    Unbind { core: Arc<Core>, endpoint: String },
    /// Stop connecting to an endpoint, and close the connection made to it.
    Disconnect { core: Arc<Core>, endpoint: String },
    /// A sender queued the start of a batch: write it once the burst pauses.
    TailFlush(ConnId),
    /// A PUB (by socket id) began a batch while streaming, which stood at
    /// the `Watch` then: hand it out once the burst pauses.
    FanoutTail(u64, Watch),
    /// The kernel would not take all that is queued: write it when it can.
    Writable(ConnId),
    /// The socket has room for this peer's messages again.
    Resume(ConnId),
    /// The socket (by id) has room again for every peer's messages (XPUB).
    ResumeAll(u64),
    /// Drop this connection, for this reason.
    Kick(ConnId, Error),
    /// The socket is closing: write what is queued, then close everything.
    Close(Arc<Core>),
    /// The linger time ran out: close everything now.
    Abort(Arc<Core>),
    /// Hold this end of a new inproc link (`inproc/`).
    InprocAttach(Box<Half>),
    /// The peer at the other end of an inproc link sent something.
    InprocDrain(LinkId),
    /// The socket has room for an inproc peer's messages again.
    InprocResume(LinkId),
    /// Drop this inproc peer, for this reason.
    InprocKick(LinkId, Error),
}

impl Reactor {
    /// A reactor for a new socket, with the doorbell application threads ring.
    pub(crate) fn new() -> io::Result<(Reactor, Arc<Doorbell>)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKE)?;
        let timers = Timers::new()?;
        poll.registry().register(
            &mut SourceFd(&timers.fd().as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        let doorbell = Arc::new(Doorbell::new(waker, poll.as_raw_fd()));
        let reactor = Reactor {
            poll,
            events: Events::with_capacity(1024),
            handle: doorbell.clone(),
            timers,
            sources: Slab::new(),
            next_serial: 1,
            connectors: Slab::new(),
            sockets: HashMap::new(),
            inproc: HashMap::new(),
            ready: VecDeque::new(),
            tail_timers: 0,
            tails: VecDeque::new(),
            tails_watched: false,
            blocked_listeners: Vec::new(),
            tasks: Vec::new(),
            due: Vec::new(),
        };
        Ok((reactor, doorbell))
    }

    /// Whether a step would find work without waiting: connections with
    /// input left over from their read budget.
    pub(crate) fn has_more(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Handles what is ready, waiting at most `timeout` for something to be
    /// (`None`: as long as it takes).
    pub(crate) fn step(&mut self, timeout: Option<Duration>) {
        let timeout = if self.ready.is_empty() && !self.handle.has_tasks() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        // The timerfd was armed at the end of the last step, and only steps
        // add timers.
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        match self.poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => events.clear(),
            Err(_) => events.clear(),
        }
        let now = Instant::now();
        for event in events.iter() {
            match event.token() {
                WAKE => {}
                TIMER => self.timers.acknowledge(),
                Token(token) => self.on_event(token, event, now),
            }
        }
        self.events = events;
        let mut tasks = std::mem::take(&mut self.tasks);
        self.handle.take(&mut tasks);
        for task in tasks.drain(..) {
            self.on_task(task, now);
        }
        self.tasks = tasks;
        let mut due = std::mem::take(&mut self.due);
        self.timers.due(now, &mut due);
        for timer in due.drain(..) {
            self.on_timer(timer, Instant::now());
        }
        self.due = due;
        let round = self.ready.len();
        for _ in 0..round {
            let Some(id) = self.ready.pop_front() else {
                break;
            };
            if self.conn_mut(id).is_some() {
                self.read(id.token, Instant::now());
            }
        }
        // Timers added in this step must wake whoever waits on the epoll set
        // next, even when that is another thread.
        self.timers.arm();
    }

    /// After the reactor's descriptor polled readable elsewhere (in tokio's
    /// reactor, for an async task): reads the socket's only connection
    /// without asking epoll which source is ready, when nothing else can be.
    /// That is when the set holds one source, an active connection not
    /// waiting to write, and no task, timer or left-over read is due, each
    /// seen without a system call; a listener's readiness is not, so a bound
    /// socket never qualifies. Returns false, having done nothing, when the
    /// caller must [`step`](Self::step) instead.
    ///
    /// The connection's event stays in the set's ready list, unharvested:
    /// each new event on it still wakes whoever polls the set, and the kernel
    /// drops the stale entry when it finds the connection not ready.
    #[cfg(feature = "tokio")]
    pub(crate) fn read_sole(&mut self) -> bool {
        if !self.ready.is_empty() || self.handle.has_tasks() || !self.inproc.is_empty() {
            return false;
        }
        let token = match self.sources.iter().next() {
            Some((token, Source::Conn(c)))
                if self.sources.len() == 1
                    && matches!(c.phase, Phase::Active { .. })
                    && !c.want_write
                    && !c.paused
                    && !c.closing =>
            {
                token
            }
            _ => return false,
        };
        let now = Instant::now();
        if self.timers.next().is_some_and(|at| at <= now) {
            return false;
        }
        self.read(token, now);
        self.timers.arm();
        true
    }
}

#[derive(Debug)]
enum Source {
    Listener(Listener),
    Conn(Box<Conn>),
}

#[derive(Debug)]
struct Listener {
    serial: u64,
    core: Arc<Core>,
    listen: Listen,
    endpoint: String,
    /// Out of descriptors: not accepting until some free up.
    blocked: bool,
}

#[derive(Debug)]
struct Connector {
    serial: u64,
    core: Arc<Core>,
    endpoint: Endpoint,
    delay: Duration,
    /// The connection it made, while there is one.
    conn: Option<usize>,
}

/// What the thread keeps for one socket.
#[derive(Debug)]
struct Entry {
    core: Arc<Core>,
    listeners: Vec<usize>,
    connectors: Vec<usize>,
    conns: HashSet<usize>,
    closing: bool,
    /// Streams closed with data the peer may not have yet: the closing
    /// application thread waits for them (see `SocketStream::wait_delivered`).
    lingering: Vec<(Arc<SocketStream>, bool)>,
}

impl Entry {
    fn new(core: Arc<Core>) -> Entry {
        Entry {
            core,
            listeners: Vec::new(),
            connectors: Vec::new(),
            conns: HashSet::new(),
            closing: false,
            lingering: Vec::new(),
        }
    }
}

/// Tails of bursts waiting on timers of their own past which new ones are
/// judged for the socket as a whole (see [`Reactor::look_at_tails`]).
const MANY_TAILS: usize = 8;

/// The I/O side of one socket. See the module documentation.
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
    handle: Arc<Doorbell>,
    timers: Timers,
    sources: Slab<Source>,
    next_serial: u64,
    connectors: Slab<Connector>,
    sockets: HashMap<u64, Entry>,
    /// The ends of inproc links this socket holds.
    inproc: HashMap<LinkId, Box<Half>>,
    /// Connections with input left after their read budget.
    ready: VecDeque<ConnId>,
    /// Tails of bursts with a timer of their own (`Timer::TailFlush`).
    tail_timers: usize,
    /// Tails judged for the socket as a whole, once it has many
    /// ([`Reactor::look_at_tails`]), oldest first, each with the socket's
    /// count of queued messages when it began.
    tails: VecDeque<(ConnId, u64)>,
    /// A look at `tails` is scheduled.
    tails_watched: bool,
    /// Listeners that ran out of descriptors.
    blocked_listeners: Vec<usize>,
    /// Scratch space for a step.
    tasks: Vec<Task>,
    due: Vec<Timer>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("sources", &self.sources.len())
            .field("connectors", &self.connectors.len())
            .finish_non_exhaustive()
    }
}

/// How a graceful close of a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Goodbye {
    /// The socket closes: the closing thread may wait for delivery.
    SocketClose,
    /// `disconnect` or `unbind`: nobody waits.
    Quiet,
}

impl Reactor {
    fn serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        match self.sources.get_mut(id.token) {
            Some(Source::Conn(c)) if c.id.serial == id.serial => Some(c),
            _ => None,
        }
    }

    fn conn_at(&mut self, token: usize) -> Option<&mut Conn> {
        conn_in(&mut self.sources, token)
    }

    fn entry(&mut self, core: &Arc<Core>) -> &mut Entry {
        self.sockets
            .entry(core.id)
            .or_insert_with(|| Entry::new(core.clone()))
    }

    fn on_event(&mut self, token: usize, event: &mio::event::Event, now: Instant) {
        match self.sources.get(token) {
            Some(Source::Listener(_)) => self.accept(token, now),
            Some(Source::Conn(_)) => {
                let connecting = matches!(
                    self.conn_at(token).map(|c| &c.phase),
                    Some(Phase::Connecting)
                );
                if connecting {
                    if event.is_writable() || event.is_error() || event.is_write_closed() {
                        self.finish_connect(token, now);
                    }
                    return;
                }
                if event.is_writable() {
                    self.flush(token);
                }
                if event.is_read_closed() || event.is_error() {
                    if let Some(conn) = self.conn_at(token) {
                        conn.read_closed = true;
                    }
                }
                if (event.is_readable() || event.is_read_closed() || event.is_error())
                    && self.sources.contains(token)
                {
                    self.read(token, now);
                }
            }
            None => {}
        }
    }

    fn on_task(&mut self, task: Task, now: Instant) {
        match task {
            Task::Bind { core, listen } => {
                if self.sockets.get(&core.id).is_some_and(|e| e.closing) {
                    return;
                }
                let serial = self.serial();
                let endpoint = listen.endpoint().to_string();
                let entry = self.sources.vacant_entry();
                let token = entry.key();
                let registered = self.poll.registry().register(
                    &mut SourceFd(&listen.as_fd().as_raw_fd()),
                    Token(token),
                    Interest::READABLE,
                );
                if let Err(e) = registered {
                    core.emit(SocketEvent::AcceptFailed {
                        endpoint,
                        error: Error::io("cannot watch the listening socket", e),
                    });
                    return;
                }
                entry.insert(Source::Listener(Listener {
                    serial,
                    core: core.clone(),
                    listen,
                    endpoint,
                    blocked: false,
                }));
                self.entry(&core).listeners.push(token);
                // Connections may have queued before we watched it.
                self.accept(token, now);
            }
            Task::Connect { core, endpoint } => {
                if self.sockets.get(&core.id).is_some_and(|e| e.closing) {
                    return;
                }
                let serial = self.serial();
                let delay = core.options.reconnect_ivl;
                let id = self.connectors.insert(Connector {
                    serial,
                    core: core.clone(),
                    endpoint,
                    delay,
                    conn: None,
                });
                self.entry(&core).connectors.push(id);
                self.connect(id, now);
            }
            Task::Unbind { core, endpoint } => self.unbind(&core, &endpoint),
            Task::Disconnect { core, endpoint } => self.disconnect(&core, &endpoint),
            Task::TailFlush(id) => {
                if self.tail_timers >= MANY_TAILS {
                    self.add_socket_tail(id, now);
                    return;
                }
                let Some(conn) = self.conn_mut(id) else {
                    return;
                };
                let (appended, batches) = {
                    let st = conn.out.lock();
                    (st.appended(), st.batches())
                };
                self.tail_timers += 1;
                self.timers.add(
                    now + TAIL_WAIT,
                    Timer::TailFlush {
                        conn: Timer::conn(id),
                        appended,
                        batches,
                        wait_us: TAIL_WAIT.as_micros() as u32,
                    },
                );
            }
            Task::FanoutTail(socket, seen) => {
                self.timers.add(
                    now + TAIL_WAIT,
                    Timer::Fanout {
                        socket,
                        seen,
                        wait_us: TAIL_WAIT.as_micros() as u32,
                    },
                );
            }
            Task::Writable(id) => {
                if self.conn_mut(id).is_some() {
                    self.flush(id.token);
                }
            }
            Task::Resume(id) => self.resume(id, now),
            Task::ResumeAll(core_id) => {
                let Some(entry) = self.sockets.get(&core_id) else {
                    return;
                };
                let ids: Vec<ConnId> = entry
                    .conns
                    .iter()
                    .filter_map(|&t| match self.sources.get(t) {
                        Some(Source::Conn(c)) if c.paused => Some(c.id),
                        _ => None,
                    })
                    .collect();
                for id in ids {
                    self.resume(id, now);
                }
            }
            Task::Kick(id, error) => {
                if self.conn_mut(id).is_some() {
                    self.end(id.token, Ended { error: Some(error) }, now);
                }
            }
            Task::Close(core) => self.close(&core, now),
            Task::Abort(core) => self.abort(&core, now),
            Task::InprocAttach(half) => self.attach_inproc(half),
            Task::InprocDrain(link) => self.drain_inproc(link, false),
            Task::InprocResume(link) => self.drain_inproc(link, true),
            Task::InprocKick(link, error) => self.end_inproc(link, Some(error), false),
        }
    }

    /// Takes a new inproc link's end, unless the socket closed or let go of
    /// the endpoint since the link was made.
    fn attach_inproc(&mut self, half: Box<Half>) {
        let closing = self.sockets.get(&half.core.id).is_some_and(|e| e.closing);
        let listed = {
            let st = half.core.lock();
            let list = match half.side {
                Side::Bound => &st.bound,
                Side::Connected => &st.connected,
            };
            !st.closing && list.contains(&half.endpoint)
        };
        let link = half.link;
        half.attach();
        self.inproc.insert(link, half);
        if closing || !listed {
            return self.end_inproc(link, None, false);
        }
        self.drain_inproc(link, false);
    }

    /// Takes what an inproc peer sent, after making the half read again if
    /// `resume` (the socket has room for its messages).
    fn drain_inproc(&mut self, link: LinkId, resume: bool) {
        if let Some(half) = self.inproc.get_mut(&link) {
            let drained = if resume { half.resume() } else { half.drain() };
            self.after_drain(link, drained);
        }
    }

    fn after_drain(&mut self, link: LinkId, drained: Drained) {
        match drained {
            Drained::Waiting | Drained::Paused => {}
            Drained::More => self.handle.submit(Task::InprocDrain(link)),
            Drained::Ended => self.end_inproc(link, None, true),
            Drained::Failed(error) => self.end_inproc(link, Some(error), false),
        }
    }

    /// Ends this socket's end of an inproc link: the peer leaves the socket
    /// (after the application read what it sent), and a connecting socket
    /// whose peer went away links again when it can.
    fn end_inproc(&mut self, link: LinkId, error: Option<Error>, peer_left: bool) {
        let Some(half) = self.inproc.remove(&link) else {
            return;
        };
        half.close();
        let core = half.core.clone();
        core.remove_peer(half.peer_id);
        core.emit(SocketEvent::Disconnected {
            link: half.endpoint.clone(),
            error,
        });
        if peer_left && half.side == Side::Connected {
            if let Some(name) = half.endpoint.strip_prefix("inproc://") {
                inproc::relink(&core, name, &half.peer);
            }
        }
    }

    /// Ends the inproc links `which` picks.
    fn end_inproc_where(&mut self, which: impl Fn(&Half) -> bool) {
        let links: Vec<LinkId> = self
            .inproc
            .values()
            .filter(|h| which(h))
            .map(|h| h.link)
            .collect();
        for link in links {
            self.end_inproc(link, None, false);
        }
    }

    fn on_timer(&mut self, timer: Timer, now: Instant) {
        match timer {
            Timer::TailFlush {
                conn: (token, serial),
                appended,
                batches,
                wait_us,
            } => {
                let id = ConnId { token, serial };
                // Taken off the count, and put back if it waits again.
                self.tail_timers -= 1;
                let Some(conn) = self.conn_mut(id) else {
                    return;
                };
                if conn.want_write {
                    return; // writability drives it now
                }
                let (empty, now_appended, now_batches) = {
                    let st = conn.out.lock();
                    (st.is_empty(), st.appended(), st.batches())
                };
                let wait = Duration::from_micros(wait_us.into());
                let next = if now_batches != batches {
                    // The sender wrote a whole batch since: it streams, and
                    // what is queued is the start of its next batch. Look
                    // again after the longest wait, with the queue still
                    // counted as watched so that the sender's next appends
                    // call no one: woken at each batch and at each doubling
                    // of the wait, the I/O thread cost a stream sharing its
                    // core 38,000 context switches a second (CURVE, 64 B).
                    Some(TAIL_WAIT_MAX)
                } else if !empty && now_appended != appended && wait < TAIL_WAIT_MAX {
                    // Still growing: look again later, less often.
                    Some((wait * 2).min(TAIL_WAIT_MAX))
                } else {
                    None
                };
                let Some(wait) = next else {
                    self.flush(token);
                    return;
                };
                self.tail_timers += 1;
                self.timers.add(
                    now + wait,
                    Timer::TailFlush {
                        conn: (token, serial),
                        appended: now_appended,
                        batches: now_batches,
                        wait_us: wait.as_micros() as u32,
                    },
                );
            }
            Timer::Tails { queued, wait_us } => self.look_at_tails(queued, wait_us, now),
            Timer::Fanout {
                socket,
                seen,
                wait_us,
            } => {
                let Some(entry) = self.sockets.get(&socket) else {
                    return;
                };
                let wait = Duration::from_micros(wait_us.into());
                let look = entry.core.look_at_fanout_tail(seen, wait >= TAIL_WAIT_MAX);
                if let TailLook::Again(seen) = look {
                    // The sender is at work: look again later, less often,
                    // as for a queue's tail; a new batch starts from the
                    // shortest wait.
                    let wait = if seen.fresh {
                        TAIL_WAIT
                    } else {
                        (wait * 2).min(TAIL_WAIT_MAX)
                    };
                    self.timers.add(
                        now + wait,
                        Timer::Fanout {
                            socket,
                            seen,
                            wait_us: wait.as_micros() as u32,
                        },
                    );
                }
            }
            Timer::Handshake((token, serial)) => {
                let id = ConnId { token, serial };
                let Some(conn) = self.conn_mut(id) else {
                    return;
                };
                if matches!(conn.phase, Phase::Active { .. }) {
                    return;
                }
                let timeout = conn.core.options.channel.handshake_timeout;
                self.end(
                    token,
                    Ended {
                        error: Some(Error::HandshakeTimeout(timeout)),
                    },
                    now,
                );
            }
            Timer::Heartbeat((token, serial)) => {
                let id = ConnId { token, serial };
                let Some(conn) = self.conn_mut(id) else {
                    return;
                };
                match conn.on_heartbeat(now) {
                    Ok(()) => {
                        if let Some(at) = conn.heartbeat.poll_timeout() {
                            self.timers.add(at, Timer::Heartbeat((token, serial)));
                        }
                    }
                    Err(ended) => self.end(token, ended, now),
                }
            }
            Timer::Reconnect(id, serial) => {
                if self
                    .connectors
                    .get(id)
                    .is_some_and(|c| c.serial == serial && c.conn.is_none())
                {
                    self.connect(id, now);
                }
            }
            Timer::Accept(token, serial) => {
                if let Some(Source::Listener(l)) = self.sources.get_mut(token) {
                    if l.serial == serial {
                        l.blocked = false;
                        self.accept(token, now);
                    }
                }
            }
        }
    }

    /// Accepts every waiting connection on a listener.
    fn accept(&mut self, token: usize, now: Instant) {
        loop {
            let Some(Source::Listener(l)) = self.sources.get_mut(token) else {
                return;
            };
            if l.blocked {
                return;
            }
            match l.listen.accept() {
                Ok((stream, from)) => {
                    let core = l.core.clone();
                    let link = format!("{} from {from}", l.endpoint);
                    core.emit(SocketEvent::Connected { link: link.clone() });
                    self.add_conn(core, stream, link, Origin::Accepted(token), false, now);
                }
                Err(e) => {
                    let io = e.io_error();
                    if io.is_some_and(|io| io.kind() == io::ErrorKind::WouldBlock) {
                        return;
                    }
                    let out_of_fds = io
                        .and_then(|io| io.raw_os_error())
                        .is_some_and(|c| c == libc::EMFILE || c == libc::ENFILE);
                    if out_of_fds {
                        // Say so once, keep serving the peers we have, and try
                        // again when a descriptor frees up (or a little later).
                        l.blocked = true;
                        let (core, endpoint, serial) =
                            (l.core.clone(), l.endpoint.clone(), l.serial);
                        if !self.blocked_listeners.contains(&token) {
                            self.blocked_listeners.push(token);
                            core.emit(SocketEvent::AcceptFailed { endpoint, error: e });
                        }
                        self.timers
                            .add(now + ACCEPT_RETRY, Timer::Accept(token, serial));
                        return;
                    }
                    // A connection that went away before we took it, say: the
                    // next one is unaffected.
                    let core = l.core.clone();
                    core.emit(SocketEvent::AcceptFailed {
                        endpoint: l.endpoint.clone(),
                        error: e,
                    });
                }
            }
        }
    }

    /// Descriptors freed up: listeners that ran out try again.
    fn retry_blocked_listeners(&mut self, now: Instant) {
        for token in std::mem::take(&mut self.blocked_listeners) {
            if let Some(Source::Listener(l)) = self.sources.get_mut(token) {
                l.blocked = false;
                self.accept(token, now);
            }
        }
    }

    /// Registers a new connection and starts its handshake (or waits for its
    /// connect to finish).
    fn add_conn(
        &mut self,
        core: Arc<Core>,
        stream: SocketStream,
        link: String,
        origin: Origin,
        connecting: bool,
        now: Instant,
    ) -> Option<usize> {
        let options = &core.options.channel;
        if let Err(error) =
            stream.set_buffer_sizes(options.send_buffer_size, options.recv_buffer_size)
        {
            core.emit(SocketEvent::HandshakeFailed { link, error });
            return None;
        }
        let serial = self.serial();
        let entry = self.sources.vacant_entry();
        let token = entry.key();
        let id = ConnId { token, serial };
        let interest = if connecting {
            Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&stream.as_fd().as_raw_fd()),
            Token(token),
            interest,
        ) {
            core.emit(SocketEvent::HandshakeFailed {
                link,
                error: Error::io("cannot watch the connection", e),
            });
            return None;
        }
        let stream = Arc::new(stream);
        let out = Arc::new(PeerOut::new(
            stream.clone(),
            self.handle.clone(),
            id,
            core.options.channel.sndhwm,
        ));
        let timeout = core.options.channel.handshake_timeout;
        let mut conn = Conn::new(id, core.clone(), stream, link, origin, out, now);
        if !connecting {
            conn.start_handshake();
        }
        entry.insert(Source::Conn(Box::new(conn)));
        self.entry(&core).conns.insert(token);
        self.timers
            .add(now + timeout, Timer::Handshake(Timer::conn(id)));
        if !connecting {
            // What arrived with the connection makes no new edge.
            self.read(token, now);
        }
        Some(token)
    }

    /// Starts (or restarts) connector `id`'s connection.
    fn connect(&mut self, id: usize, now: Instant) {
        let Some(c) = self.connectors.get(id) else {
            return;
        };
        let (core, endpoint) = (c.core.clone(), c.endpoint.clone());
        match connect::start(&endpoint) {
            Ok(connecting) => {
                let done = connecting.done;
                let link = endpoint.to_string();
                let token = self.add_conn(
                    core,
                    connecting.stream,
                    link,
                    Origin::Connected(id),
                    true,
                    now,
                );
                if let Some(c) = self.connectors.get_mut(id) {
                    c.conn = token;
                }
                match token {
                    Some(token) if done => self.finish_connect(token, now),
                    Some(_) => {}
                    None => self.retry(id, None, now),
                }
            }
            Err(e) => self.retry(id, Some(e), now),
        }
    }

    /// Schedules connector `id`'s next attempt, doubling its delay.
    fn retry(&mut self, id: usize, error: Option<Error>, now: Instant) {
        let Some(c) = self.connectors.get_mut(id) else {
            return;
        };
        c.conn = None;
        let delay = c.delay;
        let max = c
            .core
            .options
            .reconnect_ivl_max
            .max(c.core.options.reconnect_ivl);
        c.delay = (delay * 2).min(max);
        c.core.emit(SocketEvent::Retrying {
            endpoint: c.endpoint.to_string(),
            delay,
            error,
        });
        self.timers.add(now + delay, Timer::Reconnect(id, c.serial));
    }

    fn finish_connect(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conn_at(token) else {
            return;
        };
        let Origin::Connected(cid) = conn.origin else {
            return;
        };
        let endpoint = match self.connectors.get(cid) {
            Some(c) => c.endpoint.clone(),
            None => return self.end(token, Ended { error: None }, now),
        };
        let conn = self.conn_at(token).expect("checked above");
        if let Err(e) = connect::finish(&conn.stream, &endpoint) {
            return self.end(token, Ended { error: Some(e) }, now);
        }
        conn.core.emit(SocketEvent::Connected {
            link: conn.link.clone(),
        });
        let fd = conn.stream.as_fd().as_raw_fd();
        if let Err(e) =
            self.poll
                .registry()
                .reregister(&mut SourceFd(&fd), Token(token), Interest::READABLE)
        {
            let error = Error::io("cannot watch the connection", e);
            return self.end(token, Ended { error: Some(error) }, now);
        }
        let conn = self.conn_at(token).expect("checked above");
        conn.start_handshake();
        self.read(token, now);
    }

    /// Reads what a connection has: the handshake, then messages.
    fn read(&mut self, token: usize, now: Instant) {
        let Some(conn) = self.conn_at(token) else {
            return;
        };
        if matches!(conn.phase, Phase::Handshaking(_)) {
            match conn.read_handshake() {
                Ok(Some(info)) => {
                    if !self.activate(token, info, now) {
                        return;
                    }
                }
                Ok(None) => return,
                Err(ended) => return self.end(token, ended, now),
            }
        }
        let Some(conn) = conn_in(&mut self.sources, token) else {
            return;
        };
        match conn.read_active(now, READ_BUDGET) {
            Ok(Read::More) => self.ready.push_back(conn.id),
            Ok(Read::Drained | Read::Paused) => {}
            Err(ended) => self.end(token, ended, now),
        }
    }

    /// The handshake completed: puts the peer in service. False if it was
    /// turned away (the connection is gone).
    fn activate(&mut self, token: usize, info: conduit_proto::PeerInfo, now: Instant) -> bool {
        let conn = conn_in(&mut self.sources, token).expect("a connection");
        let core = conn.core.clone();
        core.emit(SocketEvent::Ready {
            link: conn.link.clone(),
            peer: info.socket_type,
            identity: info.identity.clone(),
            user_id: info.user_id.clone(),
        });
        match core.add_peer(info.clone(), Outlet::Stream(conn.out.clone())) {
            Ok(peer_id) => {
                conn.phase = Phase::Active {
                    peer_id,
                    info: Box::new(info),
                };
                conn.heartbeat.on_traffic(now);
                if let Some(at) = conn.heartbeat.poll_timeout() {
                    let id = conn.id;
                    self.timers.add(at, Timer::Heartbeat(Timer::conn(id)));
                }
                if let Origin::Connected(cid) = conn.origin {
                    // In service: the next reconnect starts the back-off over.
                    if let Some(c) = self.connectors.get_mut(cid) {
                        c.delay = core.options.reconnect_ivl;
                    }
                }
                true
            }
            Err(reason) => {
                core.emit(SocketEvent::Rejected {
                    link: conn.link.clone(),
                    reason: reason.clone(),
                });
                conn.phase = Phase::Connecting; // no HandshakeFailed for this one
                self.end(
                    token,
                    Ended {
                        error: Some(Error::PeerRejected(reason)),
                    },
                    now,
                );
                false
            }
        }
    }

    /// Judges a new tail with the socket's others, once the socket has
    /// [`MANY_TAILS`] tails waiting on timers of their own.
    fn add_socket_tail(&mut self, id: ConnId, now: Instant) {
        let queued = self.handle.queued();
        self.tails.push_back((id, queued));
        if !self.tails_watched {
            self.tails_watched = true;
            self.timers.add(
                now + TAIL_WAIT,
                Timer::Tails {
                    queued,
                    wait_us: TAIL_WAIT.as_micros() as u32,
                },
            );
        }
    }

    /// The socket's tails, `wait_us` after the last look, when the sender had
    /// queued `queued` messages. A sender that queued nothing since has
    /// paused: every tail is written. One that keeps queueing, to any peer,
    /// writes whole batches itself, so its tails wait, looked at less often;
    /// but none waits longer than it takes the sender to queue a batch for
    /// every tail there is, so that a peer sent little while others stream
    /// still hears soon.
    ///
    /// Why per socket: a PUB adds to each subscriber's queue once per pass
    /// over all of them, which at a thousand subscribers takes longer than
    /// any wait one queue can be given, so judged per queue every message
    /// went out in a write of its own. Why only with many tails: judged per
    /// socket, a single streaming peer's tail lost a quarter of a two-core
    /// 64 B stream (BENCHMARKS.md, "Fan-out: tails per socket, tried and
    /// reverted").
    fn look_at_tails(&mut self, queued: u64, wait_us: u32, now: Instant) {
        let now_queued = self.handle.queued();
        if now_queued == queued {
            self.tails_watched = false;
            while let Some((id, _)) = self.tails.pop_front() {
                self.flush_tail(id);
            }
            return;
        }
        let allowance = (BATCH_MSGS as u64).saturating_mul(self.tails.len() as u64);
        while let Some(&(id, since)) = self.tails.front() {
            if now_queued.wrapping_sub(since) < allowance {
                break;
            }
            self.tails.pop_front();
            self.flush_tail(id);
        }
        if self.tails.is_empty() {
            self.tails_watched = false;
            return;
        }
        let wait = (Duration::from_micros(wait_us.into()) * 2).min(TAIL_WAIT_MAX);
        self.timers.add(
            now + wait,
            Timer::Tails {
                queued: now_queued,
                wait_us: wait.as_micros() as u32,
            },
        );
    }

    /// Writes a tail, unless its connection is gone or waits for writability
    /// (which then writes it).
    fn flush_tail(&mut self, id: ConnId) {
        if self.conn_mut(id).is_some_and(|c| !c.want_write) {
            self.flush(id.token);
        }
    }

    /// Writes what is queued for a connection, watching for writability while
    /// the kernel is full.
    fn flush(&mut self, token: usize) {
        let Some(conn) = conn_in(&mut self.sources, token) else {
            return;
        };
        let (flushed, room) = {
            let mut st = conn.out.lock();
            let flushed = conn.out.flush_locked(&mut st);
            st.set_io_pending(flushed == Flushed::Blocked);
            let room = st.below_hwm(conn.out.hwm());
            (flushed, st.take_room_freed(room))
        };
        if room {
            conn.core.room_freed();
        }
        let fd = conn.stream.as_fd().as_raw_fd();
        match flushed {
            Flushed::Blocked if !conn.want_write => {
                conn.want_write = true;
                let _ = self.poll.registry().reregister(
                    &mut SourceFd(&fd),
                    Token(token),
                    Interest::READABLE | Interest::WRITABLE,
                );
            }
            Flushed::Blocked => {}
            Flushed::Empty => {
                if conn.want_write {
                    conn.want_write = false;
                    let _ = self.poll.registry().reregister(
                        &mut SourceFd(&fd),
                        Token(token),
                        Interest::READABLE,
                    );
                }
                if conn.closing {
                    self.goodbye(token, Goodbye::SocketClose, Instant::now());
                }
            }
            Flushed::Broken => {
                let error = Some(Error::Disconnected);
                self.end(token, Ended { error }, Instant::now());
            }
        }
    }

    fn resume(&mut self, id: ConnId, now: Instant) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if !conn.paused {
            return;
        }
        conn.paused = false;
        match conn.deliver_held() {
            Ok(true) => self.read(id.token, now),
            Ok(false) => {}
            Err(ended) => self.end(id.token, ended, now),
        }
    }

    /// Takes a connection out of the slab and the poll.
    fn remove(&mut self, token: usize) -> Option<Box<Conn>> {
        let Some(Source::Conn(_)) = self.sources.get(token) else {
            return None;
        };
        let Some(Source::Conn(conn)) = self.sources.try_remove(token) else {
            return None;
        };
        let fd = conn.stream.as_fd().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if let Some(entry) = self.sockets.get_mut(&conn.core.id) {
            entry.conns.remove(&token);
        }
        Some(conn)
    }

    /// A connection ended: takes the peer out of service, reports it, and
    /// reconnects if it was ours to make.
    fn end(&mut self, token: usize, ended: Ended, now: Instant) {
        let Some(conn) = self.remove(token) else {
            return;
        };
        let core = conn.core.clone();
        let closing = self.sockets.get(&core.id).is_some_and(|e| e.closing);
        conn.out
            .set_broken(ended.error.clone().unwrap_or(Error::Disconnected));
        match &conn.phase {
            Phase::Active { peer_id, .. } => {
                core.remove_peer(*peer_id);
                core.emit(SocketEvent::Disconnected {
                    link: conn.link.clone(),
                    error: ended.error.clone(),
                });
            }
            Phase::Handshaking(_) if !closing => core.emit(SocketEvent::HandshakeFailed {
                link: conn.link.clone(),
                error: ended.error.clone().unwrap_or(Error::ClosedDuringHandshake),
            }),
            _ => {}
        }
        let connector = match conn.origin {
            Origin::Connected(cid) if !closing => Some(cid),
            _ => None,
        };
        drop(conn);
        self.after_close(&core, now);
        if let Some(cid) = connector {
            // Unless `disconnect` removed it meanwhile.
            if self
                .connectors
                .get(cid)
                .is_some_and(|c| c.conn == Some(token))
            {
                self.retry(cid, ended.error, now);
            }
        }
    }

    /// A descriptor was freed and a socket may have finished closing.
    fn after_close(&mut self, core: &Arc<Core>, now: Instant) {
        if !self.blocked_listeners.is_empty() {
            self.retry_blocked_listeners(now);
        }
        let done = self
            .sockets
            .get(&core.id)
            .is_some_and(|e| e.closing && e.conns.is_empty());
        if done {
            let entry = self.sockets.remove(&core.id).expect("checked");
            entry.core.io_closed(entry.lingering);
        }
    }

    /// Closes a connection whose queue is written: half-close, so the peer
    /// reads the end after the last message.
    fn goodbye(&mut self, token: usize, how: Goodbye, now: Instant) {
        let Some(mut conn) = self.remove(token) else {
            return;
        };
        let core = conn.core.clone();
        let owed = {
            let st = conn.out.lock();
            st.sent_any() && !st.is_broken()
        };
        let _ = crate::transport::Transport::shutdown_write(&*conn.stream);
        conn.discard_input();
        if let Some(peer_id) = conn.peer_id() {
            core.remove_peer(peer_id);
            core.emit(SocketEvent::Disconnected {
                link: conn.link.clone(),
                error: None,
            });
        }
        if how == Goodbye::SocketClose && owed && conn.peer_id().is_some() {
            let until_read = !conn.peer_is_conduit();
            if let Some(entry) = self.sockets.get_mut(&core.id) {
                entry.lingering.push((conn.stream.clone(), until_read));
            }
        }
        conn.out.set_broken(Error::SocketClosed);
        drop(conn);
        self.after_close(&core, now);
    }

    /// Closes a connection gracefully: now if nothing is queued, else once it
    /// is written.
    fn close_conn(&mut self, token: usize, how: Goodbye, now: Instant) {
        let Some(conn) = self.conn_at(token) else {
            return;
        };
        if conn.peer_id().is_none() {
            let error = Some(Error::SocketClosed);
            return self.end(token, Ended { error }, now);
        }
        conn.closing = true;
        let empty = conn.out.lock().is_empty();
        if empty {
            self.goodbye(token, how, now);
        } else if how == Goodbye::Quiet {
            // Nobody waits for it: write what we can, then close.
            self.flush(token);
            self.goodbye(token, how, now);
        } else {
            self.flush(token);
        }
    }

    fn close(&mut self, core: &Arc<Core>, now: Instant) {
        let entry = self.entry(core);
        entry.closing = true;
        let listeners = std::mem::take(&mut entry.listeners);
        let connectors = std::mem::take(&mut entry.connectors);
        let conns: Vec<usize> = entry.conns.iter().copied().collect();
        for token in listeners {
            self.remove_listener(token);
        }
        for id in connectors {
            self.connectors.try_remove(id);
        }
        for token in conns {
            self.close_conn(token, Goodbye::SocketClose, now);
        }
        inproc::forget(core);
        self.end_inproc_where(|_| true);
        self.after_close(core, now);
    }

    fn abort(&mut self, core: &Arc<Core>, now: Instant) {
        let conns: Vec<usize> = match self.sockets.get(&core.id) {
            Some(entry) => entry.conns.iter().copied().collect(),
            None => return,
        };
        for token in conns {
            if let Some(conn) = self.remove(token) {
                conn.stream.shutdown_both();
                conn.out.set_broken(Error::SocketClosed);
                if let Some(peer_id) = conn.peer_id() {
                    conn.core.remove_peer(peer_id);
                }
            }
        }
        self.after_close(core, now);
    }

    fn remove_listener(&mut self, token: usize) {
        if let Some(Source::Listener(l)) = self.sources.get(token) {
            let fd = l.listen.as_fd().as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            // Dropping it closes it, and removes an ipc socket file.
            self.sources.remove(token);
            self.blocked_listeners.retain(|&t| t != token);
        }
    }

    fn unbind(&mut self, core: &Arc<Core>, endpoint: &str) {
        if endpoint.starts_with("inproc://") {
            return self.end_inproc_where(|h| h.side == Side::Bound && h.endpoint == endpoint);
        }
        let Some(entry) = self.sockets.get_mut(&core.id) else {
            return;
        };
        let mut found = Vec::new();
        entry.listeners.retain(|&token| {
            let hit = matches!(self.sources.get(token),
                Some(Source::Listener(l)) if l.endpoint == endpoint);
            if hit {
                found.push(token);
            }
            !hit
        });
        let conns: Vec<usize> = entry
            .conns
            .iter()
            .copied()
            .filter(|&t| {
                matches!(self.sources.get(t),
                    Some(Source::Conn(c)) if matches!(c.origin, Origin::Accepted(l) if found.contains(&l)))
            })
            .collect();
        for token in found {
            self.remove_listener(token);
        }
        let now = Instant::now();
        for token in conns {
            self.close_conn(token, Goodbye::Quiet, now);
        }
    }

    fn disconnect(&mut self, core: &Arc<Core>, endpoint: &str) {
        if endpoint.starts_with("inproc://") {
            return self.end_inproc_where(|h| h.side == Side::Connected && h.endpoint == endpoint);
        }
        let Some(entry) = self.sockets.get_mut(&core.id) else {
            return;
        };
        let mut conns = Vec::new();
        let connectors = &mut self.connectors;
        entry.connectors.retain(|&id| {
            let hit = connectors
                .get(id)
                .is_some_and(|c| c.endpoint.to_string() == endpoint);
            if hit {
                if let Some(c) = connectors.try_remove(id) {
                    conns.extend(c.conn);
                }
            }
            !hit
        });
        let now = Instant::now();
        for token in conns {
            self.close_conn(token, Goodbye::Quiet, now);
        }
    }
}

fn conn_in(sources: &mut Slab<Source>, token: usize) -> Option<&mut Conn> {
    match sources.get_mut(token) {
        Some(Source::Conn(c)) => Some(c),
        _ => None,
    }
}
