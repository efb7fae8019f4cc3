//! `Channel`: a two-way, one-peer, whole-message channel over a stream socket.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conduit_proto::{Command, Handshake, Message, PeerInfo, Security, SendBuffer, SocketType};

use crate::endpoint::{Endpoint, ToEndpoint};
use crate::error::{
    AcceptTimeoutError, Error, Misuse, RecvError, RecvTimeoutError, SendError, SendTimeoutError,
    TryRecvError, TrySendError,
};
use crate::options::Options;
use crate::pipe::{PipeReceiver, PipeSender};
use crate::reader::{Reader, RecvFail};
use crate::transport::socket::SocketStream;
use crate::transport::{self, Listen, Transport, Wait};
use crate::writer::{SendFail, Writer};

// Descriptors and shared memory inside messages, and handing a channel to
// another process: a child module, to reach the channel's internals.
#[path = "channel_attach.rs"]
mod attach;
pub(crate) use attach::Handover;
pub use attach::OneShotServer;

/// Configures and opens [`Channel`]s and [`Listener`]s.
///
/// ```no_run
/// use std::time::Duration;
/// use conduit::Channel;
///
/// let ch = Channel::builder()
///     .max_message_size(1 << 20)
///     .connect_timeout(Duration::from_secs(5)) // the server may not be up yet
///     .connect("ipc:///tmp/feed.sock")?;
/// # Ok::<(), conduit::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ChannelBuilder {
    options: Options,
}

crate::options::connection_options!(ChannelBuilder);

impl Default for ChannelBuilder {
    fn default() -> Self {
        let mut options = Options::new(SocketType::Pair);
        attach::announce(&mut options);
        ChannelBuilder { options }
    }
}

impl ChannelBuilder {
    /// A builder with the defaults: PAIR, 64 MiB messages, a 5 s handshake, a
    /// high-water mark of 1000 messages, and closing that waits for everything
    /// queued to go out.
    pub fn new() -> ChannelBuilder {
        ChannelBuilder::default()
    }

    /// The socket type this channel announces (default PAIR).
    ///
    /// A channel moves messages as they are; it does not add envelopes or filter.
    /// Announcing another type lets it talk to, say, a libzmq PUSH socket as a
    /// PULL. For the patterns themselves use [`Socket`](crate::Socket).
    pub fn socket_type(mut self, socket_type: SocketType) -> Self {
        self.options.local.socket_type = socket_type;
        self
    }

    /// Adds a property to our READY, for example an application `X-` property.
    pub fn property(mut self, name: &str, value: impl Into<Bytes>) -> Result<Self, Error> {
        self.options
            .local
            .properties
            .insert(name, value)
            .map_err(|e| Misuse::PropertyName(e.0))?;
        Ok(self)
    }

    /// Keep retrying a connect that is refused, or whose `ipc` path does not exist
    /// yet, for this long (default: try once).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// The options the shared setters (`options.rs`, `connection_options!`)
    /// write.
    fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// Security options: see the methods in `security.rs`.
    pub(crate) fn security_mut(&mut self) -> &mut Security {
        Arc::make_mut(&mut self.options.security)
    }

