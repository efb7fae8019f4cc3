//! Frame headers: `flags (1) | size (1 or 8, big-endian)` (ZMTP 3.1, "Framing").

use bytes::{BufMut, BytesMut};

use crate::error::ProtocolError;
use crate::message::Message;

/// More frames of the same message follow.
pub const FLAG_MORE: u8 = 0x01;
/// The size field is 8 bytes instead of 1.
pub const FLAG_LONG: u8 = 0x02;
/// The frame is a command, not part of a message.
pub const FLAG_COMMAND: u8 = 0x04;
/// Bits 3-7 are reserved and must be zero.
const RESERVED_BITS: u8 = !(FLAG_MORE | FLAG_LONG | FLAG_COMMAND);

/// The longest frame header: a flags byte and an 8-byte size.
pub const MAX_HEADER_LEN: usize = 9;

/// Bodies up to this size use the one-byte size field.
const SHORT_MAX: usize = 255;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// More frames of this message follow.
    pub more: bool,
    /// This is a command frame.
    pub command: bool,
    /// Body size in bytes, as announced (not yet checked against any limit).
    pub len: u64,
}

impl FrameHeader {
    /// Parses a header from the start of `src`.
    ///
    /// Returns the header and its encoded length, `Ok(None)` if `src` is too short to
    /// tell, or an error for reserved flag bits or a command with MORE.
    pub fn parse(src: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let Some(&flags) = src.first() else {
            return Ok(None);
        };
        if flags & RESERVED_BITS != 0 {
            return Err(ProtocolError::ReservedFlags(flags));
        }
        let more = flags & FLAG_MORE != 0;
        let command = flags & FLAG_COMMAND != 0;
        if command && more {
            return Err(ProtocolError::CommandWithMore);
        }
        let (len, header_len) = if flags & FLAG_LONG != 0 {
            let Some(size) = src.get(1..MAX_HEADER_LEN) else {
                return Ok(None);
            };
            let size: [u8; 8] = size.try_into().expect("slice of 8 bytes");
            (u64::from_be_bytes(size), MAX_HEADER_LEN)
        } else {
            let Some(&size) = src.get(1) else {
                return Ok(None);
            };
            (u64::from(size), 2)
        };
        Ok(Some((FrameHeader { more, command, len }, header_len)))
    }

    /// Encodes the header into `out`, choosing the short form for bodies of 0-255
    /// bytes, and returns how many bytes of `out` it used.
    pub fn encode(&self, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
        let mut flags = 0;
        if self.more {
            flags |= FLAG_MORE;
        }
        if self.command {
            flags |= FLAG_COMMAND;
        }
        if self.len <= SHORT_MAX as u64 {
            out[0] = flags;
            out[1] = self.len as u8;
            2
        } else {
            out[0] = flags | FLAG_LONG;
            out[1..].copy_from_slice(&self.len.to_be_bytes());
            MAX_HEADER_LEN
        }
    }
}

/// Appends one frame, header and body, to `out`.
pub fn put_frame(out: &mut BytesMut, more: bool, command: bool, body: &[u8]) {
    let mut header = [0; MAX_HEADER_LEN];
    let n = FrameHeader {
        more,
        command,
        len: body.len() as u64,
    }
    .encode(&mut header);
    out.reserve(n + body.len());
    out.put_slice(&header[..n]);
    out.put_slice(body);
}

/// Appends a whole message to `out`, copying its frames.
///
/// A message with no frames encodes to nothing; senders reject it before this.
pub fn put_message(out: &mut BytesMut, msg: &Message) {
    let frames = msg.frames();
    for (i, frame) in frames.iter().enumerate() {
        put_frame(out, i + 1 < frames.len(), false, frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(more: bool, command: bool, len: u64) -> Vec<u8> {
        let mut out = [0; MAX_HEADER_LEN];
        let n = FrameHeader { more, command, len }.encode(&mut out);
        out[..n].to_vec()
    }

    #[test]
    fn header_wire_bytes() {
        assert_eq!(encoded(false, false, 0), [0x00, 0x00]);
        assert_eq!(encoded(true, false, 5), [0x01, 0x05]);
        assert_eq!(encoded(false, true, 255), [0x04, 0xFF]);
        assert_eq!(
            encoded(false, false, 256),
            [0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x00]
        );
        assert_eq!(
            encoded(true, false, 1 << 40),
            [0x03, 0, 0, 0x01, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            encoded(false, true, 300),
            [0x06, 0, 0, 0, 0, 0, 0, 0x01, 0x2C]
        );
    }

    #[test]
    fn parse_needs_the_whole_header() {
        assert_eq!(FrameHeader::parse(&[]), Ok(None));
        assert_eq!(FrameHeader::parse(&[0x00]), Ok(None));
        assert_eq!(FrameHeader::parse(&[0x02, 0, 0, 0, 0, 0, 0, 1]), Ok(None));
        let long = [0x03, 0, 0, 0, 0, 0, 0, 0x01, 0x00];
        assert_eq!(
            FrameHeader::parse(&long),
            Ok(Some((
                FrameHeader {
                    more: true,
                    command: false,
                    len: 256
                },
                9
            )))
        );
    }

    #[test]
    fn a_long_header_may_carry_a_short_size() {
        // The spec says SHOULD use the short form; a peer that does not is still valid.
        let (h, n) = FrameHeader::parse(&[0x02, 0, 0, 0, 0, 0, 0, 0, 3])
            .unwrap()
            .unwrap();
        assert_eq!((h.len, n), (3, 9));
    }

    #[test]
    fn reserved_bits_and_command_with_more_are_rejected() {
        for flags in [0x08, 0x10, 0x80, 0xFF] {
            assert_eq!(
                FrameHeader::parse(&[flags, 0]),
                Err(ProtocolError::ReservedFlags(flags))
            );
        }
        assert_eq!(
            FrameHeader::parse(&[0x05, 0]),
            Err(ProtocolError::CommandWithMore)
        );
    }
}
