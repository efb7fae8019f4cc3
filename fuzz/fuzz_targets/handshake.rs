//! The handshake (peer greeting, then READY) on arbitrary peer bytes.
//!
//! Input layout:
//! - byte 0: bit 0 set: the peer's bytes start with our own valid greeting and the
//!   rest is what follows it; clear: the bytes are raw, greeting included;
//! - byte 1: our socket type (`byte % 11`, in `SocketType::ALL` order; the
//!   robustness issue's case, PAIR, is 10);
//! - byte 2: the piece size the bytes arrive in (see `piece_sizes`);
//! - the rest: the peer's bytes.
//!
//! Checks: no panic; the same result and leftover bytes whether the bytes arrive
//! whole or in pieces; the receive buffer stays within the memory bound; an
//! accepted peer is compatible, its socket type and identity are what its READY
//! said and its greeting is what it sent; the traffic after READY goes through the
//! frame decoder; error reasons are sendable.
#![no_main]

use bytes::BytesMut;
use conduit_proto::{
    DEFAULT_MAX_MESSAGE_SIZE, GREETING_LEN, Greeting, Handshake, IDENTITY, LocalInfo, PeerInfo,
    ProtocolError, SOCKET_TYPE, SocketType,
};
use conduit_proto_fuzz::{
    capacity_bound, check_error_reason, check_reencodes, decode_whole, piece_sizes,
};
use libfuzzer_sys::fuzz_target;

type Outcome = (Result<Option<PeerInfo>, ProtocolError>, Vec<u8>);

/// Feeds `input` in pieces of `piece` bytes until the handshake ends; returns its
/// result and the bytes it did not consume (left in the buffer or never fed).
fn feed(local: SocketType, input: &[u8], piece: usize) -> Outcome {
    let mut hs = Handshake::new(LocalInfo::new(local));
    let mut src = BytesMut::new();
    let mut fed = 0;
    for chunk in input.chunks(piece.max(1)) {
        src.extend_from_slice(chunk);
        fed += chunk.len();
        let result = hs.handle_input(&mut src);
        let bound = capacity_bound(fed, 0);
        assert!(
            src.capacity() <= bound,
            "handshake buffer grew to {} bytes after {fed} bytes fed (bound {bound})",
            src.capacity()
        );
        match result {
            Ok(None) => {}
            Err(ref e) => {
                if fed >= GREETING_LEN
                    && Greeting::parse(&input[..GREETING_LEN]).is_ok()
                    && !matches!(e, ProtocolError::PeerError(_))
                {
                    // After the greeting, failures other than the peer's own ERROR
                    // are reported to the peer.
                    assert!(e.error_reason().is_some(), "{e:?}");
                }
                return (result, [&src[..], &input[fed..]].concat());
            }
            Ok(Some(_)) => return (result, [&src[..], &input[fed..]].concat()),
        }
    }
    (Ok(None), src.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let [mode, local, piece, rest @ ..] = data else {
        return;
    };
    let local = SocketType::ALL[usize::from(local % 11)];
    let input = if mode & 1 == 1 {
        [&Greeting::ours()[..], rest].concat()
    } else {
        rest.to_vec()
    };
    let piece = piece_sizes(&[*piece])[0];

    let whole = feed(local, &input, input.len());
    let split = feed(local, &input, piece);
    assert_eq!(whole, split, "split points changed the handshake");

    match whole {
        (Ok(Some(peer)), leftover) => {
            assert!(local.is_compatible_with(peer.socket_type));
            let announced = peer.properties.get(SOCKET_TYPE).expect("Socket-Type");
            assert_eq!(&announced[..], peer.socket_type.as_str().as_bytes());
            assert_eq!(
                peer.identity,
                peer.properties.get(IDENTITY).cloned().unwrap_or_default()
            );
            let greeting = Greeting::parse(&input[..GREETING_LEN]);
            assert_eq!(greeting, Ok(Some(peer.greeting)));
            // The rest is the first traffic: decode it as the connection would.
            let run = decode_whole(&leftover, DEFAULT_MAX_MESSAGE_SIZE);
            for item in &run.items {
                check_reencodes(item, DEFAULT_MAX_MESSAGE_SIZE);
            }
        }
        (Err(err), _) => check_error_reason(&err),
        (Ok(None), leftover) => assert!(leftover.len() <= input.len()),
    }
});