    /// Connects to `endpoint` and completes the handshake, now: a channel is
    /// one connection, so this returns it connected or fails. A refused
    /// connect (or a missing `ipc` path) is retried for the
    /// [`connect_timeout`](Self::connect_timeout) (default: one attempt).
    /// [`Socket::connect`](crate::Socket::connect) differs: it returns at once
    /// and connects, and reconnects, in the background (docs/patterns.md,
    /// "Channel or Socket").
    pub fn connect(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<Channel, Error> {
        let endpoint = endpoint.to_endpoint()?;
        let deadline = Instant::now() + self.options.connect_timeout;
        let mut pause = Duration::from_millis(10);
        let stream = loop {
            match transport::connect(&endpoint) {
                Ok(stream) => break stream,
                Err(e) if is_not_up_yet(&e) && Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        };
        Channel::establish(stream, self.options.clone())
    }

    /// Binds `endpoint` for [`Listener::accept`].
    pub fn listen(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<Listener, Error> {
        let endpoint = endpoint.to_endpoint()?;
        Ok(Listener {
            listen: Listen::bind(
                &endpoint,
                self.options.ipc_mode,
                crate::options::DEFAULT_BACKLOG,
            )?,
            options: self.options.clone(),
        })
    }

    /// Binds `endpoint`, waits for one peer and accepts it, and stops
    /// listening. It blocks until a peer comes, unlike
    /// [`Socket::bind`](crate::Socket::bind), which returns at once: hence the
    /// name. [`listen`](Self::listen) binds without waiting.
    pub fn bind_and_accept(&self, endpoint: &(impl ToEndpoint + ?Sized)) -> Result<Channel, Error> {
        self.listen(endpoint)?.accept()
    }

    /// Two connected channels over a socket pair: for threads, or for a parent and
    /// the child it hands one end to (see [`process`](crate::process)).
    pub fn pair(&self) -> Result<(Channel, Channel), Error> {
        let (a, b) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| Error::io("cannot create a socket pair", e))?;
        let wrap = |s: std::os::unix::net::UnixStream| {
            Channel::start(
                SocketStream::new(s.into(), transport::socket::Family::Unix),
                self.options.clone(),
            )
        };
        let (a, b) = (wrap(a)?, wrap(b)?);
        // Both greetings are in the socket buffers now, so both handshakes complete
        // without waiting on another thread.
        a.ensure_ready(Wait::timeout(self.options.handshake_timeout))
            .and_then(|_| b.ensure_ready(Wait::timeout(self.options.handshake_timeout)))
            .map_err(|f| f.into_error(self.options.handshake_timeout))?;
        Ok((a, b))
    }

    /// Opens the channel end this process's parent handed it (see
    /// [`process`](crate::process)).
    pub fn from_parent(&self) -> Result<Channel, Error> {
        let fd = crate::process::take_from_parent(crate::process::EndKind::Socket)?;
        Channel::start(
            SocketStream::new(fd, transport::socket::Family::Unix),
            self.options.clone(),
        )
    }

    /// A pipe with these options: a sending end and a receiving end. Only the
    /// message size, high-water mark and linger options apply to pipes.
    pub fn pipe(&self) -> Result<(PipeSender, PipeReceiver), Error> {
        let (read, write) = crate::pipe::os_pipe()?;
        Ok((
            PipeSender::open(write, self.options.clone())?,
            PipeReceiver::open(read, self.options.clone())?,
        ))
    }

    pub(crate) fn options(&self) -> &Options {
        &self.options
    }
}

fn is_not_up_yet(e: &Error) -> bool {
    e.io_error().is_some_and(|io| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        )
    })
}

/// A bound endpoint that accepts channels.
///
/// ```no_run
/// let listener = conduit::Listener::bind("tcp://127.0.0.1:5555")?;
/// for channel in listener.incoming() {
///     let channel = channel?;
///     let request = channel.recv()?;
///     channel.send(request)?; // echo
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Listener {
    listen: Listen,
    options: Options,
}

impl Listener {
    /// Binds `endpoint` with the default options.
    pub fn bind(endpoint: &(impl ToEndpoint + ?Sized)) -> Result<Listener, Error> {
        ChannelBuilder::new().listen(endpoint)
    }

    /// The bound endpoint, with the actual port if the OS picked it.
    pub fn endpoint(&self) -> &Endpoint {
        self.listen.endpoint()
    }

    /// Waits for a peer and completes the handshake with it. A peer that fails the
    /// handshake is dropped and reported; the listener stays usable.
    pub fn accept(&self) -> Result<Channel, Error> {
        Channel::establish(self.listen.accept()?.0, self.options.clone())
    }

    /// Like [`accept`](Self::accept), but gives up with
    /// [`AcceptTimeoutError::Timeout`] if no peer connects within `timeout`,
    /// as every other `*_timeout` does. The handshake has its own timeout on
    /// top.
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Channel, AcceptTimeoutError> {
        let ready = transport::wait_ready(
            self.listen.as_fd(),
            transport::Interest::Read,
            Wait::timeout(timeout),
        )
        .map_err(|e| Error::io(format!("cannot wait for a peer on {}", self.endpoint()), e))?;
        if !ready {
            return Err(AcceptTimeoutError::Timeout);
        }
        Ok(self.accept()?)
    }

    /// Accepts channels forever.
    pub fn incoming(&self) -> impl Iterator<Item = Result<Channel, Error>> + '_ {
        std::iter::repeat_with(|| self.accept())
    }
}

