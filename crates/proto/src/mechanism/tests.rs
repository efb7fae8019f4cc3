//! Client and server handshakes run against each other in memory, with a tiny
//! driver (as quinn-proto's `Pair::drive`), and against hostile input.

use bytes::BytesMut;

use super::*;
use crate::Command;
use crate::decoder::{Item, MAX_COMMAND_SIZE};
use crate::error::Fault;
use crate::greeting::{GREETING_LEN, Greeting};
use crate::handshake::{Handshake, LocalInfo, PeerInfo};
use crate::message::Message;
use crate::socket_type::SocketType;

fn handshake(
    mechanism: Mechanism,
    auth: Option<Arc<dyn Authenticator>>,
    st: SocketType,
) -> Handshake {
    Handshake::with_security(
        LocalInfo::new(st),
        Security {
            mechanism,
            authenticator: auth,
        },
        PeerAddress {
            address: "127.0.0.1".into(),
            process: None,
        },
    )
}

type Outcome = Result<Option<PeerInfo>, ProtocolError>;

/// Runs two handshakes to the end, delivering `step` bytes at a time; returns
/// each side's outcome and what is left in each inbox.
fn drive(a: &mut Handshake, b: &mut Handshake, step: usize) -> (Outcome, Outcome) {
    let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
    let mut out = SendBuffer::new();
    a.start(&mut out);
    to_b.extend(out.to_vec());
    out.clear();
    b.start(&mut out);
    to_a.extend(out.to_vec());
    let (mut in_a, mut in_b) = (BytesMut::new(), BytesMut::new());
    let (mut ra, mut rb): (Outcome, Outcome) = (Ok(None), Ok(None));
    for _ in 0..10_000 {
        step_side(a, &mut to_a, &mut in_a, &mut ra, &mut to_b, step);
        step_side(b, &mut to_b, &mut in_b, &mut rb, &mut to_a, step);
        let done = |r: &Outcome| !matches!(r, Ok(None));
        if (done(&ra) && done(&rb)) || ra.is_err() || rb.is_err() {
            break;
        }
    }
    (ra, rb)
}

fn step_side(
    hs: &mut Handshake,
    queue: &mut Vec<u8>,
    inbox: &mut BytesMut,
    result: &mut Outcome,
    back: &mut Vec<u8>,
    step: usize,
) {
    if !matches!(result, Ok(None)) {
        return;
    }
    let n = step.min(queue.len());
    inbox.extend(queue.drain(..n));
    *result = hs.handle_input(inbox);
    let mut out = SendBuffer::new();
    hs.poll_output(&mut out);
    back.extend(out.to_vec());
}

#[derive(Debug)]
struct Allow(Vec<CurvePublicKey>);

impl Authenticator for Allow {
    fn authenticate(&self, req: &AuthRequest<'_>) -> Result<Option<String>, String> {
        assert_eq!(req.peer.address, "127.0.0.1");
        match req.credentials {
            Credentials::Curve { client_key } if self.0.contains(&client_key) => {
                Ok(Some(format!("key {client_key}")))
            }
            Credentials::Plain {
                username: "alice",
                password: "secret",
            } => Ok(Some("alice".into())),
            _ => Err("not on the list".into()),
        }
    }
}

fn curve_pair(
    client_keys: Option<CurveKeyPair>,
    auth: Option<Arc<dyn Authenticator>>,
) -> (Handshake, Handshake, CurveKeyPair) {
    let server_keys = CurveKeyPair::generate();
    let client = handshake(
        Mechanism::CurveClient {
            server_key: server_keys.public,
            keys: client_keys,
        },
        None,
        SocketType::Dealer,
    );
    let server = handshake(
        Mechanism::CurveServer {
            keys: server_keys.clone(),
        },
        auth,
        SocketType::Router,
    );
    (client, server, server_keys)
}

fn completed_curve() -> (Cipher, Cipher) {
    let (mut c, mut s, _) = curve_pair(None, None);
    let (rc, rs) = drive(&mut c, &mut s, usize::MAX);
    assert_eq!(rc.unwrap().unwrap().socket_type, SocketType::Router);
    assert_eq!(rs.unwrap().unwrap().socket_type, SocketType::Dealer);
    (c.take_cipher().unwrap(), s.take_cipher().unwrap())
}

fn open_all(opener: &mut Opener, wire: &[u8]) -> Result<Vec<Item>, ProtocolError> {
    let mut src = BytesMut::from(wire);
    let mut items = Vec::new();
    while let Some(item) = opener.decode(&mut src)? {
        items.push(item);
    }
    assert!(src.is_empty());
    Ok(items)
}

