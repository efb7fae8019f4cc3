//! The encoders, on structured input: arbitrary messages and valid commands are
//! queued in a `SendBuffer` and encoded with `put_message` / `Command::encode`.
//!
//! Checks: both encoders give the same bytes; the bytes decode, in arbitrary
//! pieces, to exactly what was encoded; draining the `SendBuffer` through
//! `io_slices` and `advance` with arbitrary partial writes yields the same bytes;
//! `FrameHeader::encode` round-trips through `FrameHeader::parse` and uses the
//! short form exactly for bodies of 0-255 bytes.
#![no_main]

use std::io::IoSlice;

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use conduit_proto::{
    COPY_LIMIT, Command, DEFAULT_MAX_MESSAGE_SIZE, FrameHeader, Item, MAX_HEADER_LEN,
    MAX_PING_CONTEXT, Message, Properties, ProtocolError, SendBuffer, put_message,
};
use conduit_proto_fuzz::{Outcome, Run, after_the_wire, decode_in_pieces};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Frame {
    Small(Vec<u8>),
    /// A body of `len % (3 * COPY_LIMIT)` copies of `byte`: reaches the sizes
    /// the `SendBuffer` queues by reference without a huge fuzz input.
    Large {
        len: u16,
        byte: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum ArbItem {
    Message(Frame, Vec<Frame>),
    Ping { ttl: u16, context: Vec<u8> },
    Pong(Vec<u8>),
    Subscribe(Frame),
    Cancel(Frame),
    Error(String),
    Ready(Vec<(String, Vec<u8>)>),
    Unknown(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    items: Vec<ArbItem>,
    pieces: Vec<u8>,
    writes: Vec<u16>,
    slots: u8,
    headers: Vec<(bool, bool, u64)>,
}

fn frame(f: Frame) -> Bytes {
    match f {
        Frame::Small(v) => Bytes::from(v),
        Frame::Large { len, byte } => Bytes::from(vec![byte; usize::from(len) % (3 * COPY_LIMIT)]),
    }
}

fn limit(mut v: Vec<u8>, max: usize) -> Bytes {
    v.truncate(max);
    Bytes::from(v)
}

/// A property name ZMTP allows, made from arbitrary text.
fn name(s: &str) -> String {
    let mut n: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
        .take(255)
        .collect();
    if n.is_empty() {
        n.push('X');
    }
    n
}

/// The item to encode and the item the decoder must give back.
fn build(item: ArbItem) -> (Item, Item) {
    let cmd = match item {
        ArbItem::Message(first, rest) => {
            let msg: Message = std::iter::once(first).chain(rest).map(frame).collect();
            return (Item::Message(msg.clone()), Item::Message(msg));
        }
        ArbItem::Ping { ttl, context } => Command::Ping {
            ttl,
            context: limit(context, MAX_PING_CONTEXT),
        },
        ArbItem::Pong(context) => Command::Pong {
            context: limit(context, MAX_PING_CONTEXT),
        },
        ArbItem::Subscribe(topic) => Command::Subscribe(frame(topic)),
        ArbItem::Cancel(topic) => Command::Cancel(frame(topic)),
        ArbItem::Error(reason) => Command::Error(reason),
        ArbItem::Ready(props) => {
            let mut p = Properties::new();
            for (n, v) in props {
                p.insert(&name(&n), v).expect("valid name");
            }
            Command::Ready(p)
        }
        ArbItem::Unknown(n) => {
            let name = name(&n);
            if ["READY", "ERROR", "PING", "PONG", "SUBSCRIBE", "CANCEL"].contains(&name.as_str()) {
                Command::Subscribe(Bytes::from(name))
            } else {
                Command::Unknown {
                    name: Bytes::from(name),
                }
            }
        }
    };
    let item = Item::Command(cmd);
    // ERROR carries at most 255 bytes of reason.
    let expected = after_the_wire(&item);
    (item, expected)
}

/// Writes out `buf` the way a writer would: `io_slices` into `slots` slots, then a
/// partial write of the next size from `writes`.
fn drain(buf: &mut SendBuffer, slots: usize, writes: &[u16]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut sizes = writes.iter().map(|&w| usize::from(w).max(1)).cycle();
    while !buf.is_empty() {
        let mut budget = sizes.next().unwrap_or(usize::MAX);
        let mut written = 0;
        {
            let mut slices = vec![IoSlice::new(&[]); slots];
            let n = buf.io_slices(&mut slices);
            assert!(n > 0, "pending bytes but no slices");
            for s in &slices[..n] {
                let take = s.len().min(budget);
                out.extend_from_slice(&s[..take]);
                written += take;
                budget -= take;
                if budget == 0 {
                    break;
                }
            }
        }
        let before = buf.len();
        buf.advance(written);
        assert_eq!(buf.len(), before - written);
    }
    out
}

fuzz_target!(|input: Input| {
    for (more, command, len) in input.headers {
        let header = FrameHeader { more, command, len };
        let mut out = [0; MAX_HEADER_LEN];
        let n = header.encode(&mut out);
        assert_eq!(n == 2, len <= 255, "{header:?} took {n} bytes");
        let parsed = FrameHeader::parse(&out[..n]);
        if command && more {
            assert_eq!(parsed, Err(ProtocolError::CommandWithMore));
        } else {
            assert_eq!(parsed, Ok(Some((header, n))));
            assert_eq!(FrameHeader::parse(&out[..n - 1]), Ok(None));
        }
    }

    let (items, expected): (Vec<Item>, Vec<Item>) = input.items.into_iter().map(build).unzip();
    let mut buf = SendBuffer::new();
    let mut flat = BytesMut::new();
    for item in &items {
        match item {
            Item::Message(m) => {
                buf.push_message(m);
                put_message(&mut flat, m);
            }
            Item::Command(c) => {
                buf.push_command(c);
                c.encode(&mut flat);
            }
        }
    }
    assert_eq!(buf.len(), flat.len());
    assert_eq!(
        buf.to_vec(),
        &flat[..],
        "SendBuffer and put_message/encode disagree"
    );

    let run = decode_in_pieces(
        &flat,
        &conduit_proto_fuzz::piece_sizes(&input.pieces),
        DEFAULT_MAX_MESSAGE_SIZE,
    );
    let want = Run {
        items: expected,
        outcome: Outcome::Pending {
            rest: Vec::new(),
            between_messages: true,
        },
    };
    assert_eq!(run, want, "encoded items did not decode to themselves");

    let slots = usize::from(input.slots % 8) + 1;
    assert_eq!(drain(&mut buf, slots, &input.writes), &flat[..]);
});