/// Handshake progress of a channel.
#[derive(Debug)]
enum HandshakeState {
    Pending(Box<Handshake>),
    Failed(Error),
}

/// A two-way channel to one peer, carrying whole messages, speaking ZMTP 3.1.
///
/// Open one with [`Channel::connect`], [`Channel::bind_and_accept`], a [`Listener`], or
/// [`Channel::pair`]. The peer can be another conduit channel or any ZeroMQ PAIR
/// socket (libzmq, pyzmq, JeroMQ).
///
/// Every method takes `&self`: one thread may receive while another sends. A
/// message is always received whole: `recv` never returns part of one.
///
/// Dropping a channel closes it as [`close`](Self::close) does, ignoring errors.
///
/// ```
/// let (a, b) = conduit::Channel::pair()?;
/// a.send("ping")?;
/// assert_eq!(b.recv()?.concat(), "ping");
/// b.send(conduit::Message::from_frames(["two", "frames"]))?;
/// assert_eq!(a.recv()?.frame_count(), 2);
/// drop(a);
/// assert!(matches!(b.recv(), Err(conduit::RecvError::Closed)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Channel {
    stream: Arc<SocketStream>,
    reader: Reader,
    writer: Writer,
    peer: OnceLock<PeerInfo>,
    handshake: Mutex<HandshakeState>,
    options: Options,
    closed: AtomicBool,
    /// An ERROR went to the peer. A socket may read a broken stream's end twice
    /// (its application thread, then the connection thread), and the peer is
    /// told once.
    told: AtomicBool,
}

/// Why an operation could not get past the handshake.
enum NotReady {
    WouldBlock,
    Failed(Error),
}

impl NotReady {
    fn into_error(self, timeout: Duration) -> Error {
        match self {
            NotReady::WouldBlock => Error::HandshakeTimeout(timeout),
            NotReady::Failed(e) => e,
        }
    }
}

impl Channel {
    /// Connects to `endpoint` (`tcp://host:port` or `ipc://path`) with the default
    /// options, and completes the handshake: one attempt, so a listener that is
    /// not up yet is an error (see [`ChannelBuilder::connect`] for retrying).
    pub fn connect(endpoint: &(impl ToEndpoint + ?Sized)) -> Result<Channel, Error> {
        ChannelBuilder::new().connect(endpoint)
    }

    /// Binds `endpoint`, waits for one peer, completes the handshake, and stops
    /// listening: it blocks until a peer comes (a [`Socket`](crate::Socket)'s
    /// `bind` does not). Use a [`Listener`] to accept more than one.
    pub fn bind_and_accept(endpoint: &(impl ToEndpoint + ?Sized)) -> Result<Channel, Error> {
        ChannelBuilder::new().bind_and_accept(endpoint)
    }

    /// Two connected channels over a socket pair.
    pub fn pair() -> Result<(Channel, Channel), Error> {
        ChannelBuilder::new().pair()
    }

