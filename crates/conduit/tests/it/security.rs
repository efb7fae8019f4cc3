//! CURVE and PLAIN: conduit against conduit and against libzmq (pyzmq), both
//! roles, tcp and ipc; refused peers get nothing through; nothing readable on
//! the wire.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use conduit::{
    AcceptTimeoutError, AuthPolicy, Certificate, Channel, ChannelBuilder, CurveKeyPair, Error,
    Message, ProtocolError, Socket, SocketType,
};

use crate::pyzmq::{Peer, bind_endpoint};
use crate::sockets::{endpoint, frames, recording, wait_event};

const SECOND: Duration = Duration::from_secs(1);

/// Multipart, empty, and 1 MiB: what every secured conversation carries.
fn conversation() -> Vec<Message> {
    vec![
        Message::from("hello"),
        Message::from(""),
        Message::from_frames(["multi", "", "part"]),
        Message::from(Bytes::from(
            (0..(1 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        )),
    ]
}

fn converse(channel: &Channel) {
    for m in conversation() {
        channel.send(m.clone()).unwrap();
        assert_eq!(channel.recv_timeout(20 * SECOND).unwrap(), m);
    }
}

fn our_endpoint(transport: &str, dir: &tempfile::TempDir) -> String {
    match transport {
        "tcp" => "tcp://127.0.0.1:0".to_owned(),
        _ => format!("ipc://{}/c.sock", dir.path().display()),
    }
}

fn protocol_error(e: &Error) -> &ProtocolError {
    match e {
        Error::Protocol(p) => p,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

/// The protocol error an `accept_timeout` failed with (not a timeout).
fn refused(e: &AcceptTimeoutError) -> &ProtocolError {
    match e {
        AcceptTimeoutError::Failed(e) => protocol_error(e),
        AcceptTimeoutError::Timeout => panic!("no peer came"),
    }
}

#[test]
fn curve_between_conduit_channels_names_the_allowed_client() {
    let server = CurveKeyPair::generate();
    let client = CurveKeyPair::generate();
    let client_public = client.public;
    let listener = ChannelBuilder::new()
        .curve_server(server.clone())
        .authenticator(AuthPolicy::new().allow_curve_key(client.public))
        .listen("tcp://127.0.0.1:0")
        .unwrap();
    let ep = listener.endpoint().to_string();
    let t = std::thread::spawn(move || {
        let ch = ChannelBuilder::new()
            .curve_client(server.public, Some(client))
            .connect(&ep)
            .unwrap();
        converse(&ch);
    });
    let ch = listener.accept().unwrap();
    assert_eq!(ch.peer().unwrap().user_id, Some(client_public.to_string()));
    for _ in conversation() {
        let m = ch.recv().unwrap();
        ch.send(m).unwrap();
    }
    t.join().unwrap();
}

#[test]
fn pyzmq_curve_client_talks_to_a_conduit_curve_server() {
    let server = CurveKeyPair::generate();
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let listener = ChannelBuilder::new()
            .curve_server(server.clone())
            .listen(&our_endpoint(transport, &dir))
            .unwrap();
        let ep = listener.endpoint().to_string();
        let key = server.public.to_string();
        let peer = Peer::start_with(
            &["PAIR", "connect", &ep, "echo", "4"],
            &[("CURVE_SERVERKEY", &key)],
        );
        let ch = listener.accept_timeout(20 * SECOND).unwrap();
        converse(&ch);
        peer.finish();
    }
}

#[test]
fn conduit_curve_client_talks_to_a_pyzmq_curve_server() {
    let server = CurveKeyPair::generate();
    let secret = server.secret.to_z85();
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let peer = Peer::start_with(
            &["PAIR", "bind", &bind_endpoint(transport, &dir), "echo", "4"],
            &[("CURVE_SERVER_SECRET", &secret)],
        );
        let ch = ChannelBuilder::new()
            .curve_client(server.public, None)
            .connect(peer.endpoint.as_deref().unwrap())
            .unwrap();
        converse(&ch);
        peer.finish();
    }
}

#[test]
fn pyzmq_checks_conduit_client_keys_against_its_certificate_directory() {
    let server = CurveKeyPair::generate();
    let allowed = CurveKeyPair::generate();
    let certs = tempfile::tempdir().unwrap();
    Certificate::save(&allowed, &certs.path().join("client")).unwrap();
    // pyzmq reads only the public certificate from the allow directory.
    std::fs::remove_file(certs.path().join("client.key_secret")).unwrap();
    let env = |_: ()| {
        [
            ("CURVE_SERVER_SECRET", server.secret.to_z85()),
            ("CURVE_ALLOW_DIR", certs.path().display().to_string()),
        ]
    };
    let start = |action: &[&str]| {
        let vars = env(());
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut args = vec!["PULL", "bind", "tcp://127.0.0.1:*"];
        args.extend(action);
        Peer::start_with(&args, &vars)
    };

    // The allowed key: its message arrives.
    let mut peer = start(&["recv", "1"]);
    let ch = ChannelBuilder::new()
        .socket_type(SocketType::Push)
        .curve_client(server.public, Some(allowed.clone()))
        .connect(peer.endpoint.as_deref().unwrap())
        .unwrap();
    ch.send(Message::from_frames(["signed", "in"])).unwrap();
    assert_eq!(frames(&peer.next_message()), ["signed", "in"]);
    peer.finish();
    drop(ch);

    // Another key: refused with libzmq's ZAP status, nothing arrives.
    let mut peer = start(&["quiet", "1500"]);
    let err = ChannelBuilder::new()
        .socket_type(SocketType::Push)
        .curve_client(server.public, None)
        .connect(peer.endpoint.as_deref().unwrap())
        .unwrap_err();
    assert!(
        matches!(protocol_error(&err), ProtocolError::PeerError(r) if r == "400"),
        "{err:?}"
    );
    assert_eq!(peer.next_line(), "NOTHING");
}

#[test]
fn a_conduit_curve_server_refuses_wrong_keys_and_null_peers() {
    let server = CurveKeyPair::generate();
    let allowed = CurveKeyPair::generate();
    let builder = ChannelBuilder::new()
        .curve_server(server.clone())
        .authenticator(AuthPolicy::new().allow_curve_key(allowed.public));
    // A listener per peer: a refused libzmq peer reconnects, and its next
    // attempt must not be taken for the next case's.
    let refused = |env: &[(&str, &str)]| -> Error {
        let listener = builder.listen("tcp://127.0.0.1:0").unwrap();
        let ep = listener.endpoint().to_string();
        // The peer sends at once; libzmq holds the message until the handshake,
        // which never completes.
        let peer = Peer::start_with(&["PUSH", "connect", &ep, "send", "1"], env);
        let err = match listener.accept_timeout(20 * SECOND).unwrap_err() {
            AcceptTimeoutError::Failed(e) => e,
            AcceptTimeoutError::Timeout => panic!("no peer came"),
        };
        drop(peer);
        err
    };
    let wrong_server_key = CurveKeyPair::generate().public.to_string();
    let err = refused(&[("CURVE_SERVERKEY", &wrong_server_key)]);
    assert!(
        matches!(protocol_error(&err), ProtocolError::Cryptographic(_)),
        "{err:?}"
    );
    let key = server.public.to_string();
    let err = refused(&[("CURVE_SERVERKEY", &key)]);
    assert!(
        matches!(protocol_error(&err), ProtocolError::AccessDenied(r) if r.contains("is not allowed")),
        "{err:?}"
    );
    // libzmq hangs up as soon as it sees our CURVE greeting, often before the
    // rest of its own has left.
    let err = refused(&[]);
    assert!(
        matches!(&err, Error::ClosedDuringHandshake)
            || matches!(&err, Error::Protocol(ProtocolError::MechanismMismatch { peer }) if peer == "NULL"),
        "{err:?}"
    );
    // The allowed client gets in.
    let listener = builder.listen("tcp://127.0.0.1:0").unwrap();
    let ep = listener.endpoint().to_string();
    let secret = allowed.secret.to_z85();
    let mut peer = Peer::start_with(
        &["PAIR", "connect", &ep, "echo", "1"],
        &[("CURVE_SERVERKEY", &key), ("CURVE_SECRET", &secret)],
    );
    let ch = listener.accept_timeout(20 * SECOND).unwrap();
    assert_eq!(ch.peer().unwrap().user_id, Some(allowed.public.to_string()));
    ch.send("after the refusals").unwrap();
    assert_eq!(
        ch.recv_timeout(20 * SECOND).unwrap().concat(),
        "after the refusals"
    );
    peer.stop();
}

#[test]
fn a_wrong_server_key_or_no_curve_fails_against_a_pyzmq_curve_server() {
    let server = CurveKeyPair::generate();
    let secret = server.secret.to_z85();
    let mut peer = Peer::start_with(
        &["PULL", "bind", "tcp://127.0.0.1:*", "quiet", "2500"],
        &[("CURVE_SERVER_SECRET", &secret)],
    );
    let ep = peer.endpoint.clone().unwrap();
    let wrong = ChannelBuilder::new()
        .socket_type(SocketType::Push)
        .curve_client(CurveKeyPair::generate().public, None)
        .handshake_timeout(2 * SECOND)
        .connect(&ep);
    assert!(wrong.is_err(), "a wrong server key was accepted");
    let null = ChannelBuilder::new()
        .socket_type(SocketType::Push)
        .handshake_timeout(2 * SECOND)
        .connect(&ep);
    assert!(null.is_err(), "a NULL client was accepted");
    assert_eq!(peer.next_line(), "NOTHING");
}

#[test]
fn plain_both_ways_with_right_and_wrong_passwords() {
    // pyzmq PLAIN server (ZAP checks the password), conduit client.
    let users = [("PLAIN_SERVER_USERS", "admin:secret")];
    let mut peer = Peer::start_with(&["PULL", "bind", "tcp://127.0.0.1:*", "recv", "1"], &users);
    let ch = ChannelBuilder::new()
        .socket_type(SocketType::Push)
        .plain_client("admin", "secret")
        .connect(peer.endpoint.as_deref().unwrap())
        .unwrap();
    ch.send("in clear, but let in").unwrap();
    assert_eq!(peer.next_message().concat(), "in clear, but let in");
    peer.finish();
    drop(ch);

    let mut peer = Peer::start_with(
        &["PULL", "bind", "tcp://127.0.0.1:*", "quiet", "1500"],
        &users,
    );
    let err = ChannelBuilder::new()
        .socket_type(SocketType::Push)
        .plain_client("admin", "guess")
        .connect(peer.endpoint.as_deref().unwrap())
        .unwrap_err();
    assert_eq!(
        protocol_error(&err),
        &ProtocolError::PeerError("400".into())
    );
    assert_eq!(peer.next_line(), "NOTHING");

    // conduit PLAIN server, pyzmq clients.
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let listener = ChannelBuilder::new()
            .socket_type(SocketType::Pull)
            .plain_server()
            .authenticator(AuthPolicy::new().plain_user("admin", "secret"))
            .listen(&our_endpoint(transport, &dir))
            .unwrap();
        let ep = listener.endpoint().to_string();
        let wrong = Peer::start_with(
            &["PUSH", "connect", &ep, "send", "1"],
            &[("PLAIN_USER", "admin"), ("PLAIN_PASSWORD", "guess")],
        );
        let err = listener.accept_timeout(20 * SECOND).unwrap_err();
        assert_eq!(
            refused(&err),
            &ProtocolError::AccessDenied("unknown user or wrong password".into())
        );
        drop(wrong);
        let right = Peer::start_with(
            &["PUSH", "connect", &ep, "send", "2"],
            &[("PLAIN_USER", "admin"), ("PLAIN_PASSWORD", "secret")],
        );
        let ch = listener.accept_timeout(20 * SECOND).unwrap();
        assert_eq!(ch.peer().unwrap().user_id.as_deref(), Some("admin"));
        assert_eq!(frames(&ch.recv_timeout(20 * SECOND).unwrap()), ["msg", "0"]);
        assert_eq!(frames(&ch.recv_timeout(20 * SECOND).unwrap()), ["msg", "1"]);
        right.finish();
    }
}

#[test]
fn curve_sockets_against_pyzmq_pub_sub_and_req_rep() {
    let server = CurveKeyPair::generate();
    let secret = server.secret.to_z85();
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        // pyzmq PUB is the CURVE server; a conduit SUB subscribes through it.
        let mut publisher = Peer::start_with(
            &["PUB", "bind", &bind_endpoint(transport, &dir), "publish"],
            &[("CURVE_SERVER_SECRET", &secret)],
        );
        let sub = Socket::builder(SocketType::Sub)
            .curve_client(server.public, None)
            .linger(5 * SECOND)
            .build()
            .unwrap();
        sub.subscribe("b.").unwrap();
        sub.connect(publisher.endpoint.as_deref().unwrap()).unwrap();
        for _ in 0..3 {
            let m = sub.recv_timeout(20 * SECOND).unwrap();
            assert!(frames(&m)[0].starts_with("b."), "{m:?}");
        }
        publisher.stop();
        sub.close().unwrap();

        // conduit REP is the CURVE server; pyzmq REQ asks it, with a multipart
        // request and the 1 MiB reply.
        let rep = Socket::builder(SocketType::Rep)
            .curve_server(server.clone())
            .linger(5 * SECOND)
            .build()
            .unwrap();
        let ep = rep
            .bind(&endpoint(transport, &dir, "rep"))
            .unwrap()
            .to_string();
        let key = server.public.to_string();
        let mut req = Peer::start_with(
            &["REQ", "connect", &ep, "request", "2"],
            &[("CURVE_SERVERKEY", &key)],
        );
        let big = Bytes::from(vec![5u8; 1 << 20]);
        for i in 0..2 {
            let request = rep.recv_timeout(20 * SECOND).unwrap();
            assert_eq!(frames(&request), ["req", &i.to_string()]);
            rep.send(Message::from_frames([Bytes::from("big"), big.clone()]))
                .unwrap();
            let reply = req.next_message();
            assert_eq!(reply.frames()[1], big);
        }
        req.finish();
        rep.close().unwrap();
    }
}

