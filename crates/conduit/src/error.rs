//! Errors, one small type per operation, and the one place OS errors are mapped.
//!
//! The mapping: `WouldBlock` becomes "empty" or "full", the end of the stream at a
//! message boundary becomes "closed" (not an error), the end of the stream inside
//! a message becomes [`Error::Truncated`], and `EPIPE` / `ECONNRESET` become
//! [`Error::Disconnected`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use conduit_proto::{Message, ProtocolError, SocketType};

/// Why a channel or socket operation failed.
///
/// Cheap to clone: a broken channel keeps its error and hands a copy to every
/// later call.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer's stream ended partway through a message: it died or was killed
    /// mid-send. No part of that message is delivered.
    #[error("peer closed the connection in the middle of a message")]
    Truncated,
    /// The connection was reset, or the peer stopped reading and went away.
    #[error("peer disconnected")]
    Disconnected,
    /// The peer broke the ZMTP protocol, or cannot talk to us.
    #[error("protocol error")]
    Protocol(#[source] ProtocolError),
    /// The peer closed the connection before the handshake completed (a peer
    /// that refuses our socket type may do this without an ERROR).
    #[error("peer closed the connection during the handshake")]
    ClosedDuringHandshake,
    /// The peer did not complete the greeting and READY exchange in time.
    #[error("handshake did not complete within {0:?}")]
    HandshakeTimeout(Duration),
    /// An endpoint string that does not parse.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A message with no frames; every message needs at least one (it may be empty).
    #[error("message has no frames")]
    EmptyMessage,
    /// The API was used in a way it does not allow: an operation this socket
    /// type does not have, or one out of turn. Match the [`Misuse`] to tell
    /// which.
    #[error(transparent)]
    Misuse(#[from] Misuse),
    /// A peer completed its handshake but the socket would not take it (a
    /// second peer of a PAIR, a ROUTER identity already in use); `reason`
    /// says which.
    #[error("peer rejected: {0}")]
    PeerRejected(String),
    /// The end handed over by the parent process cannot be opened (see
    /// [`process`](crate::process)).
    #[error(transparent)]
    ParentEnd(#[from] ParentEndError),
    /// A ROUTER with `router_mandatory` was asked to send to a routing id no
    /// peer has.
    #[error("no peer has routing id {0:?}")]
    Unroutable(bytes::Bytes),
    /// The socket has been closed.
    #[error("socket is closed")]
    SocketClosed,
    /// `unbind` or `disconnect` named an endpoint the socket is not bound to or
    /// connected to.
    #[error("{0} is not an endpoint of this socket")]
    NotFound(String),
    /// The peer stopped answering heartbeats.
    #[error("peer went silent (heartbeat timed out)")]
    PeerSilent,
    /// A key, certificate or password file that cannot be used.
    #[error("{0}")]
    BadCredentials(String),
    /// A value could not be encoded for sending (see
    /// [`Channel::send_value`](crate::Channel::send_value)).
    #[error("cannot encode the value: {0}")]
    Encode(String),
    /// A message is not a valid encoding of the type asked for. Only that
    /// message is lost; the channel stays usable.
    #[error("message is not a valid value of the type asked for: {0}")]
    Decode(String),
    /// Descriptors or shared memory attached to a message could not be sent, or
    /// came malformed from the peer.
    #[error("{0}")]
    Attachment(String),
    /// The operating system refused something; `context` says what we were doing.
    #[error("{context}")]
    Io {
        /// What failed, such as `"cannot bind tcp://*:5555"`.
        context: String,
        /// The OS error.
        #[source]
        source: Arc<io::Error>,
    },
}

/// How the API was misused, in the manner of rustls's typed errors: each case
/// a variant callers can match, each with its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// A send on a socket type that only receives (PULL, SUB).
    #[error("a {0} socket cannot send")]
    CannotSend(SocketType),
    /// A receive on a socket type that only sends (PUSH, PUB).
    #[error("a {0} socket cannot receive")]
    CannotReceive(SocketType),
    /// `subscribe` or `unsubscribe` on a socket other than SUB (an XSUB sends
    /// subscription messages instead).
    #[error("only a SUB socket subscribes (an XSUB sends subscription messages); this is a {0}")]
    NotSubscriber(SocketType),
    /// A ROUTER message without a routing id frame and a body frame.
    #[error("a ROUTER message starts with the peer's routing id, then at least one frame")]
    NoRoutingId,
    /// A REQ sent a second request before the reply to the first.
    #[error("a REQ socket must receive the reply before sending another request")]
    RequestPending,
    /// A REQ receive with no request sent.
    #[error("a REQ socket must send a request before receiving")]
    NoRequestSent,
    /// A REP reply with no request received.
    #[error("a REP socket must receive a request before sending a reply")]
    NoRequestReceived,
    /// A REP receive before the reply to the last request.
    #[error("a REP socket must send the reply before receiving the next request")]
    ReplyPending,
    /// `set_io_threads(0)`.
    #[error("at least one I/O thread is needed")]
    NoIoThreads,
    /// `set_io_threads` with another number after the first socket started them.
    #[error("the I/O threads have started: set their number before the first socket")]
    IoThreadsStarted,
    /// A property name ZMTP does not allow (letters, digits, `-_.+`, 1 to 255
    /// bytes).
    #[error("invalid property name {0:?}")]
    PropertyName(String),
    /// A [`ChildEnd`](crate::process::ChildEnd) opened as the other kind of
    /// end (a pipe's read end as a channel, say).
    #[error("this end is a {actual}, not a {wanted}")]
    WrongEnd {
        /// What the end is.
        actual: &'static str,
        /// What it was opened as.
        wanted: &'static str,
    },
}

/// Why the end a parent process handed over cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParentEndError {
    /// The environment variable naming the end is not set: this process was
    /// not spawned by `conduit::process::spawn`.
    #[error(
        "{opener} needs the {variable} environment variable: was this process spawned by conduit::process::spawn?"
    )]
    NotSpawned {
        /// The function that was called.
        opener: &'static str,
        /// The variable's name.
        variable: &'static str,
    },
    /// The variable is not `KIND:FD`.
    #[error("{variable}={value:?} is not KIND:FD")]
    Malformed {
        /// The variable's name.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// The parent handed over another kind of end than the one opened.
    #[error("the parent handed over a {handed}, but {opener} opens a {wanted}")]
    WrongKind {
        /// What the parent handed over.
        handed: String,
        /// The function that was called.
        opener: &'static str,
        /// What it opens.
        wanted: &'static str,
    },
    /// The end was opened once already in this process.
    #[error("the parent's end has already been opened in this process")]
    AlreadyTaken,
}

