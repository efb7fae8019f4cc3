//! What happens to a socket's connections, for logs and `conduit -v`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use conduit_proto::SocketType;

use crate::error::Error;

/// Something that happened to one of a socket's connections.
///
/// Register a callback with [`SocketBuilder::on_event`](crate::SocketBuilder::on_event).
/// `link` names the connection: the endpoint, and for accepted connections the
/// peer's address.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SocketEvent {
    /// A bound endpoint is listening.
    Listening {
        /// The endpoint, with the port the OS picked.
        endpoint: String,
    },
    /// A transport connection is up (accepted or connected); the handshake follows.
    Connected {
        /// The connection.
        link: String,
    },
    /// The handshake completed: the peer is in service.
    Ready {
        /// The connection.
        link: String,
        /// The peer's socket type.
        peer: SocketType,
        /// The peer's identity, if it sent one.
        identity: Bytes,
        /// What the socket's authenticator called the peer (see
        /// [`PeerInfo::user_id`](crate::PeerInfo::user_id)).
        user_id: Option<String>,
    },
    /// The handshake failed; the connection is closed.
    HandshakeFailed {
        /// The connection.
        link: String,
        /// Why.
        error: Error,
    },
    /// A peer that completed its handshake was turned away.
    Rejected {
        /// The connection.
        link: String,
        /// Why (a second PAIR peer, an identity already in use).
        reason: String,
    },
    /// A peer in service went away.
    Disconnected {
        /// The connection.
        link: String,
        /// None if it closed cleanly.
        error: Option<Error>,
    },
    /// A listening endpoint could not accept a connection. Out of descriptors,
    /// it says so once, keeps serving the peers it has, and accepts again when
    /// descriptors free up.
    AcceptFailed {
        /// The endpoint.
        endpoint: String,
        /// Why.
        error: Error,
    },
    /// A connect failed or a connection ended; trying again after `delay`.
    Retrying {
        /// The endpoint.
        endpoint: String,
        /// The wait before the next attempt.
        delay: Duration,
        /// What went wrong, if anything did.
        error: Option<Error>,
    },
}

fn chain(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl fmt::Display for SocketEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketEvent::Listening { endpoint } => write!(f, "listening on {endpoint}"),
            SocketEvent::Connected { link } => write!(f, "connected {link}"),
            SocketEvent::Ready {
                link,
                peer,
                identity,
                user_id,
            } => {
                write!(f, "handshake done with {link}: a {peer} peer")?;
                if !identity.is_empty() {
                    write!(f, ", identity {}", String::from_utf8_lossy(identity))?;
                }
                match user_id {
                    Some(user) => write!(f, ", user {user}"),
                    None => Ok(()),
                }
            }
            SocketEvent::HandshakeFailed { link, error } => {
                write!(f, "handshake with {link} failed: {}", chain(error))
            }
            SocketEvent::Rejected { link, reason } => write!(f, "rejected {link}: {reason}"),
            SocketEvent::AcceptFailed { endpoint, error } => {
                write!(f, "cannot accept on {endpoint}: {}", chain(error))
            }
            SocketEvent::Disconnected { link, error: None } => write!(f, "closed {link}"),
            SocketEvent::Disconnected {
                link,
                error: Some(e),
            } => write!(f, "dropped {link}: {}", chain(e)),
            SocketEvent::Retrying {
                endpoint,
                delay,
                error: None,
            } => write!(f, "reconnecting to {endpoint} in {delay:?}"),
            SocketEvent::Retrying {
                endpoint,
                delay,
                error: Some(e),
            } => write!(f, "reconnecting to {endpoint} in {delay:?} ({})", chain(e)),
        }
    }
}
