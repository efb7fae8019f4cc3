//! ZeroMQ socket patterns: many peers, reconnection, high-water marks.

pub(crate) mod core;
pub(crate) mod events;
pub(crate) mod fanout;
mod options;
mod routing;

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conduit_proto::{HeartbeatConfig, Message, PeerInfo, SocketType, SubscriptionLimits};

use self::core::Core;
pub use self::events::SocketEvent;
use self::options::SocketOptions;
use crate::endpoint::{Endpoint, ToEndpoint};
use crate::engine::Task;
use crate::error::{
    Error, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::reader::RecvFail;
use crate::transport::Listen;
use crate::transport::Wait;
use crate::writer::SendFail;

/// A ZeroMQ socket of one of the standard types, talking to any number of peers
/// over any number of bound and connected endpoints.
///
/// | type | sends | receives |
/// |---|---|---|
/// | PAIR | to its one peer | from its one peer |
/// | PUSH / PULL | round-robin / — | — / fair-queued |
/// | REQ | a request (round-robin), then must receive | the reply, then may send |
/// | REP | the reply to the last request | requests, fair-queued |
/// | DEALER | round-robin | fair-queued |
/// | ROUTER | to the peer named by the first frame | fair-queued, first frame naming the peer |
/// | PUB / XPUB | to every matching subscriber | — / subscriptions |
/// | SUB / XSUB | — / subscriptions and messages upstream | what it subscribed to |
///
/// Behaviour follows libzmq's: connecting may come before binding, and a
/// connecting socket reconnects (after 100 ms, doubling up to 1 s) when its peer
/// goes away; each peer has a send and a receive high-water mark of 1000
/// messages, beyond which PUSH, DEALER, REQ and PAIR wait and PUB drops;
/// subscriptions are filtered at the publisher and sent again to a publisher
/// that reconnects. One difference: messages are only queued for peers that are
/// connected, as with libzmq's `ZMQ_IMMEDIATE`, so a dead endpoint never holds
/// messages back.
///
/// Every method takes `&self`, and a socket may be shared between threads, by
/// reference or by cloning it: clones are handles to the same socket. Closing
/// it ([`close`](Self::close), or dropping its last handle) waits (up to the
/// linger time, by default as long as it takes) for queued messages to go
/// out; a thread blocked in `recv` or `send` meanwhile returns at once with
/// [`RecvError::Closed`] or [`Error::SocketClosed`].
///
/// The socket's connections are served by the process's I/O threads (see
/// [`set_io_threads`](crate::set_io_threads)), not by threads of its own.
///
/// ```
/// use conduit::{Socket, SocketType};
///
/// let pull = Socket::new(SocketType::Pull)?;
/// let endpoint = pull.bind("tcp://127.0.0.1:*")?;
/// let push = Socket::new(SocketType::Push)?;
/// push.connect(&endpoint)?;
/// push.send("work")?;
/// assert_eq!(pull.recv()?.concat(), "work");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Socket {
    inner: Arc<Inner>,
}

/// The socket itself; closed when the last handle goes.
#[derive(Debug)]
struct Inner {
    core: Arc<Core>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = shutdown(&self.core);
    }
}

/// Configures a [`Socket`] before it is made.
#[derive(Debug, Clone)]
pub struct SocketBuilder {
    kind: SocketType,
    options: SocketOptions,
}

crate::options::connection_options!(SocketBuilder);

impl SocketBuilder {
    /// Sets the receive high-water mark: messages held per peer before the socket
    /// stops reading from it (default 1000).
    pub fn recv_hwm(mut self, messages: usize) -> Self {
        self.options.rcvhwm = messages.max(1);
        self
    }

    /// First wait before reconnecting (default 100 ms) and the most it grows to
    /// as it doubles (default 1 s).
    pub fn reconnect(mut self, first: Duration, max: Duration) -> Self {
        self.options.reconnect_ivl = first;
        self.options.reconnect_ivl_max = max;
        self
    }

    /// Pings a peer silent for `interval`, and drops it if still silent `timeout`
    /// later; `ttl` asks peers to drop us after that long without hearing from
    /// us (libzmq's `ZMQ_HEARTBEAT_IVL`, `_TIMEOUT`, `_TTL`). Off by default.
    pub fn heartbeat(mut self, interval: Duration, timeout: Duration, ttl: Duration) -> Self {
        self.options.heartbeat = HeartbeatConfig {
            interval,
            timeout,
            ttl,
        };
        self
    }