#[test]
fn curve_handshake_completes_at_every_piece_size() {
    for step in [1, 2, 7, 64, 200, usize::MAX] {
        let client_keys = CurveKeyPair::generate();
        let (mut c, mut s, _) = curve_pair(
            Some(client_keys.clone()),
            Some(Arc::new(Allow(vec![client_keys.public]))),
        );
        let (rc, rs) = drive(&mut c, &mut s, step);
        let server_side = rs.unwrap().expect("server done");
        assert_eq!(
            server_side.user_id,
            Some(format!("key {}", client_keys.public))
        );
        assert!(rc.unwrap().is_some(), "step {step}");
    }
}

#[test]
fn curve_messages_travel_sealed_both_ways() {
    let (client, server) = completed_curve();
    let (mut c_seal, mut c_open) = client.split();
    let (mut s_seal, mut s_open) = server.split();
    let big = Message::from(vec![7u8; 1 << 20]);
    let multipart = Message::from_frames(["one", "", "three"]);
    let mut wire = SendBuffer::new();
    c_seal.seal_message(&multipart, &mut wire);
    c_seal.seal_command(
        &Command::Ping {
            ttl: 10,
            context: "ctx".into(),
        },
        &mut wire,
    );
    c_seal.seal_message(&big, &mut wire);
    let bytes = wire.to_vec();
    // Nothing of the payload is in clear.
    assert!(!bytes.windows(5).any(|w| w == b"three"));
    assert!(!bytes.windows(64).any(|w| w == [7u8; 64]));
    let items = open_all(&mut s_open, &bytes).unwrap();
    assert_eq!(
        items,
        vec![
            Item::Message(multipart),
            Item::Command(Command::Ping {
                ttl: 10,
                context: "ctx".into()
            }),
            Item::Message(big)
        ]
    );
    let mut back = SendBuffer::new();
    s_seal.seal_message(&Message::from("reply"), &mut back);
    assert_eq!(
        open_all(&mut c_open, &back.to_vec()).unwrap(),
        vec![Item::Message(Message::from("reply"))]
    );
}

#[test]
fn opening_works_at_every_split_point() {
    let (client, server) = completed_curve();
    let (mut seal, _) = client.split();
    let (_, mut open) = server.split();
    let mut wire = SendBuffer::new();
    seal.seal_message(&Message::from_frames(["a", "bc"]), &mut wire);
    let bytes = wire.to_vec();
    let mut src = BytesMut::new();
    let mut got = None;
    for &b in &bytes {
        src.extend_from_slice(&[b]);
        if let Some(item) = open.decode(&mut src).unwrap() {
            got = Some(item);
        }
    }
    assert_eq!(got, Some(Item::Message(Message::from_frames(["a", "bc"]))));
}

#[test]
fn a_replayed_or_altered_box_is_refused() {
    let (client, server) = completed_curve();
    let (mut seal, _) = client.split();
    let (_, mut open) = server.split();
    let mut wire = SendBuffer::new();
    seal.seal_message(&Message::from("once"), &mut wire);
    let bytes = wire.to_vec();
    open_all(&mut open, &bytes).unwrap();
    assert!(matches!(
        open_all(&mut open, &bytes),
        Err(ProtocolError::ReplayedNonce { .. })
    ));

    let mut wire = SendBuffer::new();
    seal.seal_message(&Message::from("altered"), &mut wire);
    let mut bytes = wire.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(matches!(
        open_all(&mut open, &bytes),
        Err(ProtocolError::Cryptographic(_))
    ));
}

#[test]
fn clear_traffic_after_a_curve_handshake_is_refused() {
    let (_, server) = completed_curve();
    let (_, mut open) = server.split();
    assert!(matches!(
        open_all(&mut open, b"\x00\x05hello"),
        Err(ProtocolError::MalformedCommand { .. })
    ));
    let mut small = server_opener_with_limit(10);
    // A frame announcing more than the maximum is refused before it arrives.
    let mut src = BytesMut::from(&b"\x02\x00\x00\x00\x00\x01\x00\x00\x00"[..]);
    assert!(matches!(
        small.decode(&mut src),
        Err(ProtocolError::MessageTooLarge { .. })
    ));
}

fn server_opener_with_limit(limit: usize) -> Opener {
    let (_, server) = completed_curve();
    let (_, mut open) = server.split();
    open.set_max_message_size(limit);
    open
}

#[test]
fn a_wrong_server_key_fails_at_hello() {
    let (_, mut server, _) = curve_pair(None, None);
    let mut client = handshake(
        Mechanism::CurveClient {
            server_key: CurveKeyPair::generate().public,
            keys: None,
        },
        None,
        SocketType::Dealer,
    );
    let (_, rs) = drive(&mut client, &mut server, usize::MAX);
    assert!(matches!(rs, Err(ProtocolError::Cryptographic(_))), "{rs:?}");
}

