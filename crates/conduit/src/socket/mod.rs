//! ZeroMQ socket patterns: many peers, reconnection, high-water marks.

mod core;
mod events;
mod links;
mod options;
mod routing;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conduit_proto::{HeartbeatConfig, Message, SocketType, SubscriptionLimits};

use self::core::Core;
pub use self::events::SocketEvent;
use self::options::SocketOptions;
use crate::endpoint::Endpoint;
use crate::error::{
    Error, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::reader::RecvFail;
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
/// Every method takes `&self`, and a socket may be shared between threads.
/// Dropping a socket closes it, waiting (up to the linger time, by default as
/// long as it takes) for queued messages to go out.
///
/// ```
/// use conduit::{Socket, SocketType};
///
/// let pull = Socket::new(SocketType::Pull)?;
/// let endpoint = pull.bind("tcp://127.0.0.1:*")?;
/// let push = Socket::new(SocketType::Push)?;
/// push.connect(&endpoint.to_string())?;
/// push.send("work")?;
/// assert_eq!(pull.recv()?.concat(), "work");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Socket {
    core: Arc<Core>,
    closed: bool,
}

/// Configures a [`Socket`] before it is made.
#[derive(Debug, Clone)]
pub struct SocketBuilder {
    kind: SocketType,
    options: SocketOptions,
}

impl SocketBuilder {
    /// Sets the send high-water mark: messages queued per peer (default 1000).
    pub fn send_hwm(mut self, messages: usize) -> Self {
        self.options.channel.sndhwm = messages;
        self
    }

    /// Sets the receive high-water mark: messages held per peer before the socket
    /// stops reading from it (default 1000).
    pub fn recv_hwm(mut self, messages: usize) -> Self {
        self.options.rcvhwm = messages.max(1);
        self
    }

    /// How long closing waits for queued messages to go out (default: as long as
    /// it takes, like libzmq's linger of -1).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.options.channel.linger = Some(linger);
        self
    }

    /// The identity announced to peers; a ROUTER peer addresses us by it.
    pub fn identity(mut self, identity: impl Into<Bytes>) -> Self {
        self.options.channel.local.identity = identity.into();
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

    /// How long a new connection has to complete its handshake (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.options.channel.handshake_timeout = timeout;
        self
    }

    /// Largest message accepted from a peer (default 64 MiB); a peer that sends
    /// a larger one is disconnected.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.options.channel.max_message_size = bytes;
        self
    }

    /// Permission bits of `ipc://` socket files this socket binds (default 0o600).
    pub fn ipc_mode(mut self, mode: u32) -> Self {
        self.options.channel.ipc_mode = mode;
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

    /// Calls `f` for every connection event (see [`SocketEvent`]), from the
    /// socket's own threads: keep it quick.
    pub fn on_event(mut self, f: impl Fn(&SocketEvent) + Send + Sync + 'static) -> Self {
        self.options.monitor = Some(Arc::new(f));
        self
    }

    /// Security options: see the methods in `security.rs`.
    pub(crate) fn security_mut(&mut self) -> &mut conduit_proto::Security {
        std::sync::Arc::make_mut(&mut self.options.channel.security)
    }

    /// Makes the socket.
    pub fn build(self) -> Result<Socket, Error> {
        let core = Core::new(self.kind, self.options)
            .map_err(|e| Error::io("cannot create the socket's wake-up pipe", e))?;
        Ok(Socket {
            core,
            closed: false,
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

    /// The socket's type.
    pub fn socket_type(&self) -> SocketType {
        self.core.kind
    }

    /// Binds `endpoint` and accepts peers on it from now on. Returns the bound
    /// endpoint, with the port the OS picked for `tcp://host:*` or `:0`.
    pub fn bind(&self, endpoint: &str) -> Result<Endpoint, Error> {
        let endpoint: Endpoint = endpoint.parse()?;
        links::bind(&self.core, &endpoint)
    }

    /// Connects to `endpoint` in the background, and reconnects whenever the
    /// connection ends. Returns at once: the peer may not be up yet.
    pub fn connect(&self, endpoint: &str) -> Result<(), Error> {
        let endpoint: Endpoint = endpoint.parse()?;
        links::connect(&self.core, endpoint)
    }

    /// How many peers are in service (connected, handshake done).
    pub fn peer_count(&self) -> usize {
        Core::live_peers(&self.core.lock()).count()
    }

    /// Sends a message as the socket type does, waiting while the peers that
    /// would take it are at their high-water mark (or there are none yet).
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        routing::send(&self.core, message.into(), Wait::Forever).map_err(SendFail::into_send)
    }

    /// Sends a message only if that needs no waiting.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        routing::send(&self.core, message.into(), Wait::Never).map_err(SendFail::into_try)
    }

    /// Sends a message, waiting at most `timeout`.
    pub fn send_timeout(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        routing::send(&self.core, message.into(), Wait::timeout(timeout))
            .map_err(SendFail::into_timeout)
    }

    /// Receives the next message as the socket type does, waiting for one.
    /// [`RecvError::Closed`] means this socket was closed meanwhile.
    pub fn recv(&self) -> Result<Message, RecvError> {
        routing::recv(&self.core, Wait::Forever).map_err(RecvFail::into_recv)
    }

    /// Receives a message only if one is there already.
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        routing::recv(&self.core, Wait::Never).map_err(RecvFail::into_try)
    }

    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        routing::recv(&self.core, Wait::timeout(timeout)).map_err(RecvFail::into_timeout)
    }

    /// SUB: receive messages whose first frame starts with `topic` (empty: all).
    /// Subscriptions are counted: each needs its own [`unsubscribe`](Self::unsubscribe).
    pub fn subscribe(&self, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        routing::subscribe(&self.core, topic.as_ref(), true)
    }

    /// SUB: cancels one subscription to `topic`.
    pub fn unsubscribe(&self, topic: impl AsRef<[u8]>) -> Result<(), Error> {
        routing::subscribe(&self.core, topic.as_ref(), false)
    }

    /// Closes the socket: queued messages go out (within the linger time), then
    /// every connection and endpoint is closed and the socket's threads end.
    pub fn close(mut self) -> Result<(), Error> {
        self.closed = true;
        self.shutdown()
    }

    fn shutdown(&self) -> Result<(), Error> {
        let core = &self.core;
        let linger = core.options.channel.linger_wait();
        let (peers, handshaking) = {
            let mut st = core.lock();
            st.closing = true;
            let peers: Vec<_> = Core::live_peers(&st).map(|s| s.peer.clone()).collect();
            let handshaking: Vec<_> = st.handshaking.values().cloned().collect();
            (peers, handshaking)
        };
        core.wake_all();
        for peer in &peers {
            // A connection thread that left reading to the application reads
            // again, to see the end of its channel.
            peer.role().app = false;
            peer.role_changed.notify_all();
        }
        for channel in handshaking {
            channel.abort();
        }
        // One deadline for all: the linger bounds the whole close.
        let mut result = Ok(());
        for peer in &peers {
            if let Err(e) = peer.channel.close_within(linger) {
                result = Err(e);
            }
            peer.channel.abort();
        }
        loop {
            let threads = std::mem::take(&mut core.lock().threads);
            if threads.is_empty() {
                break;
            }
            for thread in threads {
                let _ = thread.join();
            }
        }
        result
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.shutdown();
        }
    }
}