    /// Opens the channel end this process's parent handed it when it spawned this
    /// process with [`process::spawn_with_channel`](crate::process::spawn_with_channel).
    ///
    /// ```no_run
    /// let parent = conduit::Channel::from_parent()?;
    /// let job = parent.recv()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_parent() -> Result<Channel, Error> {
        ChannelBuilder::new().from_parent()
    }

    /// A builder for channels with other options.
    pub fn builder() -> ChannelBuilder {
        ChannelBuilder::new()
    }

    /// Wraps a connected stream and sends our greeting and READY; the peer's are
    /// read on first use, so that a parent can create a channel before its child
    /// has started.
    pub(crate) fn start(stream: SocketStream, options: Options) -> Result<Channel, Error> {
        let stream = Arc::new(stream);
        let transport: Arc<dyn Transport> = stream.clone();
        // Only an authenticator looks at the peer's address: spare the system
        // calls otherwise.
        let peer_address = match options.security.authenticator {
            Some(_) => crate::security::peer_address(stream.as_fd()),
            None => Default::default(),
        };
        let handshake = Handshake::with_security(
            options.local.clone(),
            Security::clone(&options.security),
            peer_address,
        );
        let writer = Writer::new(transport.clone(), options.sndhwm);
        let mut opening = SendBuffer::new();
        handshake.start(&mut opening);
        writer.send_raw(&mut opening, Wait::timeout(options.handshake_timeout))?;
        Ok(Channel {
            reader: Reader::new(transport, options.max_message_size),
            writer,
            stream,
            peer: OnceLock::new(),
            handshake: Mutex::new(HandshakeState::Pending(Box::new(handshake))),
            options,
            closed: AtomicBool::new(false),
            told: AtomicBool::new(false),
        })
    }

    /// [`start`](Self::start), then completes the handshake within its timeout.
    fn establish(stream: SocketStream, options: Options) -> Result<Channel, Error> {
        stream.set_buffer_sizes(options.send_buffer_size, options.recv_buffer_size)?;
        let timeout = options.handshake_timeout;
        let channel = Channel::start(stream, options)?;
        channel
            .ensure_ready(Wait::timeout(timeout))
            .map_err(|f| f.into_error(timeout))?;
        Ok(channel)
    }

    /// Completes the handshake if it is not complete yet.
    #[inline]
    fn ensure_ready(&self, wait: Wait) -> Result<&PeerInfo, NotReady> {
        match self.peer.get() {
            Some(peer) => Ok(peer),
            None => self.complete_ready(wait),
        }
    }

    /// [`ensure_ready`](Self::ensure_ready) before the handshake completed.
    #[cold]
    fn complete_ready(&self, wait: Wait) -> Result<&PeerInfo, NotReady> {
        let mut state = self.handshake.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(peer) = self.peer.get() {
            return Ok(peer);
        }
        let handshake = match &mut *state {
            HandshakeState::Failed(e) => return Err(NotReady::Failed(e.clone())),
            HandshakeState::Pending(h) => h,
        };
        let reply_wait = Wait::timeout(self.options.handshake_timeout);
        let mut send = |out: &mut SendBuffer| self.writer.send_raw(out, reply_wait);
        match self.reader.handshake(handshake, wait, &mut send) {
            Ok((peer, sealer)) => {
                if let Some(sealer) = sealer {
                    self.writer.set_sealer(sealer);
                }
                Ok(self.peer.get_or_init(|| peer))
            }
            Err(RecvFail::WouldBlock) => Err(NotReady::WouldBlock),
            Err(fail) => {
                let error = match fail {
                    RecvFail::Broken(e) => e,
                    _ => Error::ClosedDuringHandshake,
                };
                if let Error::Protocol(p) = &error {
                    if handshake.peer_greeting().is_some() {
                        self.tell_peer(p);
                    }
                }
                let _ = self.stream.shutdown_write();
                *state = HandshakeState::Failed(error.clone());
                Err(NotReady::Failed(error))
            }
        }
    }

    /// Sends the peer an ERROR saying why we are dropping it, if the error is one
    /// to report.
    fn tell_peer(&self, error: &conduit_proto::ProtocolError) {
        if let Some(reason) = error.error_reason() {
            if self.told.swap(true, Ordering::AcqRel) {
                return;
            }
            if self.writer.send_command(&Command::Error(reason)).is_ok() {
                let _ = self.writer.flush(Wait::timeout(Duration::from_millis(100)));
            }
        }
    }

    /// What the peer announced in its handshake, once the handshake is complete.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.get()
    }

    /// Sends a message, waiting while the peer is not keeping up.
    ///
    /// Returns once the message is queued or written; [`flush`](Self::flush) or
    /// [`close`](Self::close) wait until everything reached the OS.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.send_within(message.into(), Wait::Forever)
            .map_err(SendFail::into_send)
    }

    /// Sends a message only if that needs no waiting.
    pub fn try_send(&self, message: impl Into<Message>) -> Result<(), TrySendError> {
        self.send_within(message.into(), Wait::Never)
            .map_err(SendFail::into_try)
    }

    /// Sends a message, waiting at most `timeout` for room.
    pub fn send_timeout(
        &self,
        message: impl Into<Message>,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.send_within(message.into(), Wait::timeout(timeout))
            .map_err(SendFail::into_timeout)
    }

    pub(crate) fn send_within(&self, message: Message, wait: Wait) -> Result<(), SendFail> {
        match self.ensure_ready(wait) {
            Ok(_) if self.goes_shared(&message) => self.send_shared(message, wait),
            Ok(_) => self.writer.send(message, wait),
            Err(NotReady::WouldBlock) => Err(SendFail::WouldBlock(message)),
            Err(NotReady::Failed(error)) => Err(SendFail::Broken(SendError { message, error })),
        }
    }

    /// Receives the next message, waiting until one has arrived whole.
    ///
    /// [`RecvError::Closed`] means the peer closed cleanly after its last message;
    /// it is not an error. A peer that dies partway through a message gives
    /// [`Error::Truncated`].
    pub fn recv(&self) -> Result<Message, RecvError> {
        self.recv_within(Wait::Forever).map_err(RecvFail::into_recv)
    }

    /// Receives a message only if one has arrived whole already.
    pub fn try_recv(&self) -> Result<Message, TryRecvError> {
        self.recv_within(Wait::Never).map_err(RecvFail::into_try)
    }

    /// Receives the next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvTimeoutError> {
        self.recv_within(Wait::timeout(timeout))
            .map_err(RecvFail::into_timeout)
    }

    fn recv_within(&self, wait: Wait) -> Result<Message, RecvFail> {
        self.recv_hooked(wait, |_| Ok(()))
    }

    /// Receives the next message; every command that arrives on the way is
    /// shown to `hook` and then handled as usual (PING answered, ERROR fatal).
    /// An error from `hook` breaks the channel, as a protocol error would.
    pub(crate) fn recv_hooked(
        &self,
        wait: Wait,
        hook: impl FnMut(&Command) -> Result<(), Error>,
    ) -> Result<Message, RecvFail> {
        // Descriptors that came with the message close here.
        self.recv_attached(wait, hook).map(|(msg, _fds)| msg)
    }

    /// Handles a command that arrived between messages.
    fn on_command(&self, cmd: Command) -> Result<(), Error> {
        match cmd {
            Command::Ping { context, .. } => {
                // Answer only when nothing is queued: what is queued goes out first
                // and is a sign of life too (ZMTP 3.1, "Connection Heartbeating"),
                // and a peer that pings without reading would otherwise make us
                // queue PONGs, which no high-water mark bounds, without end.
                // A peer that pings while we are sending to it may find the stream
                // broken; that is reported by the send, not here.
                if self.writer.flush(Wait::Never).is_ok() {
                    let _ = self.writer.send_command(&Command::Pong { context });
                }
                Ok(())
            }
            Command::Error(reason) => Err(Error::Protocol(
                conduit_proto::ProtocolError::PeerError(reason),
            )),
            // PONG is only a sign of life; a PAIR peer has no use for subscriptions,
            // and ZMTP says to ignore commands we do not know.
            _ => Ok(()),
        }
    }

    /// The receiving and sending halves, for a poller.
    pub(crate) fn halves(&self) -> (&Reader, &Writer) {
        (&self.reader, &self.writer)
    }

    /// [`close`](Self::close) within `linger`, through a shared reference; later
    /// closes and the drop do nothing.
    pub(crate) fn close_within(&self, linger: Wait) -> Result<(), Error> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.shutdown(linger)
    }

    /// Waits until every queued message has been handed to the OS.
    pub fn flush(&self) -> Result<(), Error> {
        self.writer.flush(Wait::Forever)
    }

    /// Closes the channel: everything sent before reaches the peer (within the
    /// linger time), then the peer's `recv` reports [`RecvError::Closed`].
    ///
    /// Returns an error if queued messages could not be delivered.
    pub fn close(self) -> Result<(), Error> {
        self.close_within(self.options.linger_wait())
    }

    fn shutdown(&self, linger: Wait) -> Result<(), Error> {
        let result = self.writer.close(linger);
        // Unread input would make closing a socket send a reset instead of a FIN.
        self.reader.discard_pending();
        // Linger only for the user's messages on a healthy stream: a peer that broke
        // the protocol, or never completed the handshake, is owed nothing, and
        // waiting on it would let it hold our close hostage.
        let owed = self.writer.has_sent() && !self.writer.is_broken() && !self.reader.is_broken();
        if let (true, Some(peer)) = (owed, self.peer.get()) {
            self.stream.wait_delivered(!peer.is_conduit(), linger);
        }
        result
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        let _ = self.close_within(self.options.linger_wait());
    }
}
