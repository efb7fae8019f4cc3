//! Security mechanisms: NULL, PLAIN (RFC 24) and CURVE (RFC 25/26), as state
//! machines that [`Handshake`](crate::Handshake) drives, plus what a server
//! asks an [`Authenticator`] (what ZAP, RFC 27, asks in libzmq).
//!
//! The greeting names the mechanism and says which side is the server; the
//! mechanism's commands then replace NULL's single READY exchange. After a
//! CURVE handshake every frame travels inside a MESSAGE box: see [`Sealer`] and
//! [`Opener`].

use std::fmt;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::ProtocolError;
use crate::frame::{MAX_HEADER_LEN, put_frame};
use crate::properties::Properties;
use crate::send_buffer::SendBuffer;

pub(crate) mod curve;
mod keys;
pub(crate) mod plain;
mod sodium;

pub use curve::{Cipher, MESSAGE_OVERHEAD, Opener, Sealer};
pub use keys::{CurveKeyPair, CurvePublicKey, CurveSecretKey, KEY_LEN, KEY_Z85_LEN, KeyError};

/// A PLAIN password: zeroized when dropped, never printed by `Debug`.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Password(String);

impl Password {
    /// The password's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Password {
        Password(s.to_owned())
    }
}

impl From<String> for Password {
    fn from(s: String) -> Password {
        Password(s)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The security mechanism of a connection, and our role in it.
///
/// ```
/// use conduit_proto::{CurveKeyPair, Mechanism};
///
/// let server = CurveKeyPair::generate();
/// let client = Mechanism::CurveClient { server_key: server.public, keys: None };
/// assert_eq!(client.name(), "CURVE");
/// assert!(Mechanism::CurveServer { keys: server }.as_server());
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub enum Mechanism {
    /// No security (ZMTP 3.1, "The NULL Security Mechanism"): the default.
    #[default]
    Null,
    /// A PLAIN client, sending a user name and password in clear (RFC 24).
    PlainClient {
        /// The user name, at most 255 bytes.
        username: String,
        /// The password, at most 255 bytes.
        password: Password,
    },
    /// A PLAIN server: checks user names and passwords with its
    /// [`Authenticator`], or lets everyone in without one (as libzmq does with
    /// no ZAP handler).
    PlainServer,
    /// A CURVE client (RFC 26).
    CurveClient {
        /// The server's long-term public key, which the client must know.
        server_key: CurvePublicKey,
        /// Our long-term key pair; `None`: a new one for each connection (for
        /// servers that do not check client keys).
        keys: Option<CurveKeyPair>,
    },
    /// A CURVE server (RFC 26).
    CurveServer {
        /// The server's long-term key pair.
        keys: CurveKeyPair,
    },
}

impl Mechanism {
    /// The mechanism's name in the greeting: `NULL`, `PLAIN` or `CURVE`.
    pub fn name(&self) -> &'static str {
        match self {
            Mechanism::Null => "NULL",
            Mechanism::PlainClient { .. } | Mechanism::PlainServer => "PLAIN",
            Mechanism::CurveClient { .. } | Mechanism::CurveServer { .. } => "CURVE",
        }
    }

    /// The greeting's as-server flag.
    pub fn as_server(&self) -> bool {
        matches!(self, Mechanism::PlainServer | Mechanism::CurveServer { .. })
    }
}

/// Who the peer is as the transport sees it, for an [`Authenticator`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerAddress {
    /// The peer's address: `ip:port` over TCP, the socket path over ipc, empty
    /// when unknown.
    pub address: String,
    /// The peer process's credentials over a Unix socket (`SO_PEERCRED`).
    pub process: Option<PeerProcess>,
}

/// A Unix socket peer's process credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerProcess {
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What the peer proved or claimed in the handshake.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Credentials<'a> {
    /// NULL: nothing but its address.
    Null,
    /// PLAIN: a user name and a password, as sent in clear.
    Plain {
        /// The user name.
        username: &'a str,
        /// The password.
        password: &'a str,
    },
    /// CURVE: the client's long-term public key, which its vouch proved it holds.
    Curve {
        /// The client's long-term public key.
        client_key: CurvePublicKey,
    },
}

/// A server's question to its [`Authenticator`], once per connection.
#[derive(Debug)]
pub struct AuthRequest<'a> {
    /// `NULL`, `PLAIN` or `CURVE`.
    pub mechanism: &'static str,
    /// Where the peer is.
    pub peer: &'a PeerAddress,
    /// What it proved.
    pub credentials: Credentials<'a>,
}

