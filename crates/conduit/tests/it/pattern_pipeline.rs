//! PUSH/PULL and PAIR: round-robin, fair queueing, high-water marks, order.

use std::collections::HashMap;
use std::time::Duration;

use conduit::{
    Error, Message, Misuse, RecvTimeoutError, SendTimeoutError, Socket, SocketType, TrySendError,
};

use crate::sockets::*;

#[test]
fn push_round_robins_over_its_pullers() {
    for t in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let push = socket(SocketType::Push);
        let ep = push.bind(&endpoint(t, &dir, "rr")).unwrap().to_string();
        let pulls: Vec<Socket> = (0..3)
            .map(|_| {
                let p = socket(SocketType::Pull);
                p.connect(&ep).unwrap();
                p
            })
            .collect();
        wait_peers(&push, 3);
        for i in 0..30 {
            push.send(format!("{i}")).unwrap();
        }
        for pull in &pulls {
            let got: Vec<u32> = (0..10).map(|_| recv_str(pull).parse().unwrap()).collect();
            // Each puller gets every third message, in order.
            assert!(
                got.windows(2).all(|w| w[1] == w[0] + 3),
                "over {t}: {got:?}"
            );
        }
    }
}

#[test]
fn pull_fair_queues_from_its_pushers() {
    let dir = tempfile::tempdir().unwrap();
    let pull = socket(SocketType::Pull);
    let ep = pull.bind(&endpoint("ipc", &dir, "fq")).unwrap().to_string();
    let pushes: Vec<Socket> = (0..3)
        .map(|_| {
            let p = socket(SocketType::Push);
            p.connect(&ep).unwrap();
            p
        })
        .collect();
    wait_peers(&pull, 3);
    for (i, push) in pushes.iter().enumerate() {
        for n in 0..20 {
            push.send(format!("{i}:{n}")).unwrap();
        }
    }
    // Wait until every pusher's messages have arrived, then read: one from each
    // pusher in turn, not all of one first.
    std::thread::sleep(Duration::from_millis(200));
    let first_six: Vec<String> = (0..6).map(|_| recv_str(&pull)).collect();
    let mut per_sender: HashMap<char, usize> = HashMap::new();
    for m in &first_six {
        *per_sender.entry(m.chars().next().unwrap()).or_default() += 1;
    }
    assert_eq!(per_sender.len(), 3, "{first_six:?}");
    assert!(per_sender.values().all(|&n| n == 2), "{first_six:?}");
    // And each pusher's own order is kept.
    let mut last: HashMap<char, i32> = HashMap::new();
    for m in first_six
        .iter()
        .cloned()
        .chain((0..54).map(|_| recv_str(&pull)))
    {
        let (who, n) = m.split_once(':').unwrap();
        let n: i32 = n.parse().unwrap();
        let prev = last.insert(who.chars().next().unwrap(), n).unwrap_or(-1);
        assert_eq!(n, prev + 1);
    }
}

#[test]
fn connect_may_come_before_bind() {
    for t in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let ep = match t {
            "tcp" => {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                format!("tcp://127.0.0.1:{}", l.local_addr().unwrap().port())
            }
            _ => endpoint(t, &dir, "late"),
        };
        let push = socket(SocketType::Push);
        push.connect(&ep).unwrap();
        std::thread::sleep(Duration::from_millis(300)); // a few failed attempts
        let pull = socket(SocketType::Pull);
        pull.bind(&ep).unwrap();
        push.send_timeout("late but delivered", Duration::from_secs(10))
            .unwrap();
        assert_eq!(recv_str(&pull), "late but delivered", "over {t}");
    }
}

#[test]
fn multipart_messages_travel_whole() {
    let push = socket(SocketType::Push);
    let pull = socket(SocketType::Pull);
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    push.connect(&ep).unwrap();
    let big = "x".repeat(100_000);
    let m = Message::from_frames(["a".to_owned(), String::new(), "c".into(), big]);
    push.send(m.clone()).unwrap();
    assert_eq!(pull.recv().unwrap(), m);
}

