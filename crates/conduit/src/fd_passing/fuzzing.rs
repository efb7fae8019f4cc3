//! Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`, never
//! part of the API): what a peer's attachment header, descriptors and typed
//! values reach, with nothing but the socket left out.

use std::os::fd::OwnedFd;

use bytes::Bytes;
use conduit_proto::Message;

use super::{Header, Inbox};
use crate::error::Error;

/// One entry per shared frame: frame index, offset in its region, length,
/// ledger slot (or [`NO_SLOT`]).
pub type Shared = Vec<(usize, usize, usize, u32)>;

/// The slot of a shared frame whose region is not pooled.
pub const NO_SLOT: u32 = crate::shm_pool::NO_SLOT;

/// Slots in a ledger.
pub const SLOTS: usize = crate::shm_pool::SLOTS;

/// Bytes of a ledger.
pub const LEDGER_LEN: usize = crate::shm_pool::LEDGER_LEN;

/// Most descriptors of the user's in one message.
pub const MAX_USER_FDS: usize = super::MAX_FDS_PER_MESSAGE;

/// Most shared frames in one message.
pub const MAX_SHARED_FRAMES: usize = super::MAX_SHARED_FRAMES;

/// Parses an attachment header from a peer, as the receiving side does:
/// (user descriptors, ledger follows, shared frames).
pub fn decode_header(
    frame: &[u8],
    frames: usize,
    fds: usize,
    max_size: usize,
) -> Result<(usize, bool, Shared), Error> {
    let h = Header::decode(frame, frames, fds, max_size)?;
    Ok((h.user_fds, h.ledger, h.shared))
}

/// Encodes an attachment header, as the sending side does.
pub fn encode_header(user_fds: usize, ledger: bool, shared: Shared) -> Bytes {
    Header {
        user_fds,
        ledger,
        shared,
    }
    .encode()
}

/// A sealed region holding `data`, as a sender makes one outside its pool.
pub fn fresh_region(data: &[u8]) -> Result<OwnedFd, Error> {
    crate::shm::region_with(data)
}

/// A region of `len` bytes sealed against changing size only, as a sender's
/// pool (and its ledger) makes one.
pub fn pooled_region(len: usize) -> Result<OwnedFd, Error> {
    crate::shm_pool::sized_memfd(len)
}

/// One channel's receiving side: the peer's ledger and the mappings kept
/// between messages.
#[derive(Debug, Default)]
pub struct Receiver {
    inbox: Inbox,
}

impl Receiver {
    /// Splits a message that came after the attachment command, with the
    /// descriptors that came with it, into the user's message and descriptors.
    pub fn unpack(
        &self,
        msg: Message,
        group: Vec<OwnedFd>,
        max_size: usize,
    ) -> Result<(Message, Vec<OwnedFd>), Error> {
        super::unpack(msg, group, max_size, &self.inbox)
    }
}

/// Decodes a typed message as `recv_value` does (one frame, no descriptors).
pub fn decode_value<T: serde::de::DeserializeOwned>(msg: Message) -> Result<T, Error> {
    crate::typed::decode(msg, Vec::new())
}

/// Encodes a value as `send_value` does.
pub fn encode_value<T: serde::Serialize>(value: &T) -> Result<Bytes, Error> {
    crate::typed::encode(value).map(|(frame, _)| frame)
}