/// Decides which peers a server lets in: what a ZAP handler (RFC 27) does for
/// libzmq, called in the handshake without I/O.
///
/// Returns the user id to attach to the connection (visible in
/// [`PeerInfo::user_id`](crate::PeerInfo::user_id)), or the reason the peer is
/// refused, which it receives in an ERROR command.
///
/// ```
/// use conduit_proto::{AuthRequest, Authenticator, Credentials};
///
/// #[derive(Debug)]
/// struct OnlyAlice;
/// impl Authenticator for OnlyAlice {
///     fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Option<String>, String> {
///         match req.credentials {
///             Credentials::Plain { username: "alice", password: "secret" } => {
///                 Ok(Some("alice".into()))
///             }
///             _ => Err("unknown user or wrong password".into()),
///         }
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + fmt::Debug {
    /// Lets the peer in (with a user id, perhaps) or refuses it with a reason.
    fn authenticate(&self, request: &AuthRequest<'_>) -> Result<Option<String>, String>;
}

/// A connection's security: its mechanism, and on a server the authenticator.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// The mechanism and our role in it.
    pub mechanism: Mechanism,
    /// Who decides which peers get in; without one every peer that completes
    /// the mechanism's handshake does. Asked only on the server side of PLAIN
    /// and CURVE, and for NULL on whichever side has one.
    pub authenticator: Option<Arc<dyn Authenticator>>,
}

impl Security {
    /// Asks the authenticator, if there is one.
    pub(crate) fn authenticate(
        &self,
        peer: &PeerAddress,
        credentials: Credentials<'_>,
    ) -> Result<Option<String>, ProtocolError> {
        let Some(auth) = &self.authenticator else {
            return Ok(None);
        };
        let request = AuthRequest {
            mechanism: self.mechanism.name(),
            peer,
            credentials,
        };
        auth.authenticate(&request)
            .map_err(ProtocolError::AccessDenied)
    }
}

/// Splits a handshake command's body into its name and data (ZMTP 3.1,
/// "Commands"), for the mechanisms that read commands Command::parse does
/// not know.
pub(crate) fn split_command(body: &Bytes) -> Result<(Bytes, Bytes), ProtocolError> {
    let malformed = |reason| ProtocolError::MalformedCommand {
        command: "unnamed".into(),
        reason,
    };
    // libzmq's PLAIN server writes its ERROR prefix as the C string
    // "\x05ERROR", whose greedy hex escape makes the first two bytes one,
    // 0x5E: read that as the ERROR it means (plain_common.hpp, 4.3.5).
    if body.starts_with(b"\x5eRROR") {
        return Ok((Bytes::from_static(b"ERROR"), body.slice(5..)));
    }
    let Some(&name_len) = body.first() else {
        return Err(malformed("empty command frame"));
    };
    let name_len = usize::from(name_len);
    if name_len == 0 {
        return Err(malformed("command name is empty"));
    }
    if body.len() < 1 + name_len {
        return Err(malformed("command name runs past the end"));
    }
    Ok((body.slice(1..1 + name_len), body.slice(1 + name_len..)))
}

/// The error for a command the mechanism did not expect now; an ERROR from
/// the peer is its reason.
pub(crate) fn unexpected(expected: &'static str, name: &[u8], data: &Bytes) -> ProtocolError {
    if name == b"ERROR" {
        let reason = match data.first() {
            Some(&len) => {
                let end = (1 + usize::from(len)).min(data.len());
                String::from_utf8_lossy(&data[1..end]).into_owned()
            }
            None => String::new(),
        };
        return ProtocolError::PeerError(reason);
    }
    ProtocolError::UnexpectedHandshakeCommand {
        expected,
        received: String::from_utf8_lossy(name).into_owned(),
    }
}

/// Queues a command frame `name | data` during the handshake.
pub(crate) fn push_command(out: &mut SendBuffer, name: &[u8], data: &[&[u8]]) {
    let mut body = Vec::with_capacity(1 + name.len() + data.iter().map(|d| d.len()).sum::<usize>());
    body.push(name.len() as u8);
    body.extend_from_slice(name);
    for d in data {
        body.extend_from_slice(d);
    }
    let mut frame = BytesMut::with_capacity(body.len() + MAX_HEADER_LEN);
    put_frame(&mut frame, false, true, &body);
    out.push_bytes(&frame);
}

/// What the side of a handshake needs to know from its owner.
pub(crate) struct Context<'a> {
    pub(crate) security: &'a Security,
    pub(crate) peer: &'a PeerAddress,
    /// Our metadata (the properties NULL sends in READY).
    pub(crate) metadata: &'a Properties,
}

/// How a mechanism's handshake ended.
#[derive(Debug)]
pub(crate) struct Done {
    /// The peer's metadata.
    pub(crate) properties: Properties,
    /// What our authenticator called the peer.
    pub(crate) user_id: Option<String>,
    /// The data-phase transform, for CURVE.
    pub(crate) cipher: Option<Cipher>,
}

#[cfg(test)]
mod kat;
#[cfg(test)]
mod tests;
