//! The interop matrix: every valid socket-type pair with conduit on one side and
//! libzmq (through pyzmq) on the other, over tcp and ipc, with conduit binding
//! and with conduit connecting; messages flow both ways as the pattern allows.

use std::time::{Duration, Instant};

use conduit::{Message, Socket, SocketType};

use crate::pyzmq::{Peer, bind_endpoint};
use crate::sockets::{endpoint, frames, wait_peers};

/// One pairing: conduit's socket, the Python peer, and what they do.
struct Case {
    ours: SocketType,
    identity: &'static str,
    theirs: &'static str,
    action: &'static [&'static str],
    their_identity: &'static str,
    script: fn(&Socket, &mut Peer),
}

fn run(case: Case) {
    for transport in ["tcp", "ipc"] {
        for we_bind in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let mut builder = Socket::builder(case.ours).linger(Duration::from_secs(5));
            if !case.identity.is_empty() {
                builder = builder.identity(case.identity);
            }
            let socket = builder.build().unwrap();
            let env = [("PEER_ID", case.their_identity)];
            let mut peer = if we_bind {
                let ep = socket
                    .bind(&endpoint(transport, &dir, "ours"))
                    .unwrap()
                    .to_string();
                let mut args = vec![case.theirs, "connect", &ep];
                args.extend(case.action);
                Peer::start_with(&args, &env)
            } else {
                let ep = bind_endpoint(transport, &dir);
                let mut args = vec![case.theirs, "bind", &ep];
                args.extend(case.action);
                let peer = Peer::start_with(&args, &env);
                socket.connect(peer.endpoint.as_deref().unwrap()).unwrap();
                peer
            };
            eprintln!(
                "{} - {} over {transport}, conduit binds: {we_bind}",
                case.ours, case.theirs
            );
            (case.script)(&socket, &mut peer);
            peer.finish();
            socket.close().unwrap();
        }
    }
}

/// Ten messages of `prefix` and a number, each echoed back whole.
fn echoed(socket: &Socket, prefix: &[&str]) {
    for i in 0..10 {
        let n = i.to_string();
        let m = msg(&[prefix, &[n.as_str()]].concat());
        socket.send(m.clone()).unwrap();
        assert_eq!(recv(socket), m);
    }
}

fn msg(parts: &[&str]) -> Message {
    Message::from_frames(parts.iter().map(|p| p.to_string()))
}

fn recv(socket: &Socket) -> Message {
    socket.recv_timeout(Duration::from_secs(20)).unwrap()
}

/// Publishes a.<i> and b.<i> until the subscribing peer has printed five
/// messages, then checks they are all a's: the filter held.
fn publish_to_subscriber(socket: &Socket, peer: &mut Peer) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    let mut i = 0;
    while got.len() < 5 {
        assert!(Instant::now() < deadline, "the subscriber received {got:?}");
        socket.send(format!("a.{i}")).unwrap();
        socket.send(format!("b.{i}")).unwrap();
        i += 1;
        if let Some(m) = peer.message_within(Duration::from_millis(5)) {
            got.push(m);
        }
    }
    for m in got {
        assert!(frames(&m)[0].starts_with("a."), "{m:?}");
    }
}

/// Receives five messages from a publishing peer, all a's.
fn receive_from_publisher(socket: &Socket, peer: &mut Peer) {
    for _ in 0..5 {
        let m = recv(socket);
        assert!(frames(&m)[0].starts_with("a."), "{m:?}");
    }
    peer.stop();
}

#[test]
fn pair_with_pyzmq_pair() {
    run(Case {
        ours: SocketType::Pair,
        identity: "",
        theirs: "PAIR",
        action: &["echo", "10"],
        their_identity: "",
        script: |s, _| {
            for i in 0..10 {
                let m = msg(&["pair", &i.to_string(), ""]);
                s.send(m.clone()).unwrap();
                assert_eq!(recv(s), m);
            }
        },
    });
}

#[test]
fn push_to_pyzmq_pull() {
    run(Case {
        ours: SocketType::Push,
        identity: "",
        theirs: "PULL",
        action: &["recv", "20"],
        their_identity: "",
        script: |s, peer| {
            let big = "x".repeat(70_000);
            for i in 0..20 {
                s.send(msg(&["m", &i.to_string(), &big])).unwrap();
            }
            for i in 0..20 {
                assert_eq!(peer.next_message(), msg(&["m", &i.to_string(), &big]));
            }
        },
    });
}

#[test]
fn pull_from_pyzmq_push() {
    run(Case {
        ours: SocketType::Pull,
        identity: "",
        theirs: "PUSH",
        action: &["send", "20"],
        their_identity: "",
        script: |s, _| {
            for i in 0..20 {
                assert_eq!(recv(s), msg(&["msg", &i.to_string()]));
            }
        },
    });
}

