//! Incremental decoding of traffic: frames into whole messages and commands.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::assembler::Assembler;
use crate::body_pool;
use crate::command::Command;
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, MAX_HEADER_LEN};
use crate::message::Message;

/// Default maximum message size: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Largest command body accepted. Commands carry metadata, subscriptions and
/// heartbeats, never bulk data; the bound keeps a hostile peer from making us
/// buffer a huge "command".
pub const MAX_COMMAND_SIZE: usize = 64 << 10;

/// Most frames one message may have. An empty frame adds nothing to a
/// message's size, so the size limit alone would let a peer stream a message of
/// endless empty frames, each held (a `Bytes` handle, 32 bytes) until the last;
/// this bounds that at 2 MiB. Envelopes and multipart messages in use have a
/// handful of frames.
pub const MAX_FRAMES: usize = 1 << 16;

/// Data frames with a body at least this large, not yet wholly buffered, get
/// a buffer of their own, sized to the body, that the rest of the body is read
/// into ([`Decoder::large_body`]). Growing the shared read buffer instead
/// copies what is buffered into a new allocation each time, and a read that
/// runs on into the next large frame makes that copy most of a frame.
pub const LARGE_BODY: usize = 64 << 10;

/// One unit of traffic: a whole message or a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete message, all of its frames.
    Message(Message),
    /// A command.
    Command(Command),
}

/// Turns a byte stream into [`Item`]s, whatever the split points of the input.
///
/// Like tokio-util's codecs: `decode` returns `Ok(None)` when it needs more bytes
/// (having reserved room in `src` for the rest of a frame it has begun; the
/// caller reserves room before reading into an empty `src`), and an error when
/// the stream is corrupt.
/// Sizes read from the wire are checked against the limits before any memory is
/// reserved for them.
///
/// ```
/// use bytes::BytesMut;
/// use conduit_proto::{Decoder, Item, Message};
///
/// let mut decoder = Decoder::new(1024);
/// let mut src = BytesMut::from(&b"\x01\x02hi\x00\x05there"[..]);
/// let item = decoder.decode(&mut src).unwrap().unwrap();
/// assert_eq!(item, Item::Message(Message::from_frames(["hi", "there"])));
/// assert_eq!(decoder.decode(&mut src).unwrap(), None);
/// ```
#[derive(Debug)]
pub struct Decoder {
    assembler: Assembler,
    /// A large data frame being received (see [`LARGE_BODY`]).
    large: Option<LargeFrame>,
}

/// A data frame whose body is read into a buffer of its own.
#[derive(Debug)]
struct LargeFrame {
    /// The body so far; its capacity is at least `len`.
    body: BytesMut,
    /// The body's length.
    len: usize,
    /// Whether more frames of the message follow.
    more: bool,
}

impl Decoder {
    /// A decoder that refuses messages larger than `max_message_size` bytes in total.
    pub fn new(max_message_size: usize) -> Decoder {
        Decoder {
            assembler: Assembler::new(max_message_size),
            large: None,
        }
    }

    /// Whether the decoder is between messages: no frames of a multipart message
    /// are held. A stream that ends while this is false was truncated.
    pub fn is_between_messages(&self) -> bool {
        self.assembler.is_between_messages() && self.large.is_none()
    }