/// A CURVE connection's messages are sealed by the application's threads
/// while its I/O thread seals heartbeat PINGs into the same nonce sequence.
/// libzmq drops a connection whose box nonces ever fail to increase, so every
/// message arriving, each sending thread's in order, shows that messages and
/// commands went out in nonce order, small and large messages mixed.
#[test]
fn messages_and_heartbeats_sealed_at_once_keep_nonce_order() {
    const THREADS: usize = 2;
    const EACH: usize = 4000;
    let size = |t: usize, i: usize| if t == 0 && i % 100 == 0 { 100 << 10 } else { 8 };
    let server = CurveKeyPair::generate();
    let secret = server.secret.to_z85();
    let dir = tempfile::tempdir().unwrap();
    let mut pull = Peer::start_with(
        &[
            "PULL",
            "bind",
            &bind_endpoint("ipc", &dir),
            "recv",
            &(THREADS * EACH).to_string(),
        ],
        &[("CURVE_SERVER_SECRET", &secret)],
    );
    let push = Arc::new(
        Socket::builder(SocketType::Push)
            .curve_client(server.public, None)
            // A PING from the I/O thread every millisecond of the stream.
            .heartbeat(Duration::from_millis(1), 10 * SECOND, 10 * SECOND)
            .linger(10 * SECOND)
            .build()
            .unwrap(),
    );
    push.connect(pull.endpoint.as_deref().unwrap()).unwrap();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let push = push.clone();
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let head = Bytes::from(format!("{t}.{i}"));
                    let body = Bytes::from(vec![b'x'; size(t, i)]);
                    push.send(Message::from_frames([head, body])).unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let mut next = [0usize; THREADS];
    for _ in 0..THREADS * EACH {
        let m = pull.next_message();
        let head = String::from_utf8(m.frames()[0].to_vec()).unwrap();
        let (t, i) = head.split_once('.').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "thread {t}'s messages out of order");
        next[t] += 1;
        assert_eq!(m.frames()[1].len(), size(t, i));
    }
    pull.finish();
}

