//! CURVE's data phase: sealed messages, altered by the fuzzer, then opened.
//!
//! Input layout:
//! - byte 0: the piece size the sealed bytes arrive in (see `piece_sizes`);
//! - byte 1: how many alterations follow (at most 8), each 3 bytes: a
//!   position (2 bytes, taken modulo the stream's length) and a value to
//!   XOR there;
//! - the rest: message bodies separated by 0xFF (each a one-frame message),
//!   and all of them again as one multipart message.
//!
//! Checks: no panic, bounded memory; what the opener delivers is always a
//! prefix of what was sealed, in order (an altered, replayed or reordered
//! box is never delivered as something else); with no alteration, all of it
//! arrives, and nothing is left over.
#![no_main]

use bytes::BytesMut;
use conduit_proto::{
    CurveKeyPair, Handshake, Item, LocalInfo, Mechanism, Message, PeerAddress, Security,
    SendBuffer, SocketType,
};
use conduit_proto_fuzz::{capacity_bound, piece_sizes};
use libfuzzer_sys::fuzz_target;

/// A CURVE client and server after their handshake: (client, server) ciphers.
fn ciphers() -> (conduit_proto::Cipher, conduit_proto::Cipher) {
    let keys = CurveKeyPair::generate();
    let side = |mechanism| {
        Handshake::with_security(
            LocalInfo::new(SocketType::Pair),
            Security {
                mechanism,
                authenticator: None,
            },
            PeerAddress::default(),
        )
    };
    let mut client = side(Mechanism::CurveClient {
        server_key: keys.public,
        keys: None,
    });
    let mut server = side(Mechanism::CurveServer { keys });
    let (mut to_s, mut to_c) = (SendBuffer::new(), SendBuffer::new());
    client.start(&mut to_s);
    server.start(&mut to_c);
    let (mut in_s, mut in_c) = (BytesMut::new(), BytesMut::new());
    let (mut c_done, mut s_done) = (false, false);
    for _ in 0..4 {
        in_s.extend_from_slice(&to_s.to_vec());
        to_s.clear();
        if !s_done {
            s_done = server.handle_input(&mut in_s).unwrap().is_some();
            server.poll_output(&mut to_c);
        }
        in_c.extend_from_slice(&to_c.to_vec());
        to_c.clear();
        if !c_done {
            c_done = client.handle_input(&mut in_c).unwrap().is_some();
            client.poll_output(&mut to_s);
        }
    }
    assert!(c_done && s_done);
    (client.take_cipher().unwrap(), server.take_cipher().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let [piece, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n).min(8);
    if rest.len() < 3 * n {
        return;
    }
    let (alterations, payload) = rest.split_at(3 * n);
    let mut sent: Vec<Message> = payload
        .split(|b| *b == 0xFF)
        .map(|part| Message::from(part.to_vec()))
        .collect();
    sent.push(Message::from_frames(
        payload.split(|b| *b == 0xFF).map(|p| p.to_vec()),
    ));

    let (client, server) = ciphers();
    let (mut seal, _) = client.split();
    let (_, mut open) = server.split();
    let mut wire = SendBuffer::new();
    for m in &sent {
        seal.seal_message(m, &mut wire);
    }
    let mut wire = wire.to_vec();
    let mut altered = false;
    for a in alterations.chunks_exact(3) {
        let at = usize::from(u16::from_be_bytes([a[0], a[1]])) % wire.len();
        altered |= a[2] != 0;
        wire[at] ^= a[2];
    }

    let piece = piece_sizes(&[*piece])[0];
    let mut src = BytesMut::new();
    let mut got = Vec::new();
    let mut failed = false;
    let mut fed = 0;
    'feed: for chunk in wire.chunks(piece) {
        src.extend_from_slice(chunk);
        fed += chunk.len();
        loop {
            match open.decode(&mut src) {
                Ok(Some(Item::Message(m))) => got.push(m),
                Ok(Some(Item::Command(c))) => panic!("sealed no command, opened {c:?}"),
                Ok(None) => break,
                Err(_) => {
                    failed = true;
                    break 'feed;
                }
            }
        }
        let bound = capacity_bound(fed, conduit_proto::DEFAULT_MAX_MESSAGE_SIZE);
        assert!(src.capacity() <= bound);
    }
    assert!(got.len() <= sent.len());
    assert_eq!(got[..], sent[..got.len()], "delivered something not sent");
    if !altered {
        assert!(!failed);
        assert_eq!(got, sent);
        assert!(src.is_empty());
    }
});