impl Error {
    /// An I/O error with what we were doing when it happened.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// Maps an error from reading or writing an established stream.
    pub(crate) fn from_stream(source: io::Error, context: &str) -> Error {
        use rustix::io::Errno;
        match source.raw_os_error().map(Errno::from_raw_os_error) {
            Some(Errno::PIPE | Errno::CONNRESET | Errno::CONNABORTED) => Error::Disconnected,
            _ => Error::io(context, source),
        }
    }

    /// The OS error underneath, if this is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Error {
        Error::Protocol(e)
    }
}

/// Why [`recv`](crate::Channel::recv) returned no message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecvError {
    /// The peer closed the channel cleanly; every message it sent has been received.
    #[error("channel closed by peer")]
    Closed,
    /// The channel broke.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Why [`try_recv`](crate::Channel::try_recv) returned no message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TryRecvError {
    /// No whole message has arrived yet.
    #[error("no message available")]
    Empty,
    /// The peer closed the channel cleanly.
    #[error("channel closed by peer")]
    Closed,
    /// The channel broke.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Why [`recv_timeout`](crate::Channel::recv_timeout) returned no message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No whole message arrived in time.
    #[error("timed out waiting for a message")]
    Timeout,
    /// The peer closed the channel cleanly.
    #[error("channel closed by peer")]
    Closed,
    /// The channel broke.
    #[error(transparent)]
    Failed(#[from] Error),
}

/// Why [`accept_timeout`](crate::Listener::accept_timeout) returned no channel.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AcceptTimeoutError {
    /// No peer connected in time.
    #[error("timed out waiting for a peer")]
    Timeout,
    /// Accepting or the handshake failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl AcceptTimeoutError {
    /// Whether no peer came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, AcceptTimeoutError::Timeout)
    }
}