#[test]
fn a_curve_socket_refuses_a_null_peer_and_keeps_serving_others() {
    let server = CurveKeyPair::generate();
    let (builder, events) = recording(
        Socket::builder(SocketType::Pull)
            .curve_server(server.clone())
            .linger(5 * SECOND),
    );
    let pull = builder.build().unwrap();
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let null_push = Peer::start(&["PUSH", "connect", &ep, "send", "1"]);
    let refused = wait_event(&events, "handshake with", 1);
    assert!(
        refused.contains("\"NULL\"")
            || refused.contains("closed the connection during the handshake"),
        "{refused}"
    );
    let key = server.public.to_string();
    let curve_push = Peer::start_with(
        &["PUSH", "connect", &ep, "send", "3"],
        &[("CURVE_SERVERKEY", &key)],
    );
    for i in 0..3 {
        let m = pull.recv_timeout(20 * SECOND).unwrap();
        assert_eq!(frames(&m), ["msg", &i.to_string()]);
    }
    // Nothing from the NULL peer ever reached the application.
    assert!(pull.recv_timeout(SECOND / 2).is_err());
    curve_push.finish();
    drop(null_push);
}

/// Relays one connection between a client and a server; the thread returns
/// every byte it relayed, both ways, once both sides have closed.
fn spy_proxy(target: String) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let relay = std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(target.trim_start_matches("tcp://")).unwrap();
        let seen: Arc<Mutex<Vec<u8>>> = Arc::default();
        let pump = |mut from: TcpStream, mut to: TcpStream, seen: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            })
        };
        let a = pump(
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            seen.clone(),
        );
        let b = pump(server, client, seen.clone());
        let _ = (a.join(), b.join());
        // Both pumps are done, so this is the last handle.
        Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
    });
    (format!("tcp://{addr}"), relay)
}

