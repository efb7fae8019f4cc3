//! Errors, one small type per operation, and the one place OS errors are mapped.
//!
//! The mapping: `WouldBlock` becomes "empty" or "full", the end of the stream at a
//! message boundary becomes "closed" (not an error), the end of the stream inside
//! a message becomes [`Error::Truncated`], and `EPIPE` / `ECONNRESET` become
//! [`Error::Disconnected`].

use std::io;
use std::sync::Arc;
use std::time::Duration;

use conduit_proto::{Message, ProtocolError};

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
    /// An operation this socket type does not support (such as receiving on PUSH).
    #[error("{0}")]
    Unsupported(String),
    /// An operation out of turn, such as a REQ sending twice without the reply.
    #[error("{0}")]
    WrongState(&'static str),
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
