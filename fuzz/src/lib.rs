//! Checks shared by the fuzz targets: decoding a byte stream whole and in pieces,
//! the memory bound on the receive buffer, and re-encoding what was decoded.

use bytes::BytesMut;
use conduit_proto::{
    Command, Decoder, Item, MAX_COMMAND_SIZE, MAX_HEADER_LEN, ProtocolError, SendBuffer,
    put_message,
};

/// How a decode run ended after the last byte was fed.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// No error; `rest` is what is still buffered (an incomplete frame).
    Pending {
        /// Unconsumed bytes left in the receive buffer.
        rest: Vec<u8>,
        /// The decoder holds no frames of an unfinished multipart message.
        between_messages: bool,
    },
    /// The stream was rejected.
    Failed(ProtocolError),
}

/// Everything a decode run produced.
#[derive(Debug, PartialEq)]
pub struct Run {
    /// Items in the order they were decoded.
    pub items: Vec<Item>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Headroom for `BytesMut`'s own policy: a shared buffer that has to move is
/// given at least its original capacity again (at most 64 KiB in bytes 1.x, with
/// some margin here).
const ALLOCATOR_SLACK: usize = 128 << 10;

/// The most capacity a receive buffer may have once `fed` bytes have gone into
/// it, for a decoder refusing messages over `max_message_size`.
///
/// Every reservation asks for room for what is buffered plus at most one frame
/// (a header, a command of at most `MAX_COMMAND_SIZE`, or a message frame within
/// the limit) or one piece of input; a growing `Vec` or `BytesMut` at most doubles
/// what it needed. A decoder that reserved what a hostile header announces instead
/// of what the limit allows breaks this by orders of magnitude.
pub fn capacity_bound(fed: usize, max_message_size: usize) -> usize {
    let frame = max_message_size.max(MAX_COMMAND_SIZE) + MAX_HEADER_LEN;
    2 * (fed + frame) + ALLOCATOR_SLACK
}

/// Decodes `src` until the decoder wants more bytes or fails, appending items.
///
/// Checks the memory bound after every pending or failed call.
fn drain(
    decoder: &mut Decoder,
    src: &mut BytesMut,
    fed: usize,
    max_message_size: usize,
    items: &mut Vec<Item>,
) -> Result<(), ProtocolError> {
    loop {
        let result = decoder.decode(src);
        if !matches!(result, Ok(Some(_))) {
            let bound = capacity_bound(fed, max_message_size);
            // A large frame's body has a buffer of its own: it counts too.
            let body = decoder.large_body().map_or(0, |(body, _)| body.capacity());
            assert!(
                src.capacity() + body <= bound,
                "receive buffers grew to {} + {body} bytes after {fed} bytes fed (bound {bound})",
                src.capacity()
            );
        }
        match result? {
            Some(item) => items.push(item),
            None => return Ok(()),
        }
    }
}

fn finish(
    decoder: &Decoder,
    src: &BytesMut,
    items: Vec<Item>,
    result: Result<(), ProtocolError>,
) -> Run {
    let outcome = match result {
        Ok(()) => Outcome::Pending {
            rest: src.to_vec(),
            between_messages: decoder.is_between_messages(),
        },
        Err(e) => Outcome::Failed(e),
    };
    Run { items, outcome }
}

/// Decodes `wire` arriving all at once.
pub fn decode_whole(wire: &[u8], max_message_size: usize) -> Run {
    let mut decoder = Decoder::new(max_message_size);
    let mut src = BytesMut::from(wire);
    let mut items = Vec::new();
    let result = drain(
        &mut decoder,
        &mut src,
        wire.len(),
        max_message_size,
        &mut items,
    );
    finish(&decoder, &src, items, result)
}

/// As [`decode_in_pieces`], but reading as the engine does: while the decoder
/// has a large frame's body under way, a piece goes into that body's buffer,
/// no further than its end (`Decoder::large_body`), not into the receive buffer.
pub fn decode_in_place(wire: &[u8], pieces: &[usize], max_message_size: usize) -> Run {
    feed(wire, pieces, max_message_size, true)
}

/// Decodes `wire` arriving in pieces of the given sizes, cycled (a size of 0 is
/// taken as 1), into a buffer that starts empty, as a reader's would.
pub fn decode_in_pieces(wire: &[u8], pieces: &[usize], max_message_size: usize) -> Run {
    feed(wire, pieces, max_message_size, false)
}

fn feed(wire: &[u8], pieces: &[usize], max_message_size: usize, in_place: bool) -> Run {
    let mut decoder = Decoder::new(max_message_size);
    let mut src = BytesMut::new();
    let mut items = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().copied().cycle();
    let mut result = Ok(());
    while at < wire.len() {
        let mut size = sizes.next().unwrap_or(wire.len()).max(1);
        let target = match decoder.large_body() {
            Some((body, missing)) if in_place => {
                size = size.min(missing);
                body
            }
            _ => &mut src,
        };
        let end = wire.len().min(at + size);
        target.extend_from_slice(&wire[at..end]);
        at = end;
        result = drain(&mut decoder, &mut src, at, max_message_size, &mut items);
        if result.is_err() {
            break;
        }
    }
    finish(&decoder, &src, items, result)
}

/// Turns fuzzer bytes into piece sizes: mostly small pieces (1-192 bytes), the
/// rest multiples of 256 up to 16 KiB, so both byte-at-a-time delivery and reads
/// spanning many frames are covered.
pub fn piece_sizes(bytes: &[u8]) -> Vec<usize> {
    bytes
        .iter()
        .map(|&b| match b {
            0..=191 => usize::from(b) + 1,
            _ => usize::from(b - 191) * 256,
        })
        .collect()
}

/// The longest prefix of `reason` that is at most 255 bytes and ends on a
/// character boundary: what an ERROR command can carry of it.
pub fn sendable_reason(reason: &str) -> &str {
    let mut end = reason.len().min(255);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// What `item` is once it has been through the wire: the same, except that an
/// ERROR reason is cut to what the command can carry.
pub fn after_the_wire(item: &Item) -> Item {
    match item {
        Item::Command(Command::Error(reason)) => {
            Item::Command(Command::Error(sendable_reason(reason).to_owned()))
        }
        other => other.clone(),
    }
}

/// Encodes `item` with every encoder we have and checks that they agree and that
/// the result decodes to `item` again (see [`after_the_wire`]).
pub fn check_reencodes(item: &Item, max_message_size: usize) {
    let mut flat = BytesMut::new();
    let mut buf = SendBuffer::new();
    match item {
        Item::Message(msg) => {
            put_message(&mut flat, msg);
            buf.push_message(msg);
        }
        Item::Command(cmd) => {
            cmd.encode(&mut flat);
            buf.push_command(cmd);
        }
    }
    let wire = buf.to_vec();
    assert_eq!(
        buf.len(),
        wire.len(),
        "SendBuffer::len disagrees with to_vec"
    );
    assert_eq!(
        &flat[..],
        &wire[..],
        "SendBuffer and put_message/encode disagree"
    );
    let again = decode_whole(&wire, max_message_size);
    let expected = Run {
        items: vec![after_the_wire(item)],
        outcome: Outcome::Pending {
            rest: Vec::new(),
            between_messages: true,
        },
    };
    assert_eq!(again, expected, "re-encoded item does not decode to itself");
}

/// The reason sent to a peer before closing must be what ZMTP allows in ERROR:
/// at most 255 VCHARs or spaces.
pub fn check_error_reason(err: &ProtocolError) {
    if let Some(reason) = err.error_reason() {
        assert!(reason.len() <= 255, "error reason too long: {reason:?}");
        assert!(
            reason.bytes().all(|b| b.is_ascii_graphic() || b == b' '),
            "error reason has bytes ZMTP does not allow: {reason:?}"
        );
        // It must survive the trip through an ERROR command unchanged.
        let cmd = Command::Error(reason);
        let mut out = BytesMut::new();
        cmd.encode(&mut out);
        let run = decode_whole(&out, 0);
        assert_eq!(run.items, vec![Item::Command(cmd)]);
    }
    let _ = err.fault();
    let _ = err.to_string();
}