#[test]
fn req_to_pyzmq_rep_and_router() {
    for theirs in ["REP", "ROUTER"] {
        run(Case {
            ours: SocketType::Req,
            identity: "",
            theirs,
            action: &["echo", "10"],
            their_identity: "",
            script: |s, _| echoed(s, &["q"]),
        });
    }
}

#[test]
fn rep_to_pyzmq_req_and_dealer() {
    for theirs in ["REQ", "DEALER"] {
        run(Case {
            ours: SocketType::Rep,
            identity: "",
            theirs,
            action: &["request", "10"],
            their_identity: "",
            script: |s, peer| {
                for i in 0..10 {
                    assert_eq!(recv(s), msg(&["req", &i.to_string()]));
                    s.send(msg(&["rep", &i.to_string()])).unwrap();
                    let reply = peer.next_message();
                    // A DEALER sees the envelope REP put back: the empty delimiter.
                    let body: Vec<String> = frames(&reply)
                        .into_iter()
                        .filter(|f| !f.is_empty())
                        .collect();
                    assert_eq!(body, ["rep", &i.to_string()]);
                }
            },
        });
    }
}

#[test]
fn dealer_to_pyzmq_rep_dealer_and_router() {
    for (theirs, delimiter) in [("REP", true), ("DEALER", false), ("ROUTER", false)] {
        run(Case {
            ours: SocketType::Dealer,
            identity: "",
            theirs,
            action: &["echo", "10"],
            their_identity: "",
            script: if delimiter {
                |s, _| echoed(s, &["", "d"])
            } else {
                |s, _| echoed(s, &["d"])
            },
        });
    }
}

#[test]
fn router_to_pyzmq_req_and_dealer() {
    for theirs in ["REQ", "DEALER"] {
        run(Case {
            ours: SocketType::Router,
            identity: "",
            theirs,
            action: &["request", "10"],
            their_identity: "them",
            script: |s, peer| {
                for i in 0..10 {
                    let m = recv(s);
                    assert_eq!(frames(&m), ["them", "", "req", &i.to_string()]);
                    s.send(msg(&["them", "", "rep", &i.to_string()])).unwrap();
                    let reply = peer.next_message();
                    let body: Vec<String> = frames(&reply)
                        .into_iter()
                        .filter(|f| !f.is_empty())
                        .collect();
                    assert_eq!(body, ["rep", &i.to_string()]);
                }
            },
        });
    }
}

#[test]
fn router_to_pyzmq_router() {
    run(Case {
        ours: SocketType::Router,
        identity: "ours",
        theirs: "ROUTER",
        action: &["echo", "10"],
        their_identity: "theirs",
        script: |s, _| {
            wait_peers(s, 1);
            for i in 0..10 {
                s.send(msg(&["theirs", "r", &i.to_string()])).unwrap();
                assert_eq!(frames(&recv(s)), ["theirs", "r", &i.to_string()]);
            }
        },
    });
}

#[test]
fn pub_and_xpub_to_pyzmq_sub_and_xsub() {
    for ours in [SocketType::Pub, SocketType::XPub] {
        for theirs in ["SUB", "XSUB"] {
            run(Case {
                ours,
                identity: "",
                theirs,
                action: &["subscribe", "a", "5"],
                their_identity: "",
                script: if ours == SocketType::XPub {
                    |s, peer| {
                        // libzmq's subscription reaches the application of an XPUB.
                        assert_eq!(recv(s).concat(), "\x01a");
                        publish_to_subscriber(s, peer);
                    }
                } else {
                    publish_to_subscriber
                },
            });
        }
    }
}

#[test]
fn sub_and_xsub_from_pyzmq_pub_and_xpub() {
    for ours in [SocketType::Sub, SocketType::XSub] {
        for theirs in ["PUB", "XPUB"] {
            run(Case {
                ours,
                identity: "",
                theirs,
                action: &["publish"],
                their_identity: "",
                script: match (ours, theirs) {
                    (SocketType::Sub, "PUB") => |s, p| {
                        s.subscribe("a").unwrap();
                        receive_from_publisher(s, p);
                    },
                    (SocketType::Sub, _) => |s, p| {
                        s.subscribe("a").unwrap();
                        // The XPUB peer printed the subscription it received.
                        assert_eq!(p.next_message().concat(), "\x01a");
                        receive_from_publisher(s, p);
                    },
                    (_, "PUB") => |s, p| {
                        s.send(b"\x01a".to_vec()).unwrap();
                        receive_from_publisher(s, p);
                    },
                    _ => |s, p| {
                        s.send(b"\x01a".to_vec()).unwrap();
                        assert_eq!(p.next_message().concat(), "\x01a");
                        receive_from_publisher(s, p);
                    },
                },
            });
        }
    }
}
