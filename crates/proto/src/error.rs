//! Protocol errors, classified by whose fault they are.

use crate::socket_type::SocketType;

/// Who is to blame for a [`ProtocolError`], and so what the connection should do.
///
/// Every variant is fatal for the connection it happened on, and only for that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The bytes do not parse as ZMTP: a corrupt stream or not a ZMTP peer at all.
    Malformed,
    /// The bytes parse, but break the protocol's rules (a message before READY, a
    /// command inside a multipart message).
    Violation,
    /// A correct peer we cannot talk to: another version, mechanism or socket type.
    Incompatible,
    /// The peer told us, with an ERROR command, that it gives up.
    Peer,
    /// The peer completed its side of the handshake, but our authenticator
    /// did not let it in.
    Refused,
}

/// A fatal error on one ZMTP connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The first ten bytes are not a ZMTP signature (`0xFF`, 8 bytes, `0x7F`).
    #[error(
        "not a ZMTP peer: byte {offset} of the greeting is {found:#04x}, expected {expected:#04x}"
    )]
    BadSignature {
        /// Offset of the offending byte in the greeting.
        offset: usize,
        /// The byte received.
        found: u8,
        /// The byte ZMTP requires there.
        expected: u8,
    },
    /// A frame's flags byte has one of the reserved bits 3-7 set.
    #[error("frame flags {0:#04x} have reserved bits set")]
    ReservedFlags(u8),
    /// A command frame has the MORE flag set (ZMTP 3.1, "Framing").
    #[error("command frame has the MORE flag set")]
    CommandWithMore,
    /// A data frame would make the message larger than the configured maximum.
    #[error("message of at least {size} bytes exceeds the maximum message size of {max} bytes")]
    MessageTooLarge {
        /// Bytes the message would have with this frame.
        size: u64,
        /// The configured maximum.
        max: usize,
    },
    /// A message has more frames than [`MAX_FRAMES`](crate::MAX_FRAMES).
    #[error("message has more than {max} frames")]
    TooManyFrames {
        /// The limit.
        max: usize,
    },
    /// A subscriber subscribed to more distinct topics, or more bytes of them,
    /// than a publisher keeps for one ([`SubscriptionLimits`](crate::SubscriptionLimits)).
    #[error("subscriber went over its limit of {limit} {unit}")]
    TooManySubscriptions {
        /// The limit.
        limit: usize,
        /// What it counts: `"topics"` or `"bytes of topics"`.
        unit: &'static str,
    },
    /// A command frame is larger than [`MAX_COMMAND_SIZE`](crate::MAX_COMMAND_SIZE).
    #[error("command of {size} bytes exceeds the limit of {max} bytes")]
    CommandTooLarge {
        /// Announced body size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A command's body does not follow its grammar.
    #[error("malformed {command} command: {reason}")]
    MalformedCommand {
        /// Command name, or `"unnamed"` when even the name is broken.
        command: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A command arrived inside a multipart message, between its frames.
    #[error("command received in the middle of a multipart message")]
    CommandInsideMessage,
    /// A data frame arrived before the handshake was complete.
    #[error("message frame received before the handshake completed")]
    MessageBeforeReady,
    /// A command other than the one the handshake expects.
    #[error("expected READY during the handshake, received {0}")]
    UnexpectedCommand(String),
    /// The peer speaks a ZMTP version older than 3.0.
    #[error("peer speaks {}; conduit needs 3.0 or later", older_zmtp(*.major))]
    UnsupportedVersion {
        /// The peer's version byte (offset 10 of the greeting): ZMTP 2.0 sends
        /// its revision, 1, there.
        major: u8,
    },
    /// The peer's security mechanism is not NULL.
    #[error("peer uses security mechanism {peer:?}, which this side is not set up for")]
    MechanismMismatch {
        /// The mechanism the peer announced.
        peer: String,
    },
    /// The peer's READY did not say what socket type it is.
    #[error("peer did not announce its Socket-Type")]
    MissingSocketType,
    /// The peer's socket type is not one conduit knows.
    #[error("peer announced unknown socket type {0:?}")]
    UnknownSocketType(String),
    /// The two socket types cannot be connected (ZMTP 3.1, "The Socket-Type Property").
    #[error("a {ours} socket cannot talk to a {peer} peer")]
    IncompatibleSocketType {
        /// Our socket type.
        ours: SocketType,
        /// The peer's socket type.
        peer: SocketType,
    },
    /// The peer sent an ERROR command.
    #[error("peer reported an error: {0}")]
    PeerError(String),
    /// A security handshake command other than the one expected now.
    #[error("expected {expected} during the handshake, received {received}")]
    UnexpectedHandshakeCommand {
        /// The command the mechanism waits for.
        expected: &'static str,
        /// The command that came.
        received: String,
    },
    /// A CURVE box did not open, or held what it must not: a wrong key, a
    /// forged or corrupted box, or a cookie from another connection.
    #[error("CURVE: {0}")]
    Cryptographic(&'static str),
    /// A CURVE MESSAGE whose nonce is not above the last one's: replayed or
    /// reordered (RFC 26, "Nonces").
    #[error("CURVE: MESSAGE nonce {nonce} is not above the last one, {last}")]
    ReplayedNonce {
        /// The nonce received.
        nonce: u64,
        /// The last nonce accepted.
        last: u64,
    },
    /// Our authenticator refused the peer, for this reason.
    #[error("access denied: {0}")]
    AccessDenied(String),
}

/// Names the protocol behind a greeting's version byte below 3. The byte at
/// offset 10 is ZMTP 3's major version but ZMTP 2.0's revision (RFC 15), which
/// is 1, and libzmq takes 0 there for ZMTP 1.0.
fn older_zmtp(byte: u8) -> String {
    match byte {
        0 => "ZMTP 1.0".into(),
        1 => "ZMTP 2.0".into(),
        other => format!("a ZMTP older than 3.0 (version byte {other})"),
    }
}

impl ProtocolError {
    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        use ProtocolError::*;
        match self {
            BadSignature { .. }
            | ReservedFlags(_)
            | CommandWithMore
            | MalformedCommand { .. }
            | MessageTooLarge { .. }
            | TooManyFrames { .. }
            | CommandTooLarge { .. } => Fault::Malformed,
            CommandInsideMessage
            | MessageBeforeReady
            | UnexpectedCommand(_)
            | TooManySubscriptions { .. }
            | UnexpectedHandshakeCommand { .. }
            | Cryptographic(_)
            | ReplayedNonce { .. } => Fault::Violation,
            UnsupportedVersion { .. }
            | MechanismMismatch { .. }
            | MissingSocketType
            | UnknownSocketType(_)
            | IncompatibleSocketType { .. } => Fault::Incompatible,
            PeerError(_) => Fault::Peer,
            AccessDenied(_) => Fault::Refused,
        }
    }

    /// The reason to send the peer in an ERROR command before closing, if one should
    /// be sent.
    ///
    /// None for a peer that does not speak ZMTP 3 (it would not understand), and for
    /// an ERROR the peer sent us (it has already given up).
    pub fn error_reason(&self) -> Option<String> {
        match self {
            ProtocolError::BadSignature { .. }
            | ProtocolError::UnsupportedVersion { .. }
            | ProtocolError::MechanismMismatch { .. }
            | ProtocolError::PeerError(_) => None,
            // ZMTP 3.1, "The NULL Security Mechanism": error-reason is 0-255 VCHARs.
            other => Some(
                other
                    .to_string()
                    .chars()
                    .filter(|c| c.is_ascii_graphic() || *c == ' ')
                    .take(255)
                    .collect(),
            ),
        }
    }
}
