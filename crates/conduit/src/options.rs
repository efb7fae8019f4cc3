//! Options shared by channels and pipes, with libzmq's defaults where libzmq has one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use conduit_proto::{DEFAULT_MAX_MESSAGE_SIZE, LocalInfo, Properties, Security, SocketType};

use crate::transport::Wait;

/// Default high-water mark: messages queued per peer before senders wait (libzmq's
/// `ZMQ_SNDHWM`).
pub const DEFAULT_HWM: usize = 1000;

/// Default listen backlog: connections the kernel queues before we accept them
/// (`ZMQ_BACKLOG`; libzmq's is 100). Large enough that ten thousand peers
/// connecting at once are not turned away and retried for seconds; the kernel
/// caps it at `net.core.somaxconn` (4096 on current Linux).
pub const DEFAULT_BACKLOG: u32 = 4096;

/// Default time a peer has to complete the greeting and READY exchange.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) local: LocalInfo,
    pub(crate) max_message_size: usize,
    pub(crate) handshake_timeout: Duration,
    /// How long closing may wait for queued messages to go out; `None`: as long as
    /// it takes (libzmq's default linger of -1).
    pub(crate) linger: Option<Duration>,
    pub(crate) sndhwm: usize,
    /// Keep retrying a refused connect for this long (0: try once).
    pub(crate) connect_timeout: Duration,
    /// Permission bits of an `ipc://` socket file.
    pub(crate) ipc_mode: u32,
    /// Security mechanism, role and authenticator (default NULL, no checks);
    /// shared, as it is the same for every connection and holds keys.
    pub(crate) security: Arc<Security>,
    /// Frames this large or larger go in shared memory to a conduit peer on a
    /// Unix socket (`None`: never; channels from a `ChannelBuilder` default to
    /// `shm::DEFAULT_SHM_THRESHOLD`).
    pub(crate) shm_threshold: Option<usize>,
    /// `SO_SNDBUF` / `SO_RCVBUF` for each connection; 0 keeps the kernel's
    /// default (and, over TCP, its automatic tuning): measured best for large
    /// messages on one core, see docs/large-messages.md.
    pub(crate) send_buffer_size: usize,
    pub(crate) recv_buffer_size: usize,
}

impl Options {
    pub(crate) fn new(socket_type: SocketType) -> Options {
        Options {
            local: LocalInfo {
                socket_type,
                identity: Bytes::new(),
                properties: Properties::new(),
            },
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            linger: None,
            sndhwm: DEFAULT_HWM,
            connect_timeout: Duration::ZERO,
            ipc_mode: 0o600,
            security: Arc::default(),
            shm_threshold: None,
            send_buffer_size: 0,
            recv_buffer_size: 0,
        }
    }

    pub(crate) fn linger_wait(&self) -> Wait {
        self.linger.map_or(Wait::Forever, Wait::timeout)
    }
}

/// The connection options of [`ChannelBuilder`](crate::ChannelBuilder) and
/// [`SocketBuilder`](crate::SocketBuilder), written once so that their docs
/// cannot drift apart: a socket opens every connection with them, a channel
/// its one. Each builder gives its [`Options`] through `options_mut`. (The
/// security setters are shared the same way, in `security.rs`.)
macro_rules! connection_options {
    ($builder:ty) => {
        impl $builder {
            /// The identity announced to peers in the handshake (default
            /// none); a ROUTER peer addresses us by it.
            pub fn identity(mut self, identity: impl Into<bytes::Bytes>) -> Self {
                self.options_mut().local.identity = identity.into();
                self
            }

            /// Largest message accepted from a peer (default 64 MiB). A peer
            /// sending a larger one is cut off with an error before any memory
            /// is reserved for it: a channel breaks, a socket drops that peer
            /// and keeps the others.
            pub fn max_message_size(mut self, bytes: usize) -> Self {
                self.options_mut().max_message_size = bytes;
                self
            }

            /// How long a new connection has to complete its handshake
            /// (default 5 s, [`DEFAULT_HANDSHAKE_TIMEOUT`](crate::DEFAULT_HANDSHAKE_TIMEOUT)).
            pub fn handshake_timeout(mut self, timeout: std::time::Duration) -> Self {
                self.options_mut().handshake_timeout = timeout;
                self
            }

            /// How long closing (`close`, or dropping the last handle) may wait
            /// for queued messages to go out. Default: as long as it takes, like
            /// libzmq's linger of -1.
            pub fn linger(mut self, linger: std::time::Duration) -> Self {
                self.options_mut().linger = Some(linger);
                self
            }

            /// The send high-water mark: messages queued per peer while it is
            /// not keeping up, before `send` waits (default 1000,
            /// [`DEFAULT_HWM`](crate::DEFAULT_HWM), libzmq's `ZMQ_SNDHWM`).
            pub fn send_hwm(mut self, messages: usize) -> Self {
                self.options_mut().sndhwm = messages;
                self
            }

            /// Permission bits of the `ipc://` socket files this binds
            /// (default 0o600, owner only).
            pub fn ipc_mode(mut self, mode: u32) -> Self {
                self.options_mut().ipc_mode = mode;
                self
            }

            /// The send buffer (`SO_SNDBUF`, libzmq's `ZMQ_SNDBUF`) of each
            /// Unix or TCP connection, in bytes; default 0: the kernel's own
            /// (over TCP, with its automatic tuning, which a fixed size turns
            /// off). The kernel doubles the value and caps it at
            /// `net.core.wmem_max`. A buffer that holds a whole large message
            /// takes fewer wake-ups per message but more CPU when both ends
            /// share a core: docs/large-messages.md has the measurements.
            ///
            /// ```no_run
            /// use conduit::{Channel, Socket, SocketType};
            ///
            /// let ch = Channel::builder()
            ///     .send_buffer_size(1 << 20)
            ///     .recv_buffer_size(1 << 20)
            ///     .connect("ipc:///tmp/bulk.sock")?;
            /// let push = Socket::builder(SocketType::Push)
            ///     .send_buffer_size(1 << 20)
            ///     .build()?;
            /// # Ok::<(), conduit::Error>(())
            /// ```
            pub fn send_buffer_size(mut self, bytes: usize) -> Self {
                self.options_mut().send_buffer_size = bytes;
                self
            }

            /// The receive buffer (`SO_RCVBUF`, libzmq's `ZMQ_RCVBUF`) of each
            /// Unix or TCP connection, in bytes; default 0, the kernel's own,
            /// as for [`send_buffer_size`](Self::send_buffer_size).
            pub fn recv_buffer_size(mut self, bytes: usize) -> Self {
                self.options_mut().recv_buffer_size = bytes;
                self
            }
        }
    };
}
pub(crate) use connection_options;