#[test]
fn nothing_readable_crosses_a_relay_under_curve() {
    let secret_text = b"TOP-SECRET-PAYLOAD";
    let run = |curve: bool| -> Vec<u8> {
        let server = CurveKeyPair::generate();
        let mut builder = ChannelBuilder::new();
        if curve {
            builder = builder.curve_server(server.clone());
        }
        let listener = builder.listen("tcp://127.0.0.1:0").unwrap();
        let (via, relay) = spy_proxy(listener.endpoint().to_string());
        let mut client = ChannelBuilder::new();
        if curve {
            client = client.curve_client(server.public, None);
        }
        let t = std::thread::spawn(move || {
            let ch = client.connect(&via).unwrap();
            ch.send(Message::from_frames([
                &b"TOP-SECRET-PAYLOAD"[..],
                b"second frame",
            ]))
            .unwrap();
            assert_eq!(ch.recv().unwrap().concat(), "TOP-SECRET-PAYLOAD reply");
            ch.close().unwrap();
        });
        let ch = listener.accept().unwrap();
        let m = ch.recv().unwrap();
        assert_eq!(m.frames()[0], &secret_text[..]);
        ch.send("TOP-SECRET-PAYLOAD reply").unwrap();
        t.join().unwrap();
        drop(ch);
        relay.join().unwrap()
    };
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    // The check itself works: over NULL the payload is there to read.
    let clear = run(false);
    assert!(contains(&clear, secret_text));
    let sealed = run(true);
    assert!(
        sealed.len() > 2 * secret_text.len(),
        "the relay saw traffic"
    );
    assert!(!contains(&sealed, secret_text));
    assert!(!contains(&sealed, b"second frame"));
}

