//! `inproc://`: sockets of one process linked without the kernel. Every test
//! uses names of its own: the names are process-wide and tests run at once.

use std::time::{Duration, Instant};

use bytes::Bytes;
use conduit::{
    Channel, Endpoint, Error, Message, RecvTimeoutError, Socket, SocketType, TrySendError,
};

use crate::sockets::{recv_str, socket, wait_peers};

#[test]
fn every_pattern_works_over_inproc() {
    // PUSH -> PULL
    let pull = socket(SocketType::Pull);
    pull.bind("inproc://t-push").unwrap();
    let push = socket(SocketType::Push);
    push.connect("inproc://t-push").unwrap();
    push.send("job").unwrap();
    assert_eq!(recv_str(&pull), "job");

    // REQ -> REP and back
    let rep = socket(SocketType::Rep);
    rep.bind("inproc://t-rep").unwrap();
    let req = socket(SocketType::Req);
    req.connect("inproc://t-rep").unwrap();
    req.send("ping").unwrap();
    assert_eq!(recv_str(&rep), "ping");
    rep.send("pong").unwrap();
    assert_eq!(recv_str(&req), "pong");

    // DEALER -> ROUTER, routed back by identity
    let router = socket(SocketType::Router);
    router.bind("inproc://t-router").unwrap();
    let dealer = Socket::builder(SocketType::Dealer)
        .identity("d1")
        .build()
        .unwrap();
    dealer.connect("inproc://t-router").unwrap();
    dealer.send("hello").unwrap();
    let m = router.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(m.frames()[0], "d1");
    assert_eq!(m.frames()[1], "hello");
    router.send(Message::from_frames(["d1", "back"])).unwrap();
    assert_eq!(recv_str(&dealer), "back");

    // PAIR both ways
    let a = socket(SocketType::Pair);
    a.bind("inproc://t-pair").unwrap();
    let b = socket(SocketType::Pair);
    b.connect("inproc://t-pair").unwrap();
    a.send("to b").unwrap();
    b.send("to a").unwrap();
    assert_eq!(recv_str(&b), "to b");
    assert_eq!(recv_str(&a), "to a");
}

#[test]
fn subscriptions_cross_inproc_and_filter_at_the_publisher() {
    let publisher = socket(SocketType::XPub);
    publisher.bind("inproc://t-pubsub").unwrap();
    let sub = socket(SocketType::Sub);
    sub.subscribe("weather").unwrap(); // before connecting: sent on linking
    sub.connect("inproc://t-pubsub").unwrap();
    // XPUB sees the subscription arrive.
    let s = publisher.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(s.frames()[0], &b"\x01weather"[..]);
    publisher.send("sports 1").unwrap();
    publisher.send("weather sunny").unwrap();
    assert_eq!(recv_str(&sub), "weather sunny");
    sub.unsubscribe("weather").unwrap();
    let s = publisher.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(s.frames()[0], &b"\x00weather"[..]);
}

#[test]
fn messages_are_handed_over_without_a_copy() {
    let pull = socket(SocketType::Pull);
    pull.bind("inproc://t-nocopy").unwrap();
    let push = socket(SocketType::Push);
    push.connect("inproc://t-nocopy").unwrap();
    let payload = Bytes::from(vec![7u8; 1 << 20]);
    let at = payload.as_ptr();
    push.send(Message::from_frames([Bytes::from_static(b"head"), payload]))
        .unwrap();
    let m = pull.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(m.frames().len(), 2);
    assert_eq!(m.frames()[0], "head");
    assert_eq!(m.frames()[1].as_ptr(), at, "the same buffer arrives");
}

#[test]
fn connecting_may_come_before_binding() {
    let push = socket(SocketType::Push);
    push.connect("inproc://t-early").unwrap();
    assert_eq!(push.peer_count(), 0);
    let pull = socket(SocketType::Pull);
    pull.bind("inproc://t-early").unwrap();
    // Linked by the bind itself: the peer is there when it returns.
    assert_eq!(push.peer_count(), 1);
    push.send("early").unwrap();
    assert_eq!(recv_str(&pull), "early");
}

#[test]
fn nothing_sent_before_a_close_is_lost() {
    let pull = socket(SocketType::Pull);
    pull.bind("inproc://t-close").unwrap();
    let push = socket(SocketType::Push);
    push.connect("inproc://t-close").unwrap();
    for i in 0..500u32 {
        push.send(i.to_string()).unwrap();
    }
    push.close().unwrap();
    for i in 0..500u32 {
        assert_eq!(recv_str(&pull), i.to_string());
    }
    // Then the peer is gone.
    wait_peers(&pull, 0);
    assert!(matches!(
        pull.recv_timeout(Duration::from_millis(20)),
        Err(RecvTimeoutError::Timeout)
    ));
}