    /// Where the next read should go while a large frame's body is under way
    /// (see [`LARGE_BODY`]): its buffer, and how many bytes it still misses.
    /// The caller reads at most that many into the buffer's spare capacity
    /// and advances it; [`decode`](Self::decode) then finds them there. `None`:
    /// read into `src` as usual.
    ///
    /// Reading nothing past the body keeps the next frame out of it, so its
    /// bytes are never copied. A caller that only ever appends to `src` may
    /// ignore this: `decode` moves the body's bytes over from `src`.
    ///
    /// ```
    /// use bytes::{BufMut, BytesMut};
    /// use conduit_proto::{Decoder, Item, Message, LARGE_BODY};
    ///
    /// let body = vec![7u8; LARGE_BODY];
    /// let mut wire = vec![0x02];
    /// wire.extend_from_slice(&(body.len() as u64).to_be_bytes());
    /// wire.extend_from_slice(&body);
    ///
    /// let mut decoder = Decoder::new(1 << 20);
    /// let mut src = BytesMut::from(&wire[..100]);
    /// assert_eq!(decoder.decode(&mut src).unwrap(), None);
    /// let (buf, missing) = decoder.large_body().unwrap();
    /// assert_eq!(missing, wire.len() - 100);
    /// buf.put_slice(&wire[100..]);
    /// let item = decoder.decode(&mut src).unwrap().unwrap();
    /// assert_eq!(item, Item::Message(Message::from(body)));
    /// ```
    pub fn large_body(&mut self) -> Option<(&mut BytesMut, usize)> {
        let large = self.large.as_mut()?;
        let missing = large.len - large.body.len();
        Some((&mut large.body, missing))
    }

    /// Decodes the next item from the front of `src`, consuming its bytes.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Item>, ProtocolError> {
        if let Some(large) = &mut self.large {
            let take = (large.len - large.body.len()).min(src.len());
            large.body.extend_from_slice(&src[..take]);
            src.advance(take);
            if large.body.len() < large.len {
                return Ok(None);
            }
            let LargeFrame { body, more, .. } = self.large.take().expect("checked above");
            // Its size was checked against the limits when its header was read.
            if let Some(item) = self.assembler.push(more, body_pool::freeze(body)) {
                return Ok(Some(item));
            }
        }
        loop {
            let Some((header, header_len)) = FrameHeader::parse(src)? else {
                // Room for the rest of a header begun; none for one not begun:
                // the messages just split off still share this buffer, so a
                // reservation here would allocate a whole new one per read, which
                // the reader (`read_once`) then drops unused when the peer is idle.
                if !src.is_empty() {
                    src.reserve(MAX_HEADER_LEN);
                }
                return Ok(None);
            };
            if header.command {
                self.assembler.check_command()?;
                if header.len > MAX_COMMAND_SIZE as u64 {
                    return Err(ProtocolError::CommandTooLarge {
                        size: header.len,
                        max: MAX_COMMAND_SIZE,
                    });
                }
            } else {
                self.assembler.check_data_frame(header.len)?;
            }
            // Within the limits checked above, so it fits in usize.
            let body_len = header.len as usize;
            let frame_len = header_len + body_len;
            if src.len() < frame_len {
                if header.command || body_len < LARGE_BODY {
                    src.reserve(frame_len - src.len());
                    return Ok(None);
                }
                // What is buffered is the start of this body and nothing
                // else: it moves to the body's own buffer, and `src` keeps its
                // room for whatever follows the body.
                src.advance(header_len);
                let mut body = body_pool::take(body_len);
                body.extend_from_slice(src);
                src.clear();
                self.large = Some(LargeFrame {
                    body,
                    len: body_len,
                    more: header.more,
                });
                return Ok(None);
            }
            src.advance(header_len);
            // An empty body shares nothing, so it keeps no read buffer alive.
            let body = if body_len == 0 {
                Bytes::new()
            } else {
                src.split_to(body_len).freeze()
            };
            if header.command {
                return Command::parse(body).map(|c| Some(Item::Command(c)));
            }
            if let Some(item) = self.assembler.push(header.more, body) {
                return Ok(Some(item));
            }
        }
    }
}