    /// ROUTER: fail sends to unknown routing ids with [`Error::Unroutable`], and
    /// wait (rather than drop) when the peer is at its high-water mark.
    pub fn router_mandatory(mut self, on: bool) -> Self {
        self.options.router_mandatory = on;
        self
    }

    /// ROUTER: a new peer announcing an identity already in use takes it over;
    /// by default it is turned away.
    pub fn router_handover(mut self, on: bool) -> Self {
        self.options.router_handover = on;
        self
    }

    /// REQ: allow sending a new request before the reply to the last one came,
    /// abandoning it. The way out of a lost reply (libzmq's `ZMQ_REQ_RELAXED`);
    /// use it with [`req_correlate`](Self::req_correlate).
    pub fn req_relaxed(mut self, on: bool) -> Self {
        self.options.req_relaxed = on;
        self
    }

    /// REQ: number requests and accept only the reply to the latest
    /// (`ZMQ_REQ_CORRELATE`). The peer must be a REP or echo the envelope.
    pub fn req_correlate(mut self, on: bool) -> Self {
        self.options.req_correlate = on;
        self
    }

    /// XPUB: hand every subscription and cancellation to the application, not
    /// only a topic's first and last (`ZMQ_XPUB_VERBOSER`).
    pub fn xpub_verbose(mut self, on: bool) -> Self {
        self.options.xpub_verbose = on;
        self
    }

    /// PUB and XPUB: the most one subscriber may subscribe to, in distinct
    /// topics and in bytes of them summed (defaults
    /// [`DEFAULT_MAX_SUBSCRIPTIONS`](crate::DEFAULT_MAX_SUBSCRIPTIONS), 65,536,
    /// and [`DEFAULT_MAX_SUBSCRIPTION_BYTES`](crate::DEFAULT_MAX_SUBSCRIPTION_BYTES),
    /// 4 MiB). The socket keeps every subscriber's topics, so without a bound
    /// one subscribing to new topics without end would fill its memory. A
    /// subscriber going over either is dropped, with a
    /// [`ProtocolError::TooManySubscriptions`](crate::ProtocolError::TooManySubscriptions)
    /// in the [`SocketEvent`] and in an ERROR to the peer. Subscribing again to
    /// a topic held costs nothing and is not limited.
    pub fn max_subscriptions(mut self, topics: usize, bytes: usize) -> Self {
        self.options.subscription_limits = SubscriptionLimits { topics, bytes };
        self
    }

    /// How many connections a bound endpoint lets wait to be accepted
    /// (`ZMQ_BACKLOG`; default [`DEFAULT_BACKLOG`](crate::DEFAULT_BACKLOG), 4096,
    /// capped by the kernel's `net.core.somaxconn`).
    pub fn backlog(mut self, connections: u32) -> Self {
        self.options.backlog = connections;
        self
    }

    /// Busy-polls for up to `spin` before a `recv` (or a `send` at the
    /// high-water mark) goes to sleep: the waiting thread keeps looking at
    /// the socket's connections, handing the CPU to any other runnable
    /// thread between looks, and so answers a peer on another core without
    /// the wake-up a sleeping thread costs (tens of µs on a VM). Off by
    /// default: it spends CPU while it waits. A peer on the same core is not
    /// kept waiting by it, as each look yields the core first. Typical: 20 to
    /// 100 µs, the gap expected between a request and its answer.
    pub fn busy_poll(mut self, spin: Duration) -> Self {
        self.options.busy_poll = spin;
        self
    }

    /// Calls `f` for every connection event (see [`SocketEvent`]), from the
    /// I/O thread: keep it quick, and do not call the socket from it.
    pub fn on_event(mut self, f: impl Fn(&SocketEvent) + Send + Sync + 'static) -> Self {
        self.options.monitor = Some(Arc::new(f));
        self
    }

    /// The options the shared setters (`options.rs`, `connection_options!`)
    /// write.
    fn options_mut(&mut self) -> &mut crate::options::Options {
        &mut self.options.channel
    }

    /// Security options: see the methods in `security.rs`.
    pub(crate) fn security_mut(&mut self) -> &mut conduit_proto::Security {
        std::sync::Arc::make_mut(&mut self.options.channel.security)
    }