#[test]
fn an_unknown_client_key_is_refused_with_a_reason() {
    let (mut c, mut s, _) = curve_pair(None, Some(Arc::new(Allow(vec![]))));
    let (_, rs) = drive(&mut c, &mut s, usize::MAX);
    let err = rs.unwrap_err();
    assert_eq!(err, ProtocolError::AccessDenied("not on the list".into()));
    assert_eq!(err.fault(), Fault::Refused);
    assert_eq!(
        err.error_reason().unwrap(),
        "access denied: not on the list"
    );
}

#[test]
fn a_cookie_from_another_connection_is_refused() {
    // Connection 1 runs to INITIATE; its INITIATE is then offered to the
    // server of connection 2, which sent its own cookie.
    let server_keys = CurveKeyPair::generate();
    let client_of = || {
        handshake(
            Mechanism::CurveClient {
                server_key: server_keys.public,
                keys: None,
            },
            None,
            SocketType::Dealer,
        )
    };
    let server_of = || {
        handshake(
            Mechanism::CurveServer {
                keys: server_keys.clone(),
            },
            None,
            SocketType::Router,
        )
    };
    let run_to_initiate = |c: &mut Handshake, s: &mut Handshake| -> Vec<u8> {
        let mut out = SendBuffer::new();
        c.start(&mut out);
        let mut to_s = BytesMut::from(&out.to_vec()[..]);
        assert!(s.handle_input(&mut to_s).unwrap().is_none());
        let mut welcome = SendBuffer::new();
        s.start(&mut welcome);
        s.poll_output(&mut welcome);
        let mut to_c = BytesMut::from(&welcome.to_vec()[..]);
        assert!(c.handle_input(&mut to_c).unwrap().is_none());
        let mut initiate = SendBuffer::new();
        c.poll_output(&mut initiate);
        initiate.to_vec()
    };
    let (mut c1, mut s1) = (client_of(), server_of());
    let (mut c2, mut s2) = (client_of(), server_of());
    let initiate1 = run_to_initiate(&mut c1, &mut s1);
    let _initiate2 = run_to_initiate(&mut c2, &mut s2);
    let mut src = BytesMut::from(&initiate1[..]);
    assert_eq!(
        s2.handle_input(&mut src),
        Err(ProtocolError::Cryptographic(
            "the INITIATE cookie is not this connection's"
        ))
    );
}

#[test]
fn plain_checks_the_password_and_names_the_user() {
    let plain = |password: &str| {
        let client = handshake(
            Mechanism::PlainClient {
                username: "alice".into(),
                password: password.into(),
            },
            None,
            SocketType::Req,
        );
        let server = handshake(
            Mechanism::PlainServer,
            Some(Arc::new(Allow(vec![]))),
            SocketType::Rep,
        );
        (client, server)
    };
    let (mut c, mut s) = plain("secret");
    let (rc, rs) = drive(&mut c, &mut s, 3);
    assert_eq!(rs.unwrap().unwrap().user_id.as_deref(), Some("alice"));
    assert_eq!(rc.unwrap().unwrap().socket_type, SocketType::Rep);
    assert!(c.take_cipher().is_none());

    let (mut c, mut s) = plain("guess");
    let (_, rs) = drive(&mut c, &mut s, usize::MAX);
    assert_eq!(
        rs,
        Err(ProtocolError::AccessDenied("not on the list".into()))
    );
}

#[test]
fn mismatched_mechanisms_and_roles_are_refused() {
    let keys = CurveKeyPair::generate();
    let mut null = handshake(Mechanism::Null, None, SocketType::Pair);
    let mut curve = handshake(
        Mechanism::CurveServer { keys: keys.clone() },
        None,
        SocketType::Pair,
    );
    let (rn, rc) = drive(&mut null, &mut curve, usize::MAX);
    assert!(matches!(rc, Err(ProtocolError::MechanismMismatch { ref peer }) if peer == "NULL"));
    assert!(matches!(rn, Err(ProtocolError::MechanismMismatch { ref peer }) if peer == "CURVE"));

    // Two clients: each gets the other's HELLO where it expects WELCOME.
    let client = || {
        handshake(
            Mechanism::CurveClient {
                server_key: keys.public,
                keys: None,
            },
            None,
            SocketType::Pair,
        )
    };
    let (r1, _) = drive(&mut client(), &mut client(), usize::MAX);
    assert_eq!(
        r1,
        Err(ProtocolError::UnexpectedHandshakeCommand {
            expected: "WELCOME",
            received: "HELLO".into()
        })
    );
}