impl Decoder {
    /// Splits off the run of whole one-frame messages at the front of `src`, at
    /// most `max` of them, and appends them to `out`; returns how many. Stops
    /// before anything else (a command, a multipart message, an incomplete or
    /// invalid frame), which [`decode`](Self::decode) then handles, errors
    /// included.
    ///
    /// The same messages as repeated `decode` calls would give, for less work
    /// each: the whole run is split off `src` once, and every body is a slice of
    /// it.
    ///
    /// ```
    /// use std::collections::VecDeque;
    /// use bytes::BytesMut;
    /// use conduit_proto::{Decoder, Item, Message};
    ///
    /// let mut decoder = Decoder::new(1024);
    /// let mut src = BytesMut::from(&b"\x00\x01a\x00\x02bc\x01\x01d\x00\x01e"[..]);
    /// let mut out = VecDeque::new();
    /// assert_eq!(decoder.decode_run(&mut src, &mut out, 100), 2);
    /// assert_eq!(out, [Message::from("a"), Message::from("bc")]);
    /// // The multipart message is left for `decode`.
    /// let item = decoder.decode(&mut src).unwrap().unwrap();
    /// assert_eq!(item, Item::Message(Message::from_frames(["d", "e"])));
    /// ```
    pub fn decode_run(
        &mut self,
        src: &mut BytesMut,
        out: &mut VecDeque<Message>,
        max: usize,
    ) -> usize {
        if !self.is_between_messages() {
            return 0;
        }
        // First pass: how far the run goes.
        let mut end = 0;
        let mut count = 0;
        while count < max {
            match FrameHeader::parse(&src[end..]) {
                Ok(Some((h, header_len)))
                    if !h.command
                        && !h.more
                        && h.len <= self.assembler.max_message_size() as u64 =>
                {
                    let frame_end = end + header_len + h.len as usize;
                    if frame_end > src.len() {
                        break;
                    }
                    end = frame_end;
                    count += 1;
                }
                _ => break,
            }
        }
        if count == 0 {
            return 0;
        }
        // Second pass: one split, then a slice per body.
        let run = src.split_to(end).freeze();
        let mut at = 0;
        while at < end {
            let (h, header_len) = match FrameHeader::parse(&run[at..]) {
                Ok(Some(parsed)) => parsed,
                _ => unreachable!("checked in the first pass"),
            };
            let body_start = at + header_len;
            at = body_start + h.len as usize;
            out.push_back(Message::from(run.slice(body_start..at)));
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::put_message;

    /// Decodes `input` fed in pieces ending at each of `cuts`.
    fn decode_in_pieces(
        input: &[u8],
        cuts: &[usize],
        max: usize,
    ) -> Result<Vec<Item>, ProtocolError> {
        let mut decoder = Decoder::new(max);
        let mut src = BytesMut::new();
        let mut items = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            src.extend_from_slice(&input[start..end]);
            start = end;
            while let Some(item) = decoder.decode(&mut src)? {
                items.push(item);
            }
        }
        assert!(src.is_empty(), "bytes left over");
        Ok(items)
    }

    /// Two messages and a command, with short and long frames.
    fn fixture() -> (Vec<u8>, Vec<Item>) {
        let mut wire = Vec::new();
        wire.extend_from_slice(b"\x01\x03abc\x00\x00"); // ["abc", ""]
        wire.extend_from_slice(b"\x04\x07\x04PONGxy"); // PONG "xy"
        wire.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 0, 0x01, 0x00]); // 256 bytes
        wire.extend_from_slice(&[7u8; 256]);
        let items = vec![
            Item::Message(Message::from_frames(["abc", ""])),
            Item::Command(Command::Pong {
                context: Bytes::from_static(b"xy"),
            }),
            Item::Message(Message::from(vec![7u8; 256])),
        ];
        (wire, items)
    }

    #[test]
    fn every_single_split_point_gives_the_same_items() {
        let (wire, expected) = fixture();
        for cut in 0..=wire.len() {
            assert_eq!(
                decode_in_pieces(&wire, &[cut], 1 << 20).unwrap(),
                expected,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn every_pair_of_split_points_gives_the_same_items() {
        let (wire, expected) = fixture();
        for a in 0..=wire.len() {
            for b in (a..=wire.len()).step_by(7) {
                assert_eq!(decode_in_pieces(&wire, &[a, b], 1 << 20).unwrap(), expected);
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let (wire, expected) = fixture();
        let cuts: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(decode_in_pieces(&wire, &cuts, 1 << 20).unwrap(), expected);
    }

    /// Decodes `input` fed in pieces ending at each of `cuts`, taking runs of
    /// one-frame messages with `decode_run` whenever it finds one.
    fn decode_runs_in_pieces(input: &[u8], cuts: &[usize], max: usize) -> Vec<Item> {
        let mut decoder = Decoder::new(max);
        let mut src = BytesMut::new();
        let mut items = Vec::new();
        let mut run = VecDeque::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&input.len())) {
            src.extend_from_slice(&input[start..end]);
            start = end;
            loop {
                if decoder.decode_run(&mut src, &mut run, 3) > 0 {
                    items.extend(run.drain(..).map(Item::Message));
                    continue;
                }
                match decoder.decode(&mut src).unwrap() {
                    Some(item) => items.push(item),
                    None => break,
                }
            }
        }
        assert!(src.is_empty(), "bytes left over");
        items
    }

    #[test]
    fn runs_of_one_frame_messages_decode_as_decode_does_at_every_split() {
        let (mut wire, mut expected) = fixture();
        for body in ["x", "", "yz", "w"] {
            wire.extend_from_slice(&[0x00, body.len() as u8]);
            wire.extend_from_slice(body.as_bytes());
            expected.push(Item::Message(Message::from(body)));
        }
        let (tail, tail_items) = fixture();
        wire.extend_from_slice(&tail);
        expected.extend(tail_items);
        for cut in 0..=wire.len() {
            assert_eq!(
                decode_runs_in_pieces(&wire, &[cut], 1 << 20),
                expected,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_run_stops_before_an_oversized_or_invalid_frame() {
        let mut decoder = Decoder::new(4);
        let mut src = BytesMut::from(&b"\x00\x01a\x00\x05hello\x00\x01b"[..]);
        let mut out = VecDeque::new();
        assert_eq!(decoder.decode_run(&mut src, &mut out, 10), 1);
        assert!(matches!(
            decoder.decode(&mut src),
            Err(ProtocolError::MessageTooLarge { size: 5, max: 4 })
        ));
        let mut src = BytesMut::from(&b"\x00\x01a\x08\x01b"[..]);
        assert_eq!(decoder.decode_run(&mut src, &mut out, 10), 1);
        assert_eq!(
            decoder.decode(&mut src),
            Err(ProtocolError::ReservedFlags(0x08))
        );
    }

    #[test]
    fn message_size_limit_counts_all_frames() {
        let mut wire = BytesMut::new();
        put_message(&mut wire, &Message::from_frames(["12345", "67890"]));
        assert_eq!(decode_in_pieces(&wire, &[], 10).unwrap().len(), 1);
        assert_eq!(
            decode_in_pieces(&wire, &[], 9),
            Err(ProtocolError::MessageTooLarge { size: 10, max: 9 })
        );
    }

    #[test]
    fn frames_per_message_are_bounded_even_when_empty() {
        let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
        let mut src = BytesMut::from(&b"\x01\x00".repeat(MAX_FRAMES - 1)[..]);
        src.extend_from_slice(b"\x00\x00");
        match decoder.decode(&mut src).unwrap() {
            Some(Item::Message(m)) => assert_eq!(m.frame_count(), MAX_FRAMES),
            other => panic!("expected a message of {MAX_FRAMES} frames, got {other:?}"),
        }
        let mut src = BytesMut::from(&b"\x01\x00".repeat(MAX_FRAMES + 1)[..]);
        assert_eq!(
            decoder.decode(&mut src),
            Err(ProtocolError::TooManyFrames { max: MAX_FRAMES })
        );
    }

    #[test]
    fn a_huge_announced_frame_fails_before_reserving_memory() {
        let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
        let mut src = BytesMut::from(&[0x02, 0x40, 0, 0, 0, 0, 0, 0, 0][..]); // 2^62 bytes
        let err = decoder.decode(&mut src).unwrap_err();
        assert!(matches!(err, ProtocolError::MessageTooLarge { size, .. } if size == 1 << 62));
        assert!(src.capacity() < 1024);
        let mut src = BytesMut::from(&[0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert!(matches!(
            decoder.decode(&mut src),
            Err(ProtocolError::CommandTooLarge { .. })
        ));
    }

    #[test]
    fn a_large_frame_gets_a_buffer_of_its_size_and_src_keeps_its_room() {
        let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
        let mut src = BytesMut::with_capacity(64 << 10);
        src.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3]); // 1 MiB
        let room = src.capacity();
        assert_eq!(decoder.decode(&mut src), Ok(None));
        assert!(src.is_empty());
        // The same allocation, less the header consumed: not regrown.
        assert_eq!(src.capacity(), room - 9);
        let (body, missing) = decoder.large_body().unwrap();
        assert_eq!(missing, (1 << 20) - 3);
        assert!(body.capacity() >= 1 << 20);
        assert_eq!(&body[..], [1, 2, 3]);
        assert!(!decoder.is_between_messages());
    }

    #[test]
    fn large_frames_split_anywhere_give_the_same_message() {
        // ["small", large, large] then a one-frame large message and a small one.
        let large_a = Bytes::from((0..LARGE_BODY + 5).map(|i| i as u8).collect::<Vec<u8>>());
        let large_b = Bytes::from(vec![9u8; 3 * LARGE_BODY]);
        let small = Bytes::from_static(b"small");
        let mut wire = BytesMut::new();
        put_message(
            &mut wire,
            &Message::from_frames([small.clone(), large_a.clone(), large_b.clone()]),
        );
        put_message(&mut wire, &Message::from(large_b.clone()));
        put_message(&mut wire, &Message::from("end"));
        let expected = vec![
            Item::Message(Message::from_frames([
                small.clone(),
                large_a.clone(),
                large_b.clone(),
            ])),
            Item::Message(Message::from(large_b.clone())),
            Item::Message(Message::from("end")),
        ];
        let step = wire.len() / 97;
        for cut in (0..wire.len()).step_by(step).chain([10, 15, 16, 17]) {
            assert_eq!(
                decode_in_pieces(&wire, &[cut, (cut + LARGE_BODY).min(wire.len())], 1 << 20)
                    .unwrap(),
                expected,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_large_body_read_in_place_never_takes_the_next_frame() {
        let body = vec![5u8; 2 * LARGE_BODY];
        let mut wire = BytesMut::new();
        put_message(&mut wire, &Message::from(body.clone()));
        put_message(&mut wire, &Message::from("next"));
        let mut decoder = Decoder::new(1 << 20);
        // A reader that takes what `large_body` asks for, 1000 bytes at a time.
        let mut src = BytesMut::from(&wire[..100]);
        let mut at = 100;
        let mut items = Vec::new();
        while items.len() < 2 {
            if let Some(item) = decoder.decode(&mut src).unwrap() {
                items.push(item);
                continue;
            }
            let n = match decoder.large_body() {
                Some((buf, missing)) => {
                    let n = missing.min(1000);
                    buf.extend_from_slice(&wire[at..at + n]);
                    n
                }
                None => {
                    let n = (wire.len() - at).min(1000);
                    src.extend_from_slice(&wire[at..at + n]);
                    n
                }
            };
            assert!(n > 0, "stalled at {at}");
            at += n;
        }
        assert_eq!(
            items,
            [
                Item::Message(Message::from(body)),
                Item::Message(Message::from("next"))
            ]
        );
        assert!(decoder.is_between_messages());
    }

    #[test]
    fn a_large_frame_is_still_held_to_the_size_limit() {
        let mut decoder = Decoder::new(LARGE_BODY);
        let mut src = BytesMut::new();
        put_message(&mut src, &Message::from(vec![0u8; LARGE_BODY + 1]));
        src.truncate(100);
        assert!(matches!(
            decoder.decode(&mut src),
            Err(ProtocolError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn command_inside_a_multipart_message_is_a_violation() {
        let wire = b"\x01\x01a\x04\x05\x04PING";
        assert_eq!(
            decode_in_pieces(wire, &[], 100),
            Err(ProtocolError::CommandInsideMessage)
        );
    }

    #[test]
    fn truncation_is_visible_between_frames() {
        let mut decoder = Decoder::new(100);
        let mut src = BytesMut::from(&b"\x01\x01a"[..]);
        assert_eq!(decoder.decode(&mut src), Ok(None));
        assert!(!decoder.is_between_messages());
    }
}