#[test]
fn ipc_peers_are_let_in_by_their_process_credentials() {
    let uid = rustix::process::getuid().as_raw();
    for (policy, admitted) in [
        (AuthPolicy::new().allow_uid(uid), true),
        (AuthPolicy::new().allow_pid(std::process::id()), true),
        (AuthPolicy::new().allow_uid(uid.wrapping_add(1)), false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ep = format!("ipc://{}/creds.sock", dir.path().display());
        let listener = ChannelBuilder::new()
            .authenticator(policy)
            .listen(&ep)
            .unwrap();
        let client = std::thread::spawn(move || {
            let ch = Channel::connect(&ep);
            if let Ok(ch) = &ch {
                // Over NULL the client finishes first; the refusal then
                // arrives as an ERROR when it reads.
                let _ = ch.send("mine");
                let _ = ch.recv_timeout(5 * SECOND);
            }
        });
        match listener.accept_timeout(20 * SECOND) {
            Ok(ch) => {
                assert!(admitted);
                assert_eq!(ch.recv_timeout(20 * SECOND).unwrap().concat(), "mine");
                drop(ch);
            }
            Err(e) => {
                assert!(!admitted, "{e:?}");
                assert!(
                    matches!(refused(&e), ProtocolError::AccessDenied(r) if r.contains(&format!("uid {uid}"))),
                    "{e:?}"
                );
            }
        }
        client.join().unwrap();
    }
}

#[test]
fn a_denied_address_is_told_why_and_an_allowed_one_gets_in() {
    let server = CurveKeyPair::generate();
    let attempt = |policy: AuthPolicy| {
        let listener = ChannelBuilder::new()
            .curve_server(server.clone())
            .authenticator(policy)
            .listen("tcp://127.0.0.1:0")
            .unwrap();
        let ep = listener.endpoint().to_string();
        let public = server.public;
        let client = std::thread::spawn(move || {
            let ch = ChannelBuilder::new()
                .curve_client(public, None)
                .connect(&ep)?;
            ch.send("from 127.0.0.1").unwrap();
            Ok::<_, Error>(ch)
        });
        let accepted = listener.accept_timeout(20 * SECOND);
        (accepted, client.join().unwrap())
    };
    let (accepted, client) = attempt(AuthPolicy::new().deny("127.0.0.1"));
    assert_eq!(
        refused(&accepted.unwrap_err()),
        &ProtocolError::AccessDenied("address 127.0.0.1 is denied".into())
    );
    // The client hears why.
    assert_eq!(
        protocol_error(&client.unwrap_err()),
        &ProtocolError::PeerError("access denied: address 127.0.0.1 is denied".into())
    );

    let (accepted, client) = attempt(AuthPolicy::new().allow("127.0.0.1").deny("127.0.0.1"));
    let ch = accepted.unwrap();
    assert_eq!(ch.recv().unwrap().concat(), "from 127.0.0.1");
    drop(client.unwrap());
}

#[test]
fn a_hostile_curve_client_is_dropped_with_a_reason_and_the_listener_serves_on() {
    let server = CurveKeyPair::generate();
    let listener = ChannelBuilder::new()
        .curve_server(server.clone())
        .handshake_timeout(2 * SECOND)
        .listen("tcp://127.0.0.1:0")
        .unwrap();
    let ep = listener.endpoint().to_string();
    let port = ep.rsplit(':').next().unwrap().to_owned();
    let mut greeting = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1];
    greeting.extend_from_slice(b"CURVE");
    greeting.resize(64, 0);
    let mut hello = b"\x05HELLO\x01\x00".to_vec();
    hello.resize(200, 0xAA); // a HELLO whose box is garbage
    let attacks: Vec<(Vec<u8>, &str)> = vec![
        (
            [&[0x04, 0xc8][..], &hello].concat(),
            "cannot open the client's HELLO box",
        ),
        (
            [&[0x04, 0x07][..], &hello[..7]].concat(),
            "malformed HELLO command: not 200 bytes",
        ),
        (
            b"\x00\x05hello".to_vec(),
            "message frame received before the handshake completed",
        ),
        (
            [&[0x04, 0x09][..], b"\x08INITIATE"].concat(),
            "expected HELLO during the handshake, received INITIATE",
        ),
    ];
    for (attack, reason) in attacks {
        let mut raw = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        raw.write_all(&greeting).unwrap();
        raw.write_all(&attack).unwrap();
        let err = listener.accept_timeout(20 * SECOND).unwrap_err();
        assert!(refused(&err).to_string().contains(reason), "{err:?}");
        // The attacker gets our greeting, then an ERROR with the reason.
        let mut theirs = [0u8; 64];
        raw.read_exact(&mut theirs).unwrap();
        assert_eq!(&theirs[12..17], b"CURVE");
        let mut header = [0u8; 2];
        raw.read_exact(&mut header).unwrap();
        assert_eq!(header[0], 0x04);
        let mut body = vec![0u8; header[1] as usize];
        raw.read_exact(&mut body).unwrap();
        assert_eq!(&body[..6], b"\x05ERROR");
        assert!(
            String::from_utf8_lossy(&body[7..]).contains(reason),
            "{body:?}"
        );
    }
    // A proper client still gets in.
    let client = std::thread::spawn(move || {
        let ch = ChannelBuilder::new()
            .curve_client(server.public, None)
            .connect(&ep)
            .unwrap();
        ch.send("welcome").unwrap();
        ch.close().unwrap();
    });
    let ch = listener.accept_timeout(20 * SECOND).unwrap();
    assert_eq!(ch.recv().unwrap().concat(), "welcome");
    client.join().unwrap();
}