/// A failed send, handing the message back.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot send message")]
pub struct SendError {
    /// The message that was not sent.
    pub message: Message,
    /// Why.
    #[source]
    pub error: Error,
}

impl SendError {
    /// Takes the unsent message back.
    pub fn into_message(self) -> Message {
        self.message
    }
}

/// Why [`try_send`](crate::Channel::try_send) did not send.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TrySendError {
    /// Sending now would block: the peer is not keeping up (its buffer and our
    /// high-water mark are full). The message is handed back.
    #[error("channel is full")]
    Full(Message),
    /// The channel broke.
    #[error(transparent)]
    Failed(#[from] SendError),
}

/// Why [`send_timeout`](crate::Channel::send_timeout) did not send.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendTimeoutError {
    /// The peer did not make room in time. The message is handed back.
    #[error("timed out sending")]
    Timeout(Message),
    /// The channel broke.
    #[error(transparent)]
    Failed(#[from] SendError),
}

impl TrySendError {
    /// Takes the unsent message back.
    pub fn into_message(self) -> Message {
        match self {
            TrySendError::Full(m) => m,
            TrySendError::Failed(e) => e.message,
        }
    }
}

impl SendTimeoutError {
    /// Takes the unsent message back.
    pub fn into_message(self) -> Message {
        match self {
            SendTimeoutError::Timeout(m) => m,
            SendTimeoutError::Failed(e) => e.message,
        }
    }
}

// Helpers in the shape of crossbeam-channel's: ask what happened without a
// `match`, and take the message back under one name.

impl RecvError {
    /// Whether the channel or socket was closed (not a failure).
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvError::Closed)
    }
}

impl TryRecvError {
    /// Whether no message was there yet.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }

    /// Whether the channel or socket was closed (not a failure).
    pub fn is_closed(&self) -> bool {
        matches!(self, TryRecvError::Closed)
    }
}

impl RecvTimeoutError {
    /// Whether no message came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }

    /// Whether the channel or socket was closed (not a failure).
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvTimeoutError::Closed)
    }
}

impl SendError {
    /// The unsent message (as [`into_message`](Self::into_message)).
    pub fn into_inner(self) -> Message {
        self.message
    }

    /// Whether the send failed because the socket or channel is closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.error, Error::SocketClosed)
    }
}

impl TrySendError {
    /// Whether sending would have had to wait.
    pub fn is_full(&self) -> bool {
        matches!(self, TrySendError::Full(_))
    }

    /// The unsent message (as [`into_message`](Self::into_message)).
    pub fn into_inner(self) -> Message {
        self.into_message()
    }
}

impl SendTimeoutError {
    /// Whether no room came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, SendTimeoutError::Timeout(_))
    }

    /// The unsent message (as [`into_message`](Self::into_message)).
    pub fn into_inner(self) -> Message {
        self.into_message()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_say_what_happened_and_hand_the_message_back() {
        assert!(RecvError::Closed.is_closed());
        assert!(!RecvError::Failed(Error::Disconnected).is_closed());
        assert!(TryRecvError::Empty.is_empty() && !TryRecvError::Empty.is_closed());
        assert!(TryRecvError::Closed.is_closed());
        assert!(RecvTimeoutError::Timeout.is_timeout());
        assert!(!RecvTimeoutError::Closed.is_timeout() && RecvTimeoutError::Closed.is_closed());
        assert!(AcceptTimeoutError::Timeout.is_timeout());
        assert!(!AcceptTimeoutError::Failed(Error::Disconnected).is_timeout());

        let m = Message::from_frames(["a"]);
        let failed = SendError {
            message: m.clone(),
            error: Error::SocketClosed,
        };
        assert!(failed.is_closed());
        assert_eq!(failed.clone().into_inner(), m);
        assert!(TrySendError::Full(m.clone()).is_full());
        assert!(!TrySendError::Failed(failed.clone()).is_full());
        assert_eq!(TrySendError::Failed(failed).into_inner(), m);
        assert!(SendTimeoutError::Timeout(m.clone()).is_timeout());
        assert_eq!(SendTimeoutError::Timeout(m.clone()).into_inner(), m);
    }
}