#[test]
fn a_link_holds_the_send_and_receive_high_water_marks() {
    let pull = Socket::builder(SocketType::Pull)
        .recv_hwm(3)
        .build()
        .unwrap();
    pull.bind("inproc://t-hwm").unwrap();
    let push = Socket::builder(SocketType::Push)
        .send_hwm(5)
        .build()
        .unwrap();
    push.connect("inproc://t-hwm").unwrap();
    let mut sent = 0u32;
    let mut poller = conduit::Poller::new();
    poller.add(&push, conduit::Interest::WRITABLE);
    // Sends go through until the pipe (5) and the receiver's queue (3) are
    // full; the receiver's reactor moves them over as it runs, so keep
    // trying, each time the push says it has room again, until a send would
    // wait and stays that way.
    loop {
        match push.try_send(sent.to_string()) {
            Ok(()) => sent += 1,
            Err(TrySendError::Full(_)) => {
                if sent >= 8 && !push.can_send() {
                    break;
                }
                let ready = poller.poll(Some(Duration::from_secs(10))).unwrap();
                assert!(!ready.is_empty(), "stuck at {sent}");
            }
            Err(e) => panic!("{e:?}"),
        }
        assert!(sent <= 8, "more than both marks hold: {sent}");
    }
    assert_eq!(sent, 8);
    // Room made at the receiver lets the sender go on, in order.
    for i in 0..8u32 {
        assert_eq!(recv_str(&pull), i.to_string());
    }
    push.send_timeout("more", Duration::from_secs(10)).unwrap();
    assert_eq!(recv_str(&pull), "more");
}

#[test]
fn a_blocked_sender_wakes_when_the_receiver_reads() {
    let pull = Socket::builder(SocketType::Pull)
        .recv_hwm(1)
        .build()
        .unwrap();
    pull.bind("inproc://t-wake").unwrap();
    let push = Socket::builder(SocketType::Push)
        .send_hwm(1)
        .build()
        .unwrap();
    push.connect("inproc://t-wake").unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..200u32 {
            push.send(i.to_string()).unwrap();
        }
    });
    for i in 0..200u32 {
        assert_eq!(recv_str(&pull), i.to_string());
    }
    sender.join().unwrap();
}

#[test]
fn a_connecting_socket_links_again_to_the_next_binder() {
    let push = socket(SocketType::Push);
    push.connect("inproc://t-relink").unwrap();
    let first = socket(SocketType::Pull);
    first.bind("inproc://t-relink").unwrap();
    push.send("one").unwrap();
    assert_eq!(recv_str(&first), "one");
    first.close().unwrap();
    wait_peers(&push, 0);
    let second = socket(SocketType::Pull);
    second.bind("inproc://t-relink").unwrap();
    wait_peers(&push, 1);
    push.send("two").unwrap();
    assert_eq!(recv_str(&second), "two");
}

#[test]
fn a_name_is_bound_once_and_unbind_frees_it() {
    let a = socket(SocketType::Pull);
    let ep = a.bind("inproc://t-once").unwrap();
    assert_eq!(ep, Endpoint::Inproc("t-once".into()));
    let b = socket(SocketType::Pull);
    let err = b.bind("inproc://t-once").unwrap_err();
    assert!(
        err.to_string().contains("another socket has bound it"),
        "{err}"
    );
    assert!(
        a.bind("inproc://t-once").is_err(),
        "not twice by one socket"
    );
    let push = socket(SocketType::Push);
    push.connect("inproc://t-once").unwrap();
    wait_peers(&a, 1);
    a.unbind("inproc://t-once").unwrap();
    wait_peers(&a, 0);
    b.bind("inproc://t-once").unwrap();
    wait_peers(&b, 1);
    push.send("to b").unwrap();
    assert_eq!(recv_str(&b), "to b");
}

#[test]
fn disconnect_ends_the_link_and_stops_waiting() {
    let pull = socket(SocketType::Pull);
    pull.bind("inproc://t-disc").unwrap();
    let push = socket(SocketType::Push);
    push.connect("inproc://t-disc").unwrap();
    push.send("before").unwrap();
    push.disconnect("inproc://t-disc").unwrap();
    assert_eq!(recv_str(&pull), "before", "what was sent still arrives");
    wait_peers(&pull, 0);
    wait_peers(&push, 0);
    // A socket waiting for a name stops waiting when it disconnects.
    let waiting = socket(SocketType::Push);
    waiting.connect("inproc://t-disc-later").unwrap();
    waiting.disconnect("inproc://t-disc-later").unwrap();
    let late = socket(SocketType::Pull);
    late.bind("inproc://t-disc-later").unwrap();
    assert_eq!(late.peer_count(), 0);
}