#[test]
fn a_curve_router_names_each_dealer_by_its_key() {
    let server = CurveKeyPair::generate();
    let dealer_keys = CurveKeyPair::generate();
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let (builder, events) = recording(
            Socket::builder(SocketType::Router)
                .curve_server(server.clone())
                .authenticator(AuthPolicy::new().allow_curve_key(dealer_keys.public))
                .linger(5 * SECOND),
        );
        let router = builder.build().unwrap();
        let ep = router
            .bind(&endpoint(transport, &dir, "router"))
            .unwrap()
            .to_string();
        let (key, secret) = (server.public.to_string(), dealer_keys.secret.to_z85());
        let mut dealer = Peer::start_with(
            &["DEALER", "connect", &ep, "request", "1"],
            &[
                ("CURVE_SERVERKEY", &key),
                ("CURVE_SECRET", &secret),
                ("PEER_ID", "d1"),
            ],
        );
        let ready = wait_event(&events, "handshake done", 1);
        assert!(
            ready.contains(&format!("user {}", dealer_keys.public)),
            "{ready}"
        );
        let request = router.recv_timeout(20 * SECOND).unwrap();
        assert_eq!(frames(&request), ["d1", "", "req", "0"]);
        router
            .send(Message::from_frames(["d1", "", "sealed reply"]))
            .unwrap();
        assert_eq!(frames(&dealer.next_message()), ["", "sealed reply"]);
        dealer.finish();
        router.close().unwrap();
    }
}