#[test]
fn the_high_water_mark_holds_when_the_puller_stalls() {
    let push = Socket::builder(SocketType::Push)
        .send_hwm(5)
        .linger(Duration::from_secs(5))
        .build()
        .unwrap();
    let pull = Socket::builder(SocketType::Pull)
        .recv_hwm(5)
        .linger(Duration::from_secs(5))
        .build()
        .unwrap();
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    push.connect(&ep).unwrap();
    wait_peers(&push, 1);
    let big = Message::from(vec![0u8; 64 << 10]);
    let mut accepted = 0u64;
    let mut full_in_a_row = 0;
    while full_in_a_row < 5 {
        match push.try_send(big.clone()) {
            Ok(()) => {
                accepted += 1;
                full_in_a_row = 0;
            }
            Err(TrySendError::Full(_)) => {
                full_in_a_row += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
        assert!(accepted < 10_000, "the high-water mark never held");
    }
    // send_timeout times out at the mark too. The kernel may still take a
    // little more meanwhile (TCP grows its buffers while the puller stalls).
    loop {
        match push.send_timeout(big.clone(), Duration::from_millis(50)) {
            Ok(()) => accepted += 1,
            Err(SendTimeoutError::Timeout(_)) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(accepted < 10_000, "the high-water mark never held");
    }
    for _ in 0..accepted {
        assert_eq!(
            pull.recv_timeout(Duration::from_secs(10))
                .unwrap()
                .byte_len(),
            64 << 10
        );
    }
    assert!(matches!(
        pull.recv_timeout(Duration::from_millis(100)),
        Err(RecvTimeoutError::Timeout)
    ));
}

#[test]
fn a_million_messages_arrive_in_order_through_a_slow_puller() {
    let push = Socket::builder(SocketType::Push)
        .send_hwm(100)
        .build()
        .unwrap();
    let pull = Socket::builder(SocketType::Pull)
        .recv_hwm(100)
        .build()
        .unwrap();
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    push.connect(&ep).unwrap();
    const N: u32 = 1_000_000;
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            push.send(i.to_be_bytes().to_vec()).unwrap();
        }
        push.close().unwrap();
    });
    for i in 0..N {
        let m = pull.recv().unwrap();
        assert_eq!(u32::from_be_bytes(m.concat()[..].try_into().unwrap()), i);
        if i % 100_000 == 0 {
            std::thread::sleep(Duration::from_millis(20)); // a slow reader now and then
        }
    }
    sender.join().unwrap();
}

#[test]
fn wrong_directions_are_refused() {
    let push = socket(SocketType::Push);
    let pull = socket(SocketType::Pull);
    assert!(matches!(
        push.try_recv(),
        Err(conduit::TryRecvError::Failed(Error::Misuse(
            Misuse::CannotReceive(SocketType::Push)
        )))
    ));
    let err = pull.send("x").unwrap_err();
    assert!(matches!(
        err.error,
        Error::Misuse(Misuse::CannotSend(SocketType::Pull))
    ));
    assert_eq!(err.error.to_string(), "a PULL socket cannot send");
    assert_eq!(err.into_message(), Message::from("x"));
}

#[test]
fn pair_talks_both_ways_and_turns_away_a_second_peer() {
    let a = socket(SocketType::Pair);
    let ep = a.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let b = socket(SocketType::Pair);
    b.connect(&ep).unwrap();
    wait_peers(&a, 1);
    a.send("to b").unwrap();
    assert_eq!(recv_str(&b), "to b");
    b.send("to a").unwrap();
    assert_eq!(recv_str(&a), "to a");
    let c = socket(SocketType::Pair);
    c.connect(&ep).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.peer_count(), 1);
    a.send("still b").unwrap();
    assert_eq!(recv_str(&b), "still b");
}

#[test]
fn messages_received_before_a_peer_leaves_stay_readable() {
    for kind in [SocketType::Pull, SocketType::Router] {
        let sink = socket(kind);
        let ep = sink.bind("tcp://127.0.0.1:*").unwrap().to_string();
        let source = socket(if kind == SocketType::Pull {
            SocketType::Push
        } else {
            SocketType::Dealer
        });
        source.connect(&ep).unwrap();
        for i in 0..50 {
            source.send(format!("m{i}")).unwrap();
        }
        source.close().unwrap();
        // The peer is gone before the application reads anything...
        std::thread::sleep(Duration::from_millis(200));
        wait_peers(&sink, 0);
        // ...and every message it sent is still there.
        for i in 0..50 {
            let m = sink.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(m.frames().last().unwrap(), &format!("m{i}"), "{kind}");
        }
    }
}
