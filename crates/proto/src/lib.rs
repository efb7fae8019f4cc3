//! The ZMTP 3.1 protocol core of conduit: bytes in, messages and bytes out.
//!
//! This crate does no I/O. It has no sockets, no threads and no clock: the
//! library crate `conduit` feeds it the bytes it reads and writes out the bytes it
//! queues. That keeps every protocol rule testable in memory, byte for byte, and
//! fuzzable.
//!
//! # Pieces
//! - [`Message`]: one or more frames.
//! - [`FrameHeader`], [`Decoder`]: framing, and incremental decoding of traffic into
//!   whole messages and [`Command`]s, with a maximum message size checked before
//!   any memory is reserved.
//! - [`SendBuffer`]: encoded frames queued for one `writev` per batch.
//! - [`Greeting`], [`Handshake`]: the 64-byte greeting and the NULL mechanism's
//!   READY exchange, validating the peer's [`SocketType`].
//! - [`Subscriptions`]: counted prefix matching for PUB/SUB, within
//!   [`SubscriptionLimits`] per subscriber; [`envelope`]: the
//!   REQ/REP envelope rules.
//! - [`Mechanism`], [`Security`], [`Authenticator`]: NULL, PLAIN and CURVE
//!   handshakes, and who gets in; [`Cipher`] ([`Sealer`], [`Opener`]): CURVE's
//!   MESSAGE boxes after the handshake; [`z85`] and [`CurveKeyPair`]: keys.
//! - [`ProtocolError`]: every way a peer can break the protocol, with the
//!   [`Fault`] that says whose fault it is.
//!
//! # Example: a handshake and a message, in memory
//! ```
//! use bytes::BytesMut;
//! use conduit_proto::*;
//!
//! let mut push = Handshake::new(LocalInfo::new(SocketType::Push));
//! let mut pull = Handshake::new(LocalInfo::new(SocketType::Pull));
//! let mut wire = SendBuffer::new();
//! push.start(&mut wire);
//! wire.push_message(&Message::from("hello"));
//!
//! let mut input = BytesMut::from(&wire.to_vec()[..]);
//! let peer = pull.handle_input(&mut input).unwrap().expect("READY arrived");
//! assert_eq!(peer.socket_type, SocketType::Push);
//!
//! let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
//! let item = decoder.decode(&mut input).unwrap();
//! assert_eq!(item, Some(Item::Message(Message::from("hello"))));
//! ```
#![deny(missing_docs)]

mod assembler;
mod body_pool;
mod command;
mod decoder;
pub mod envelope;
mod error;
mod frame;
mod greeting;
mod handshake;
mod heartbeat;
mod mechanism;
mod message;
mod properties;
mod send_buffer;
mod socket_type;
mod subscriptions;
pub mod z85;

pub use command::{Command, MAX_PING_CONTEXT};
pub use decoder::{
    DEFAULT_MAX_MESSAGE_SIZE, Decoder, Item, LARGE_BODY, MAX_COMMAND_SIZE, MAX_FRAMES,
};
pub use error::{Fault, ProtocolError};
pub use frame::{
    FLAG_COMMAND, FLAG_LONG, FLAG_MORE, FrameHeader, MAX_HEADER_LEN, put_frame, put_message,
};
pub use greeting::{GREETING_LEN, Greeting};
pub use handshake::{Handshake, LocalInfo, PeerInfo};
pub use heartbeat::{Heartbeat, HeartbeatAction, HeartbeatConfig};
pub use mechanism::{
    AuthRequest, Authenticator, Cipher, Credentials, CurveKeyPair, CurvePublicKey, CurveSecretKey,
    KEY_LEN, KEY_Z85_LEN, KeyError, MESSAGE_OVERHEAD, Mechanism, Opener, Password, PeerAddress,
    PeerProcess, Sealer, Security,
};
pub use message::Message;
pub use properties::{IDENTITY, IMPLEMENTATION, InvalidPropertyName, Properties, SOCKET_TYPE};
pub use send_buffer::{COPY_LIMIT, SendBuffer};
pub use socket_type::{SocketType, UnknownSocketType};
pub use subscriptions::{
    DEFAULT_MAX_SUBSCRIPTION_BYTES, DEFAULT_MAX_SUBSCRIPTIONS, SubscriptionLimits,
    SubscriptionMessage, Subscriptions,
};