#[test]
fn certificates_written_by_pyzmq_load_and_ours_load_in_pyzmq() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let printed = crate::pyzmq::run_python(&format!(
        "import zmq.auth\n\
         pub, sec = zmq.auth.create_certificates('{d}', 'py')\n\
         p, s = zmq.auth.load_certificate(sec)\n\
         print(p.decode()); print(s.decode())"
    ));
    let mut lines = printed.lines();
    let (public, secret) = (lines.next().unwrap(), lines.next().unwrap());
    let ours = Certificate::load(dir.path().join("py.key_secret")).unwrap();
    assert_eq!(ours.public.to_string(), public);
    assert_eq!(ours.secret.unwrap().to_z85(), secret);
    assert!(
        Certificate::load(dir.path().join("py.key"))
            .unwrap()
            .secret
            .is_none()
    );

    let pair = CurveKeyPair::generate();
    Certificate::save(&pair, &dir.path().join("ours")).unwrap();
    let printed = crate::pyzmq::run_python(&format!(
        "import zmq.auth\n\
         p, s = zmq.auth.load_certificate('{d}/ours.key_secret')\n\
         print(p.decode()); print(s.decode())\n\
         print(zmq.auth.load_certificate('{d}/ours.key')[1])"
    ));
    assert_eq!(
        printed,
        format!("{}\n{}\nNone\n", pair.public, pair.secret.to_z85())
    );
}

#[test]
fn heartbeats_travel_sealed_and_libzmq_answers_them() {
    // Our PINGs go to libzmq inside MESSAGE boxes; its PONGs come back in
    // boxes. Were either side unable to open the other's commands, the
    // heartbeat would time out and drop the peer.
    let server = CurveKeyPair::generate();
    let secret = server.secret.to_z85();
    let mut peer = Peer::start_with(
        &["PAIR", "bind", "tcp://127.0.0.1:*", "echo", "2"],
        &[("CURVE_SERVER_SECRET", &secret)],
    );
    let (builder, events) = recording(
        Socket::builder(SocketType::Pair)
            .curve_client(server.public, None)
            .heartbeat(
                Duration::from_millis(50),
                Duration::from_millis(300),
                SECOND,
            )
            .linger(5 * SECOND),
    );
    let pair = builder.build().unwrap();
    pair.connect(peer.endpoint.as_deref().unwrap()).unwrap();
    pair.send("before").unwrap();
    assert_eq!(pair.recv_timeout(20 * SECOND).unwrap().concat(), "before");
    // Several heartbeat timeouts' worth of silence but for PINGs and PONGs.
    assert!(pair.recv_timeout(2 * SECOND).is_err());
    pair.send("after").unwrap();
    assert_eq!(pair.recv_timeout(20 * SECOND).unwrap().concat(), "after");
    let seen = events.lock().unwrap().clone();
    assert!(
        !seen
            .iter()
            .any(|e| e.contains("dropped") || e.contains("failed")),
        "{seen:#?}"
    );
    assert_eq!(
        seen.iter().filter(|e| e.contains("handshake done")).count(),
        1
    );
    peer.stop();
    drop(peer);
}

/// A CURVE client driven by hand over a raw TCP stream, with the protocol
/// crate's own state machines: it can then send what a real client never
/// would (a replayed box, a corrupted one).
struct HandClient {
    stream: TcpStream,
    sealer: conduit_proto::Sealer,
    opener: conduit_proto::Opener,
    input: bytes::BytesMut,
}

