//! The PLAIN and CURVE handshakes, both roles, on arbitrary peer bytes.
//!
//! Input layout:
//! - byte 0: which side we play (`% 4`): PLAIN server, PLAIN client, CURVE
//!   server, CURVE client;
//! - byte 1: bit 0 set: a real CURVE client's greeting and HELLO (for the
//!   CURVE server) or the peer's greeting (otherwise) come first, so the
//!   fuzzer starts past the parts it cannot forge; clear: raw bytes only;
//! - byte 2: the piece size the bytes arrive in (see `piece_sizes`);
//! - the rest: the peer's bytes.
//!
//! Checks: no panic; the same result whether the bytes arrive whole or in
//! pieces; the receive buffer stays within the memory bound; what we answer
//! is bounded; error reasons are sendable; a PLAIN server that completes has
//! asked its authenticator and names the user it let in.
#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use conduit_proto::{
    AuthRequest, Authenticator, Credentials, CurveKeyPair, Greeting, Handshake, LocalInfo,
    Mechanism, PeerAddress, PeerInfo, ProtocolError, Security, SendBuffer, SocketType,
};
use conduit_proto_fuzz::{capacity_bound, check_error_reason, piece_sizes};
use libfuzzer_sys::fuzz_target;

/// Lets in PLAIN user "u" with password "p" and every CURVE key.
#[derive(Debug)]
struct Gate;

impl Authenticator for Gate {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Option<String>, String> {
        match req.credentials {
            Credentials::Plain {
                username: "u",
                password: "p",
            } => Ok(Some("u".into())),
            Credentials::Plain { .. } => Err("no".into()),
            _ => Ok(None),
        }
    }
}

fn keys() -> &'static CurveKeyPair {
    static KEYS: std::sync::OnceLock<CurveKeyPair> = std::sync::OnceLock::new();
    KEYS.get_or_init(CurveKeyPair::generate)
}

fn ours(side: u8) -> Handshake {
    let mechanism = match side % 4 {
        0 => Mechanism::PlainServer,
        1 => Mechanism::PlainClient {
            username: "u".into(),
            password: "p".into(),
        },
        2 => Mechanism::CurveServer {
            keys: keys().clone(),
        },
        _ => Mechanism::CurveClient {
            server_key: keys().public,
            keys: None,
        },
    };
    Handshake::with_security(
        LocalInfo::new(SocketType::Pair),
        Security {
            mechanism,
            authenticator: Some(Arc::new(Gate)),
        },
        PeerAddress::default(),
    )
}

type Outcome = (Result<Option<PeerInfo>, ProtocolError>, usize);

fn feed(side: u8, input: &[u8], piece: usize) -> Outcome {
    let mut hs = ours(side);
    let mut out = SendBuffer::new();
    hs.start(&mut out);
    let mut src = BytesMut::new();
    let mut fed = 0;
    for chunk in input.chunks(piece.max(1)) {
        src.extend_from_slice(chunk);
        fed += chunk.len();
        let result = hs.handle_input(&mut src);
        hs.poll_output(&mut out);
        let bound = capacity_bound(fed, 0);
        assert!(src.capacity() <= bound, "buffer {} > {bound}", src.capacity());
        // Our answers: a greeting and a few commands, whatever came in.
        assert!(out.len() <= 64 + 4096, "answered {} bytes", out.len());
        match result {
            Ok(None) => {}
            other => return (other, out.len()),
        }
    }
    (Ok(None), out.len())
}

fuzz_target!(|data: &[u8]| {
    let [side, mode, piece, rest @ ..] = data else {
        return;
    };
    let mut input = Vec::new();
    if mode & 1 == 1 {
        match side % 4 {
            2 => {
                // A real client's greeting and HELLO.
                let client = Handshake::with_security(
                    LocalInfo::new(SocketType::Pair),
                    Security {
                        mechanism: Mechanism::CurveClient {
                            server_key: keys().public,
                            keys: None,
                        },
                        authenticator: None,
                    },
                    PeerAddress::default(),
                );
                let mut out = SendBuffer::new();
                client.start(&mut out);
                input.extend(out.to_vec());
            }
            s => input.extend_from_slice(&Greeting::ours_for(
                if s < 2 { "PLAIN" } else { "CURVE" },
                s % 2 == 1,
            )),
        }
    }
    input.extend_from_slice(rest);
    let piece = piece_sizes(&[*piece])[0];
    let whole = feed(*side, &input, input.len());
    let split = feed(*side, &input, piece);
    // The CURVE server answers HELLO with random keys: compare outcomes only.
    assert_eq!(whole.0, split.0, "split points changed the handshake");
    match whole.0 {
        Ok(Some(peer)) => {
            if side % 4 == 0 {
                assert_eq!(peer.user_id.as_deref(), Some("u"));
            }
        }
        Err(e) => check_error_reason(&e),
        Ok(None) => {}
    }
});
