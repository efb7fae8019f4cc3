//! conduit: message passing between processes, over pipes, socket pairs, Unix
//! domain sockets and TCP, in whole messages, speaking ZeroMQ's ZMTP 3.1.
//!
//! # Channels: one peer
//!
//! A [`Channel`] is a two-way channel to one peer. Open one by connecting, by
//! binding and accepting ([`Listener`]), or as a connected pair. The peer can be
//! another conduit channel or any ZeroMQ PAIR socket.
//!
//! ```
//! use conduit::{Channel, Message};
//!
//! let (a, b) = Channel::pair()?;
//! a.send(Message::from_frames(["greeting", "hello"]))?; // one message, two frames
//! let msg = b.recv()?;                                   // whole, or not at all
//! assert_eq!(msg.frames()[1], "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every operation comes in three forms, like crossbeam's channels: `send`,
//! `try_send`, `send_timeout`; `recv`, `try_recv`, `recv_timeout`. Each has a
//! small error type saying what happened, and a failed send hands the message
//! back.
//!
//! # Pipes: one way
//!
//! [`pipe()`] gives a [`PipeSender`] and a [`PipeReceiver`] over an OS pipe:
//! the same frames, no handshake. Standard input and output work too
//! ([`PipeSender::from_fd`]), which is how `conduit send --connect -` feeds a
//! shell pipe.
//!
//! # Processes
//!
//! [`process`] spawns a child with a channel or pipe end already open in it; the
//! child opens it with one call ([`Channel::from_parent`]). Nothing else leaks
//! into the child.
//!
//! # Rust to Rust on one host
//!
//! Between conduit channels, [`Channel::send_value`] and
//! [`Channel::recv_value`] move any serde value; a [`Descriptor`] inside it
//! carries a file, a channel or a pipe end to the other process
//! ([`Channel::send_fds`] does the same for plain messages); frames of 256 KiB
//! or more travel through shared memory, received without a copy, and a
//! [`SharedBytesMut`] is sent without any copy. [`OneShotServer`] gives a
//! process started some other way a name to connect back to. A libzmq peer
//! sees none of this: it gets plain bytes.
//!
//! # Sockets: patterns and many peers
//!
//! A [`Socket`] is a ZeroMQ socket of one of the standard types, talking to any
//! number of peers over any number of endpoints, reconnecting, and queueing
//! within high-water marks, as libzmq does.
//!
//! ```
//! use conduit::{Socket, SocketType};
//!
//! let rep = Socket::new(SocketType::Rep)?;
//! let endpoint = rep.bind("tcp://127.0.0.1:*")?.to_string();
//! let req = Socket::new(SocketType::Req)?;
//! req.connect(&endpoint)?;
//! req.send("ping")?;
//! assert_eq!(rep.recv()?.concat(), "ping");
//! rep.send("pong")?;
//! assert_eq!(req.recv()?.concat(), "pong");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Security
//!
//! CURVE encrypts and authenticates connections, PLAIN checks a user name and
//! password (in clear), as libzmq does; both builders take the options, and an
//! [`Authenticator`] such as [`AuthPolicy`] decides on the server who gets in
//! (`docs/security.md`).
//!
//! ```
//! use conduit::{AuthPolicy, CurveKeyPair, Socket, SocketType};
//!
//! let server = CurveKeyPair::generate();
//! let client = CurveKeyPair::generate();
//! let rep = Socket::builder(SocketType::Rep)
//!     .curve_server(server.clone())
//!     .authenticator(AuthPolicy::new().allow_curve_key(client.public))
//!     .build()?;
//! let endpoint = rep.bind("tcp://127.0.0.1:*")?.to_string();
//! let req = Socket::builder(SocketType::Req)
//!     .curve_client(server.public, Some(client))
//!     .build()?;
//! req.connect(&endpoint)?;
//! req.send("sealed")?;
//! assert_eq!(rep.recv()?.concat(), "sealed");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Async
//!
//! With the `tokio` feature, `AsyncSocket` and `AsyncChannel` (from
//! `Socket::into_async`, `Channel::into_async`) have `recv().await`,
//! `send(..).await`, and for sockets `Stream` and `Sink`, on the same engine
//! and with no thread per socket (`docs/async.md`).
//!
//! # Closing
//!
//! Closing a channel, pipe or socket (or dropping it) delivers everything sent
//! before, within the linger time (by default as long as it takes). The peer's
//! receive then reports [`RecvError::Closed`], which is not an error; a peer
//! that dies partway through a message gives [`Error::Truncated`], never part
//! of a message.
//!
//! # The protocol core
//!
//! The wire format lives in the `conduit-proto` crate, which does no I/O; its
//! [`Message`], [`SocketType`] and [`ProtocolError`] are re-exported here.
#![deny(missing_docs)]

#[cfg(feature = "tokio")]
mod async_io;
mod auth;
mod channel;
mod endpoint;
mod engine;
mod error;
mod fd_passing;
mod options;
mod pipe;
mod poller;
pub mod process;
mod reader;
mod security;
mod shm;
mod shm_pool;
mod socket;
mod transport;
mod typed;
mod writer;

#[cfg(feature = "tokio")]
pub use async_io::{AsyncChannel, AsyncSocket, SocketSend};
pub use auth::AuthPolicy;
pub use channel::{Channel, ChannelBuilder, Listener, OneShotServer};
pub use conduit_proto::{
    AuthRequest, Authenticator, Credentials, CurveKeyPair, CurvePublicKey, CurveSecretKey,
    DEFAULT_MAX_SUBSCRIPTION_BYTES, DEFAULT_MAX_SUBSCRIPTIONS, KeyError, Mechanism, Message,
    Password, PeerAddress, PeerInfo, PeerProcess, Properties, ProtocolError, Security, SocketType,
    z85,
};
pub use endpoint::{Endpoint, ToEndpoint};
pub use engine::{io_threads, set_io_threads};
pub use error::{
    AcceptTimeoutError, Error, Misuse, ParentEndError, RecvError, RecvTimeoutError, SendError,
    SendTimeoutError, TryRecvError, TrySendError,
};
pub use fd_passing::MAX_FDS_PER_MESSAGE;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use fd_passing::fuzzing;
pub use options::{DEFAULT_BACKLOG, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_HWM};
pub use pipe::{PipeReceiver, PipeSender, pipe};
pub use poller::{Interest, Pollable, Poller, Ready};
pub use security::{Certificate, load_public_keys, parse_key};
pub use shm::{DEFAULT_SHM_THRESHOLD, SharedBytesMut};
pub use socket::{Socket, SocketBuilder, SocketEvent};
pub use typed::Descriptor;
