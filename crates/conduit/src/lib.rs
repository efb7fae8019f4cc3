//! conduit: whole-message channels and ZeroMQ socket patterns.
#![deny(missing_docs)]

mod channel;
mod endpoint;
mod error;
mod options;
mod pipe;
pub mod process;
mod reader;
mod socket;
mod transport;
mod writer;

pub use channel::{Channel, ChannelBuilder, Listener};
pub use conduit_proto::{Message, PeerInfo, Properties, ProtocolError, SocketType};
pub use endpoint::Endpoint;
pub use error::{
    Error, RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
pub use options::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_HWM};
pub use pipe::{PipeReceiver, PipeSender, pipe};
pub use socket::{Socket, SocketBuilder, SocketEvent};