fn curve_fresh() -> Handshake {
    handshake(
        Mechanism::CurveServer {
            keys: CurveKeyPair::generate(),
        },
        None,
        SocketType::Pair,
    )
}

/// A CURVE server fed `commands` (whole command frames) after a client greeting.
fn server_fed(commands: &[u8]) -> Outcome {
    let mut server = curve_fresh();
    let mut input = BytesMut::from(&Greeting::ours_for("CURVE", false)[..]);
    input.extend_from_slice(commands);
    server.handle_input(&mut input)
}

fn command_frame(body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    crate::frame::put_frame(&mut out, false, true, body);
    out.to_vec()
}

#[test]
fn hostile_hellos_are_dropped_with_a_reason() {
    let mut hello = b"\x05HELLO\x01\x00".to_vec();
    hello.resize(200, 0);
    let truncated = command_frame(&hello[..199]);
    let bad_version = {
        let mut h = hello.clone();
        h[6] = 2;
        command_frame(&h)
    };
    let forged_box = command_frame(&hello);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (truncated, "malformed HELLO command: not 200 bytes"),
        (
            bad_version,
            "malformed HELLO command: not CurveZMQ version 1.0",
        ),
        (
            forged_box,
            "CURVE: cannot open the client's HELLO box: the client has another server key",
        ),
        (
            command_frame(b"\x08INITIATE"),
            "expected HELLO during the handshake, received INITIATE",
        ),
        (
            b"\x00\x02hi".to_vec(),
            "message frame received before the handshake completed",
        ),
        (
            command_frame(b"\x05ERROR\x03bye"),
            "peer reported an error: bye",
        ),
    ];
    for (input, reason) in cases {
        let err = server_fed(&input).unwrap_err();
        assert_eq!(err.to_string(), reason);
    }
    // Oversized metadata: refused from its header, before the body arrives.
    let mut huge = vec![0x06];
    huge.extend_from_slice(&((MAX_COMMAND_SIZE as u64) + 1).to_be_bytes());
    assert!(matches!(
        server_fed(&huge),
        Err(ProtocolError::CommandTooLarge { .. })
    ));
}

#[test]
fn hostile_initiates_are_dropped_with_a_reason() {
    // A real HELLO, then INITIATEs that are short or whose boxes do not open.
    let keys = CurveKeyPair::generate();
    let client = handshake(
        Mechanism::CurveClient {
            server_key: keys.public,
            keys: None,
        },
        None,
        SocketType::Pair,
    );
    let mut hello = SendBuffer::new();
    client.start(&mut hello);
    for (initiate, fault) in [
        (
            vec![0u8; 100],
            "malformed INITIATE command: shorter than 257 bytes",
        ),
        (
            vec![0u8; 300],
            "CURVE: the INITIATE cookie is not this connection's",
        ),
    ] {
        let mut server = handshake(
            Mechanism::CurveServer { keys: keys.clone() },
            None,
            SocketType::Pair,
        );
        let mut input = BytesMut::from(&hello.to_vec()[..]);
        assert!(server.handle_input(&mut input).unwrap().is_none());
        let mut body = b"\x08INITIATE".to_vec();
        body.extend_from_slice(&initiate);
        let mut input = BytesMut::from(&command_frame(&body)[..]);
        assert_eq!(
            server.handle_input(&mut input).unwrap_err().to_string(),
            fault
        );
    }
    assert_eq!(GREETING_LEN, 64);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn message() -> impl Strategy<Value = Message> {
        proptest::collection::vec(
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..40),
                proptest::collection::vec(any::<u8>(), 250..300),
            ],
            1..4,
        )
        .prop_map(Message::from_frames)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever is sealed opens to itself, in order, whatever the split
        /// points of the stream.
        #[test]
        fn sealed_messages_open_to_themselves(
            messages in proptest::collection::vec(message(), 1..8),
            piece in 1usize..300,
        ) {
            let (client, server) = completed_curve();
            let (mut seal, _) = client.split();
            let (_, mut open) = server.split();
            let mut wire = SendBuffer::new();
            for m in &messages {
                seal.seal_message(m, &mut wire);
            }
            let bytes = wire.to_vec();
            let mut src = BytesMut::new();
            let mut got = Vec::new();
            for chunk in bytes.chunks(piece) {
                src.extend_from_slice(chunk);
                while let Some(item) = open.decode(&mut src).unwrap() {
                    got.push(item);
                }
            }
            let expected: Vec<Item> = messages.into_iter().map(Item::Message).collect();
            prop_assert_eq!(got, expected);
            prop_assert!(src.is_empty() && open.is_between_messages());
        }
    }
}