    /// Makes the socket.
    pub fn build(self) -> Result<Socket, Error> {
        let core = Core::new(self.kind, self.options)?;
        Ok(Socket {
            inner: Arc::new(Inner { core }),
        })
    }
}

impl Socket {
    /// A socket of type `kind` with the default options.
    pub fn new(kind: SocketType) -> Result<Socket, Error> {
        Socket::builder(kind).build()
    }

    /// A builder for a socket of type `kind` with other options.
    pub fn builder(kind: SocketType) -> SocketBuilder {
        SocketBuilder {
            kind,
            options: SocketOptions::new(kind),
        }
    }

    fn core(&self) -> &Core {
        &self.inner.core
    }

    /// The socket's type.
    pub fn socket_type(&self) -> SocketType {
        self.core().kind
    }

    /// Binds `endpoint` and accepts peers on it from now on. Returns the bound
    /// endpoint, with the port the OS picked for `tcp://host:*` or `:0`.
    pub fn bind(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<Endpoint, Error> {
        let endpoint = endpoint.to_endpoint()?;
        let core = &self.inner.core;
        if core.lock().closing {
            return Err(Error::SocketClosed);
        }
        if let Endpoint::Inproc(name) = &endpoint {
            // Listed first: the sockets waiting for the name link at once.
            core.lock().bound.push(endpoint.to_string());
            if let Err(e) = crate::engine::inproc::bind(core, name) {
                unlist(&mut core.lock().bound, &endpoint);
                return Err(e);
            }
            core.emit(SocketEvent::Listening {
                endpoint: endpoint.to_string(),
            });
            return Ok(endpoint);
        }
        let listen = Listen::bind(
            &endpoint,
            core.options.channel.ipc_mode,
            core.options.backlog,
        )?;
        listen
            .set_nonblocking()
            .map_err(|e| Error::io(format!("cannot use {endpoint}"), e))?;
        let bound = listen.endpoint().clone();
        core.lock().bound.push(bound.to_string());
        core.emit(SocketEvent::Listening {
            endpoint: bound.to_string(),
        });
        core.doorbell.submit(Task::Bind {
            core: core.clone(),
            listen,
        });
        Ok(bound)
    }

    /// Connects to `endpoint` in the background, and reconnects whenever the
    /// connection ends. Returns at once: the peer may not be up yet.
    pub fn connect(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<(), Error> {
        let endpoint = endpoint.to_endpoint()?;
        let core = &self.inner.core;
        {
            let mut st = core.lock();
            if st.closing {
                return Err(Error::SocketClosed);
            }
            st.connected.push(endpoint.to_string());
        }
        if let Endpoint::Inproc(name) = &endpoint {
            return crate::engine::inproc::connect(core, name)
                .inspect_err(|_| unlist(&mut core.lock().connected, &endpoint));
        }
        core.doorbell.submit(Task::Connect {
            core: core.clone(),
            endpoint,
        });
        Ok(())
    }

    /// Stops accepting on `endpoint` (as [`bind`](Self::bind) returned it) and
    /// closes the connections accepted there, after writing what is queued
    /// for them (like `zmq_unbind`). An `ipc://` socket file is removed.
    pub fn unbind(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<(), Error> {
        self.forget(
            endpoint,
            |st| &mut st.bound,
            |core, endpoint| Task::Unbind { core, endpoint },
        )
    }

    /// Stops connecting to `endpoint` (as given to [`connect`](Self::connect))
    /// and closes the connection made to it, after writing what is queued for
    /// it (like `zmq_disconnect`).
    pub fn disconnect(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<(), Error> {
        self.forget(
            endpoint,
            |st| &mut st.connected,
            |core, endpoint| Task::Disconnect { core, endpoint },
        )
    }

    /// Takes `endpoint` off the list `which` picks and hands the reactor the
    /// task that closes what it made; not on the list is [`Error::NotFound`].
    fn forget(
        &self,
        endpoint: &(impl ToEndpoint + ?Sized),
        which: impl FnOnce(&mut core::State) -> &mut Vec<String>,
        task: impl FnOnce(Arc<Core>, String) -> Task,
    ) -> Result<(), Error> {
        let endpoint = endpoint.to_endpoint()?;
        let core = &self.inner.core;
        let text = endpoint.to_string();
        {
            let mut st = core.lock();
            let list = which(&mut st);
            let Some(i) = list.iter().position(|e| *e == text) else {
                return Err(Error::NotFound(text));
            };
            list.remove(i);
        }
        if let Endpoint::Inproc(name) = &endpoint {
            // Before the links end: the name is free for another socket, and
            // a bind links this one no more, as soon as this returns.
            crate::engine::inproc::forget_name(core, name);
        }
        core.doorbell.submit(task(core.clone(), text));
        Ok(())
    }

    /// How many peers are in service (connected, handshake done).
    pub fn peer_count(&self) -> usize {
        Core::live_peers(&self.core().lock()).count()
    }

    /// Sends a message as the socket type does, waiting while the peers that
    /// would take it are at their high-water mark (or there are none yet).
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        routing::send(self.core(), message.into(), Wait::Forever).map_err(SendFail::into_send)
    }

    /// Sends a message only if that needs no waiting.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        routing::send(self.core(), message.into(), Wait::Never).map_err(SendFail::into_try)
    }

    /// Sends a message, waiting at most `timeout`.
    pub fn send_timeout(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        routing::send(self.core(), message.into(), Wait::timeout(timeout))
            .map_err(SendFail::into_timeout)
    }

    /// Receives the next message as the socket type does, waiting for one.
    /// [`RecvError::Closed`] means this socket was closed meanwhile.
    pub fn recv(&self) -> Result<Message, RecvError> {
        routing::recv(self.core(), Wait::Forever).map_err(RecvFail::into_recv)
    }

    /// As [`recv`](Self::recv), with what the peer the message came from said
    /// in its handshake: its socket type, identity, properties, and the user
    /// id the authenticator gave it (PLAIN's user name, a CURVE key's name;
    /// libzmq's `User-Id` message property). `None` for what the socket
    /// itself makes (an XPUB's subscriptions).
    ///
    /// ```
    /// use conduit::{Socket, SocketType};
    ///
    /// let pull = Socket::new(SocketType::Pull)?;
    /// let endpoint = pull.bind("tcp://127.0.0.1:*")?;
    /// let push = Socket::new(SocketType::Push)?;
    /// push.connect(&endpoint.to_string())?;
    /// push.send("work")?;
    /// let (msg, peer) = pull.recv_with_peer()?;
    /// assert_eq!(peer.unwrap().socket_type, SocketType::Push);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_with_peer(&self) -> Result<(Message, Option<PeerInfo>), RecvError> {
        let mut info = None;
        let msg = routing::recv_with(self.core(), Wait::Forever, Some(&mut info))
            .map_err(RecvFail::into_recv)?;
        Ok((msg, info))
    }

    /// Receives a message only if one is there already.
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        routing::recv(self.core(), Wait::Never).map_err(RecvFail::into_try)
    }

    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        routing::recv(self.core(), Wait::timeout(timeout)).map_err(RecvFail::into_timeout)
    }

    /// SUB: receive messages whose first frame starts with `topic` (empty: all).
    /// Subscriptions are counted: each needs its own [`unsubscribe`](Self::unsubscribe).
    pub fn subscribe(&self, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        routing::subscribe(self.core(), topic.as_ref(), true)
    }

    /// SUB: cancels one subscription to `topic`.
    pub fn unsubscribe(&self, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        routing::subscribe(self.core(), topic.as_ref(), false)
    }

    /// Closes the socket: queued messages go out (within the linger time),
    /// then every connection and endpoint is closed. Other handles to the
    /// socket see it closed: their blocked calls return at once.
    pub fn close(self) -> Result<(), Error> {
        shutdown(&self.inner.core)
    }

    /// Whether a send would not wait: a peer has room (or the type never
    /// waits, or the send would fail at once).
    pub fn can_send(&self) -> bool {
        routing::can_send(self.core())
    }

    /// A poller waits (`true`) or stopped waiting for this socket to accept a
    /// send: while one waits, every change that may allow one signals
    /// [`send_fd`](Self::send_fd).
    pub(crate) fn watch_sends(&self, on: bool) {
        let mut st = self.core().lock();
        if on {
            st.send_watchers += 1;
            self.core().clear_send_fd();
        } else {
            st.send_watchers -= 1;
        }
    }

    /// Counts an async sender waiting (`true`) or done waiting for room,
    /// without resetting [`send_fd`](Self::send_fd): the async adapter
    /// (`async_io/socket.rs`) sees each signal as a new edge in tokio's epoll
    /// set, so it never reads the descriptor, and a reset between a signal
    /// and tokio's next look would lose that edge.
    #[cfg(feature = "tokio")]
    pub(crate) fn count_send_waiter(&self, on: bool) {
        let mut st = self.core().lock();
        if on {
            st.send_watchers += 1;
        } else {
            st.send_watchers -= 1;
        }
    }

    /// The async adapter's descriptors: receive readiness (without pinning the
    /// socket to its I/O thread) and the reactor's own, and its way to step
    /// the reactor (see `async_io`).
    #[cfg(feature = "tokio")]
    pub(crate) fn async_fds(&self) -> (BorrowedFd<'_>, BorrowedFd<'_>) {
        (self.core().async_recv_fd(), self.core().reactor_fd())
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn watch_recv(&self) -> bool {
        self.core().watch_recv()
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn unwatch_recv(&self) {
        self.core().unwatch_recv();
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn step_woken(&self) {
        self.core().step_woken();
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn step_if_owed(&self) {
        self.core().step_if_owed();
    }

    /// [`try_recv`](Self::try_recv) without its step of a leased reactor,
    /// and whether an `Empty` socket is stuck (see `routing::recv_queued`).
    #[cfg(feature = "tokio")]
    pub(crate) fn try_recv_queued(&self, stuck: &mut bool) -> Result<Message, TryRecvError> {
        routing::recv_queued(self.core(), stuck).map_err(RecvFail::into_try)
    }

    /// Readable after a change that may allow a send, while a poller watches.
    pub(crate) fn send_fd(&self) -> BorrowedFd<'_> {
        self.core().send_fd()
    }

    /// Whether a message is queued for [`try_recv`](Self::try_recv) (or the
    /// socket is closed): what makes [`as_fd`](Self::as_fd) readable.
    pub fn has_message(&self) -> bool {
        let st = self.core().lock();
        st.has_queued() || st.closing
    }
}

/// Takes the last listing of `endpoint` off `list` (a bind or connect that
/// failed after listing it).
fn unlist(list: &mut Vec<String>, endpoint: &Endpoint) {
    let endpoint = endpoint.to_string();
    if let Some(i) = list.iter().rposition(|e| *e == endpoint) {
        list.remove(i);
    }
}

/// A readiness descriptor, like libzmq's `ZMQ_FD` but level-triggered: an
/// eventfd that is readable exactly while a message is queued for the
/// application (or the socket is closed), so that a socket plugs into `poll`,
/// mio or tokio's `AsyncFd`. Never read from it or write to it; after it polls
/// readable, call `try_recv` until it says `Empty`. A REQ socket may find the
/// queued message is a stale reply it drops, so treat readability as a hint
/// that is never missed, not a promise. Kept up to date from the first call on
/// (until then the socket pays nothing for it).
impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.core().recv_fd()
    }
}

