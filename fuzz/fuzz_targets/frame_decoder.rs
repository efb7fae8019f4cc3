//! The frame decoder on arbitrary traffic.
//!
//! Input layout (so a hand-made seed is a short header and then wire bytes):
//! - byte 0: how many piece-size bytes follow the limit (`byte % 16`);
//! - bytes 1-2: the maximum message size, big-endian (`0xFFFF`: the default, 64 MiB);
//! - then the piece-size bytes (see `piece_sizes`; none means one byte at a time);
//! - the rest is what the peer sent.
//!
//! Checks: no panic; the same items and the same end (error, or leftover bytes and
//! decoder state) whether the bytes arrive whole or in those pieces; the receive
//! buffer stays within the memory bound; the same again when large bodies are
//! read in place, as the engine reads them; every message is within the limit; every
//! item re-encodes and decodes to itself; error reasons are sendable.
#![no_main]

use conduit_proto::{DEFAULT_MAX_MESSAGE_SIZE, Item, MAX_COMMAND_SIZE, MAX_HEADER_LEN};
use conduit_proto_fuzz::{
    Outcome, check_error_reason, check_reencodes, decode_in_pieces, decode_in_place, decode_whole,
    piece_sizes,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [count, hi, lo, rest @ ..] = data else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (sizes, wire) = rest.split_at(count);
    let max = match u16::from_be_bytes([*hi, *lo]) {
        0xFFFF => DEFAULT_MAX_MESSAGE_SIZE,
        n => usize::from(n),
    };
    let mut pieces = piece_sizes(sizes);
    if pieces.is_empty() {
        pieces.push(1);
    }

    let whole = decode_whole(wire, max);
    let split = decode_in_pieces(wire, &pieces, max);
    assert_eq!(whole, split, "split points changed the result");
    let in_place = decode_in_place(wire, &pieces, max);
    assert_eq!(
        whole, in_place,
        "reading large bodies in place changed the result"
    );

    for item in &whole.items {
        if let Item::Message(msg) = item {
            assert!(!msg.is_empty(), "a decoded message has no frames");
            assert!(msg.byte_len() <= max, "a decoded message is over the limit");
        }
        check_reencodes(item, max);
    }
    match &whole.outcome {
        Outcome::Failed(err) => check_error_reason(err),
        Outcome::Pending { rest, .. } => {
            // What is left is a strict prefix of one frame that passed the limits:
            // less than a header and the largest body we would accept.
            assert!(rest.len() < MAX_HEADER_LEN + max.max(MAX_COMMAND_SIZE));
        }
    }
});