#[test]
fn wrong_uses_get_clear_errors() {
    let pull = socket(SocketType::Pull);
    pull.bind("inproc://t-wrong").unwrap();
    let other = socket(SocketType::Pull);
    let err = other.connect("inproc://t-wrong").unwrap_err();
    assert!(matches!(err, Error::Protocol(_)), "{err:?}");
    assert_eq!(pull.peer_count(), 0);
    let err = pull.connect("inproc://t-wrong").unwrap_err();
    assert!(err.to_string().contains("itself"), "{err}");
    let err = Channel::connect("inproc://t-wrong").unwrap_err();
    assert!(
        err.to_string().contains("Channel needs ipc:// or tcp://"),
        "{err}"
    );
    assert!("inproc://".parse::<Endpoint>().is_err());
}

#[test]
fn many_threads_push_into_one_pull() {
    let pull = socket(SocketType::Pull);
    pull.bind("inproc://t-many").unwrap();
    let senders: Vec<_> = (0..4u32)
        .map(|t| {
            let push = socket(SocketType::Push);
            push.connect("inproc://t-many").unwrap();
            std::thread::spawn(move || {
                for i in 0..5_000u32 {
                    push.send(format!("{t} {i}")).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u32; 4];
    for _ in 0..20_000 {
        let text = recv_str(&pull);
        let (t, i) = text.split_once(' ').unwrap();
        let t: usize = t.parse().unwrap();
        assert_eq!(i.parse::<u32>().unwrap(), next[t], "in order per sender");
        next[t] += 1;
    }
    for s in senders {
        s.join().unwrap();
    }
}

#[test]
fn a_router_broker_relays_between_threads() {
    // The ZeroMQ Guide's multithreaded server: clients over ipc to a
    // ROUTER, workers over inproc behind a DEALER.
    let dir = tempfile::tempdir().unwrap();
    let front_ep = format!("ipc://{}/front", dir.path().display());
    let front = socket(SocketType::Router);
    front.bind(&front_ep).unwrap();
    let back = socket(SocketType::Dealer);
    back.bind("inproc://t-workers").unwrap();
    let reps: Vec<Socket> = (0..3).map(|_| socket(SocketType::Rep)).collect();
    let workers: Vec<_> = reps
        .iter()
        .enumerate()
        .map(|(w, rep)| {
            let rep = rep.clone();
            rep.connect("inproc://t-workers").unwrap();
            std::thread::spawn(move || {
                while let Ok(m) = rep.recv() {
                    let text = String::from_utf8(m.concat().to_vec()).unwrap();
                    if rep.send(format!("{text} by {w}")).is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    wait_peers(&back, 3);
    let broker = {
        let (front, back) = (front.clone(), back.clone());
        std::thread::spawn(move || {
            for _ in 0..30 {
                back.send(front.recv().unwrap()).unwrap();
                front.send(back.recv().unwrap()).unwrap();
            }
        })
    };
    let client = socket(SocketType::Req);
    client.connect(&front_ep).unwrap();
    for i in 0..30 {
        client.send(format!("job {i}")).unwrap();
        let reply = recv_str(&client);
        assert!(reply.starts_with(&format!("job {i} by ")), "{reply}");
    }
    broker.join().unwrap();
    // Closing a handle wakes the worker blocked on its other one.
    for rep in reps {
        rep.close().unwrap();
    }
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn closed_sockets_leave_nothing_behind() {
    const TEST: &str = "inproc::closed_sockets_leave_nothing_behind";
    if crate::support::child_role(TEST).is_some() {
        return churn();
    }
    // In a child of its own: descriptors are counted for the whole process.
    let status = crate::support::child_command(TEST, "churn")
        .status()
        .unwrap();
    assert!(status.success(), "the churning child failed: {status}");
}

/// Links, uses and closes sockets in both orders, with a third socket linking
/// while the binder closes; a socket that stayed referenced by its links
/// would keep its descriptors open.
fn churn() {
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    drop(socket(SocketType::Pair)); // the engine's own descriptors first
    let before = fds();
    for i in 0..200 {
        let name = format!("inproc://churn-{i}");
        let rep = socket(SocketType::Rep);
        rep.bind(&name).unwrap();
        let req = socket(SocketType::Req);
        req.connect(&name).unwrap();
        req.send("x").unwrap();
        assert_eq!(recv_str(&rep), "x");
        rep.send("y").unwrap();
        assert_eq!(recv_str(&req), "y");
        let late = socket(SocketType::Req);
        let linking = std::thread::spawn(move || {
            let _ = late.connect(&name);
        });
        if i % 2 == 0 {
            drop(rep);
            drop(req);
        } else {
            drop(req);
            drop(rep);
        }
        linking.join().unwrap();
    }
    // A closed socket's last reference may be the I/O thread's for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fds() > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let after = fds();
    assert!(
        after <= before,
        "descriptors grew from {before} to {after} over 200 closed links"
    );
}