impl HandClient {
    fn connect(endpoint: &str, server_key: conduit::CurvePublicKey) -> HandClient {
        use conduit_proto::{Handshake, LocalInfo, PeerAddress, SendBuffer};
        let mut stream = TcpStream::connect(endpoint.trim_start_matches("tcp://")).unwrap();
        stream.set_read_timeout(Some(20 * SECOND)).unwrap();
        let mut hs = Handshake::with_security(
            LocalInfo::new(SocketType::Pair),
            conduit::Security {
                mechanism: conduit::Mechanism::CurveClient {
                    server_key,
                    keys: None,
                },
                authenticator: None,
            },
            PeerAddress::default(),
        );
        let mut out = SendBuffer::new();
        hs.start(&mut out);
        stream.write_all(&out.to_vec()).unwrap();
        let mut input = bytes::BytesMut::new();
        loop {
            let done = hs.handle_input(&mut input).unwrap();
            let mut out = SendBuffer::new();
            hs.poll_output(&mut out);
            stream.write_all(&out.to_vec()).unwrap();
            if done.is_some() {
                break;
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the server hung up in the handshake");
            input.extend_from_slice(&buf[..n]);
        }
        let (sealer, opener) = hs.take_cipher().unwrap().split();
        HandClient {
            stream,
            sealer,
            opener,
            input,
        }
    }

    fn sealed(&mut self, body: &str) -> Vec<u8> {
        let mut out = conduit_proto::SendBuffer::new();
        self.sealer
            .seal_message(&Message::from(body.to_owned()), &mut out);
        out.to_vec()
    }

    /// The next item from the server, opened.
    fn next(&mut self) -> conduit_proto::Item {
        loop {
            if let Some(item) = self.opener.decode(&mut self.input).unwrap() {
                return item;
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).unwrap();
            assert!(n > 0, "the server hung up without an ERROR");
            self.input.extend_from_slice(&buf[..n]);
        }
    }
}

#[test]
fn a_replayed_or_corrupted_box_drops_the_connection_with_a_sealed_reason() {
    use conduit_proto::{Command, Item};
    let server = CurveKeyPair::generate();
    let listener = ChannelBuilder::new()
        .curve_server(server.clone())
        .listen("tcp://127.0.0.1:0")
        .unwrap();
    let ep = listener.endpoint().to_string();
    for replay in [true, false] {
        let public = server.public;
        let ep2 = ep.clone();
        let client = std::thread::spawn(move || {
            let mut c = HandClient::connect(&ep2, public);
            let first = c.sealed("first");
            c.stream.write_all(&first).unwrap();
            let attack = if replay {
                first
            } else {
                let mut second = c.sealed("second");
                let last = second.len() - 1;
                second[last] ^= 0x80;
                second
            };
            c.stream.write_all(&attack).unwrap();
            c.next()
        });
        let ch = listener.accept_timeout(20 * SECOND).unwrap();
        assert_eq!(ch.recv_timeout(20 * SECOND).unwrap().concat(), "first");
        let err = match ch.recv_timeout(20 * SECOND) {
            Err(conduit::RecvTimeoutError::Failed(e)) => e,
            other => panic!("{other:?}"),
        };
        let expected = if replay {
            "is not above the last one"
        } else {
            "does not open"
        };
        assert!(
            protocol_error(&err).to_string().contains(expected),
            "{err:?}"
        );
        // The client is told why, inside a box.
        match client.join().unwrap() {
            Item::Command(Command::Error(reason)) => {
                assert!(reason.contains(expected), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_socket_sees_the_user_id_of_each_message_s_peer() {
    // A conduit PULL, PLAIN server with two users; two pyzmq PUSH clients,
    // one as each user: every message comes with its sender's user id.
    let dir = tempfile::tempdir().unwrap();
    let pull = Socket::builder(SocketType::Pull)
        .plain_server()
        .authenticator(
            AuthPolicy::new()
                .plain_user("alice", "wonder")
                .plain_user("bob", "builder"),
        )
        .linger(5 * SECOND)
        .build()
        .unwrap();
    let ep = pull.bind(&our_endpoint("tcp", &dir)).unwrap().to_string();
    let alice = Peer::start_with(
        &["PUSH", "connect", &ep, "send", "2"],
        &[("PLAIN_USER", "alice"), ("PLAIN_PASSWORD", "wonder")],
    );
    let bob = Peer::start_with(
        &["PUSH", "connect", &ep, "send", "2"],
        &[("PLAIN_USER", "bob"), ("PLAIN_PASSWORD", "builder")],
    );
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (msg, peer) = pull.recv_with_peer().unwrap();
        let peer = peer.expect("a message from a peer names it");
        assert_eq!(peer.socket_type, SocketType::Push);
        seen.push((peer.user_id.unwrap(), frames(&msg)));
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("alice".to_owned(), vec!["msg".to_owned(), "0".to_owned()]),
            ("alice".to_owned(), vec!["msg".to_owned(), "1".to_owned()]),
            ("bob".to_owned(), vec!["msg".to_owned(), "0".to_owned()]),
            ("bob".to_owned(), vec!["msg".to_owned(), "1".to_owned()]),
        ]
    );
    alice.finish();
    bob.finish();
}