/// Closes the socket: stops accepting and connecting, writes what is queued
/// (within the linger time), waits for the peers to have it, and wakes every
/// thread blocked on the socket. Idempotent.
fn shutdown(core: &Arc<Core>) -> Result<(), Error> {
    let linger = core.options.channel.linger_wait();
    {
        let mut st = core.lock();
        if st.closing {
            return Ok(());
        }
        // What a PUB batched goes to the queues, which closing writes.
        st.fanout.hand_out();
        st.closing = true;
        core.app.notify_all();
        core.notify_app(&mut st);
    }
    core.doorbell.submit(Task::Close(core.clone()));
    let mut result = Ok(());
    let mut st = core.lock();
    let mut aborted = false;
    while !st.close.io_done {
        let wait = match linger {
            Wait::Until(deadline) if !aborted => deadline.saturating_duration_since(Instant::now()),
            _ => Duration::from_secs(3600),
        };
        if wait.is_zero() {
            aborted = true;
            result = Err(Error::io(
                "closing gave up on queued messages after the linger time",
                std::io::ErrorKind::TimedOut.into(),
            ));
            core.doorbell.submit(Task::Abort(core.clone()));
            continue;
        }
        st.app_waiting += 1;
        st = core
            .app
            .wait_timeout(st, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        st.app_waiting -= 1;
    }
    let lingering = std::mem::take(&mut st.close.lingering);
    drop(st);
    core.doorbell.close();
    for (stream, until_read) in lingering {
        stream.wait_delivered(until_read, linger);
    }
    result
}
