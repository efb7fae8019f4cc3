//! PUB/SUB and XPUB/XSUB: prefix matching at the publisher, counted
//! subscriptions, replay after reconnect, and slow subscribers.

use std::io::Write;
use std::time::{Duration, Instant};

use conduit::{Message, RecvTimeoutError, Socket, SocketType};

use crate::raw_peer::{opening_v, raw_connect, read_frame, read_greeting_and_ready};
use crate::sockets::*;

/// Publishes `probe` until every one of `subs` has received a message starting
/// with it (the subscriptions have reached the publisher: ZeroMQ's "slow
/// joiner"), then drains the probes still in flight.
fn sync_all(publisher: &Socket, subs: &[&Socket], probe: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut done = vec![false; subs.len()];
    while done.contains(&false) {
        publisher.send(probe).unwrap();
        for (i, sub) in subs.iter().enumerate() {
            while let Ok(m) = sub.recv_timeout(Duration::from_millis(5)) {
                done[i] |= m.concat().starts_with(probe.as_bytes());
            }
        }
        assert!(Instant::now() < deadline, "subscription never arrived");
    }
    for sub in subs {
        while sub.recv_timeout(Duration::from_millis(50)).is_ok() {}
    }
}

fn sync(publisher: &Socket, sub: &Socket, probe: &str) {
    sync_all(publisher, &[sub], probe);
}

#[test]
fn subscribers_get_what_their_prefixes_match() {
    for t in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let publisher = socket(SocketType::Pub);
        let ep = publisher
            .bind(&endpoint(t, &dir, "pub"))
            .unwrap()
            .to_string();
        let a = socket(SocketType::Sub);
        a.subscribe("a").unwrap();
        a.connect(&ep).unwrap();
        let all = socket(SocketType::Sub);
        all.subscribe("").unwrap();
        all.connect(&ep).unwrap();
        sync_all(&publisher, &[&a, &all], "a-sync");
        for m in ["a.1", "b.1", "a.2", "ab", "b.2"] {
            publisher.send(m).unwrap();
        }
        publisher
            .send(Message::from_frames(["a.multi", "second frame"]))
            .unwrap();
        for want in ["a.1", "a.2", "ab"] {
            assert_eq!(recv_str(&a), want, "over {t}");
        }
        assert_eq!(frames(&a.recv().unwrap()), ["a.multi", "second frame"]);
        for want in ["a.1", "b.1", "a.2", "ab", "b.2"] {
            assert_eq!(recv_str(&all), want, "over {t}");
        }
        assert!(matches!(
            a.recv_timeout(Duration::from_millis(100)),
            Err(RecvTimeoutError::Timeout)
        ));
    }
}

#[test]
fn the_publisher_filters_before_sending() {
    // A hand-written subscriber: whatever arrives on the wire, the publisher sent.
    for minor in [1u8, 0] {
        let publisher = socket(SocketType::Pub);
        let ep = publisher.bind("tcp://127.0.0.1:*").unwrap().to_string();
        let mut raw = raw_connect(&ep);
        raw.write_all(&opening_v("SUB", minor)).unwrap();
        read_greeting_and_ready(&mut *raw);
        if minor == 1 {
            raw.write_all(b"\x04\x0b\x09SUBSCRIBEa").unwrap(); // ZMTP 3.1 command
        } else {
            raw.write_all(b"\x00\x02\x01a").unwrap(); // ZMTP 3.0 message form
        }
        wait_peers(&publisher, 1);
        std::thread::sleep(Duration::from_millis(100));
        for m in ["b.1", "a.1", "c.1", "a.2"] {
            publisher.send(m).unwrap();
        }
        assert_eq!(read_frame(&mut *raw), (0, b"a.1".to_vec()), "3.{minor}");
        assert_eq!(read_frame(&mut *raw), (0, b"a.2".to_vec()), "3.{minor}");
    }
}

#[test]
fn a_sub_sends_the_form_its_publisher_understands() {
    for minor in [1u8, 0] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ep = format!("tcp://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let sub = socket(SocketType::Sub);
        sub.subscribe("topic").unwrap();
        sub.connect(&ep).unwrap();
        let (stream, _) = listener.accept().unwrap();
        let mut raw: Box<dyn crate::raw_peer::Stream> = Box::new(stream);
        raw.write_all(&opening_v("PUB", minor)).unwrap();
        read_greeting_and_ready(&mut *raw);
        let expected = if minor == 1 {
            (0x04, b"\x09SUBSCRIBEtopic".to_vec())
        } else {
            (0x00, b"\x01topic".to_vec())
        };
        assert_eq!(read_frame(&mut *raw), expected, "to a 3.{minor} publisher");
        raw.write_all(b"\x00\x07topic.1").unwrap();
        assert_eq!(recv_str(&sub), "topic.1");
    }
}

#[test]
fn subscriptions_are_counted() {
    let publisher = socket(SocketType::Pub);
    let ep = publisher.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let sub = socket(SocketType::Sub);
    sub.subscribe("t").unwrap();
    sub.subscribe("t").unwrap();
    sub.subscribe("sync").unwrap();
    sub.connect(&ep).unwrap();
    sync(&publisher, &sub, "sync");
    sub.unsubscribe("t").unwrap(); // one of two
    sync(&publisher, &sub, "sync");
    publisher.send("t.still").unwrap();
    assert_eq!(recv_str(&sub), "t.still");
    sub.unsubscribe("t").unwrap(); // the last one
    sync(&publisher, &sub, "sync");
    publisher.send("t.gone").unwrap();
    publisher.send("sync.end").unwrap();
    assert_eq!(recv_str(&sub), "sync.end");
}

#[test]
fn a_reconnecting_subscriber_subscribes_again() {
    let dir = tempfile::tempdir().unwrap();
    let ep = endpoint("ipc", &dir, "restart");
    let sub = Socket::builder(SocketType::Sub)
        .reconnect(Duration::from_millis(20), Duration::from_millis(100))
        .linger(Duration::ZERO)
        .build()
        .unwrap();
    sub.subscribe("x").unwrap();
    sub.connect(&ep).unwrap();
    let first = socket(SocketType::Pub);
    first.bind(&ep).unwrap();
    sync(&first, &sub, "x.first");
    first.close().unwrap();
    // A new publisher on the same endpoint: the subscriber reconnects and tells
    // it what it wants, without the application doing anything.
    let second = socket(SocketType::Pub);
    second.bind(&ep).unwrap();
    sync(&second, &sub, "x.second");
}

#[test]
fn a_slow_subscriber_loses_messages_but_never_slows_the_publisher() {
    let dir = tempfile::tempdir().unwrap();
    // The default high-water mark: the reading subscriber may fall 1000
    // messages (100 ms of this stream) behind, as a busy machine makes it,
    // while the one that never reads overflows well before the end.
    let publisher = Socket::builder(SocketType::Pub).build().unwrap();
    let ep = publisher
        .bind(&endpoint("ipc", &dir, "slow"))
        .unwrap()
        .to_string();
    let slow = Socket::builder(SocketType::Sub)
        .recv_hwm(10)
        .build()
        .unwrap();
    slow.subscribe("").unwrap();
    slow.connect(&ep).unwrap();
    let fast = socket(SocketType::Sub);
    fast.subscribe("").unwrap();
    fast.connect(&ep).unwrap();
    sync_all(&publisher, &[&fast, &slow], "");
    // 20 MB, paced so that a subscriber that reads keeps up; one that does not
    // read overflows its buffers long before the end.
    const N: usize = 5000;
    let payload = vec![7u8; 4096];
    let reader = std::thread::spawn(move || {
        (0..N)
            .map(|_| {
                fast.recv_timeout(Duration::from_secs(10))
                    .unwrap()
                    .byte_len()
            })
            .sum::<usize>()
    });
    let mut slowest_send = Duration::ZERO;
    for _ in 0..N {
        let start = Instant::now();
        publisher.send(payload.clone()).unwrap();
        slowest_send = slowest_send.max(start.elapsed());
        std::thread::sleep(Duration::from_micros(100));
    }
    // No send waited for the subscriber that reads nothing.
    assert!(
        slowest_send < Duration::from_millis(500),
        "{slowest_send:?}"
    );
    assert_eq!(
        reader.join().unwrap(),
        N * 4096,
        "the reading subscriber lost messages"
    );
    let mut slow_got = 0;
    while slow.recv_timeout(Duration::from_millis(200)).is_ok() {
        slow_got += 1;
    }
    assert!(
        slow_got < N / 2,
        "the slow subscriber got {slow_got} of {N}"
    );
}

#[test]
fn xpub_hands_the_application_first_subscriptions_and_last_cancellations() {
    let xpub = socket(SocketType::XPub);
    let ep = xpub.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let s1 = socket(SocketType::Sub);
    s1.connect(&ep).unwrap();
    let s2 = socket(SocketType::Sub);
    s2.connect(&ep).unwrap();
    wait_peers(&xpub, 2);
    s1.subscribe("w").unwrap();
    assert_eq!(
        xpub.recv_timeout(Duration::from_secs(5)).unwrap().concat(),
        "\x01w"
    );
    s2.subscribe("w").unwrap();
    // (Two connections: let s2's subscription land before s1's cancellation.)
    assert!(
        xpub.recv_timeout(Duration::from_millis(200)).is_err(),
        "not the first"
    );
    s1.unsubscribe("w").unwrap();
    assert!(
        xpub.recv_timeout(Duration::from_millis(200)).is_err(),
        "not the last"
    );
    // The last subscriber to "w" leaves without unsubscribing: that cancels it too.
    s2.close().unwrap();
    assert_eq!(
        xpub.recv_timeout(Duration::from_secs(5)).unwrap().concat(),
        "\x00w"
    );
    // And XPUB publishes like PUB.
    s1.subscribe("n").unwrap();
    assert_eq!(
        xpub.recv_timeout(Duration::from_secs(5)).unwrap().concat(),
        "\x01n"
    );
    xpub.send("news").unwrap();
    assert_eq!(recv_str(&s1), "news");
}

#[test]
fn xsub_subscribes_by_sending_and_filters_what_it_receives() {
    let xpub = socket(SocketType::XPub);
    let ep = xpub.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let xsub = socket(SocketType::XSub);
    xsub.connect(&ep).unwrap();
    wait_peers(&xpub, 1);
    xsub.send(b"\x01q".to_vec()).unwrap();
    assert_eq!(
        xpub.recv_timeout(Duration::from_secs(5)).unwrap().concat(),
        "\x01q"
    );
    xpub.send("z.not wanted").unwrap();
    xpub.send("q.wanted").unwrap();
    assert_eq!(recv_str(&xsub), "q.wanted");
    xsub.send(b"\x00q".to_vec()).unwrap();
    assert_eq!(
        xpub.recv_timeout(Duration::from_secs(5)).unwrap().concat(),
        "\x00q"
    );
    // Anything else an XSUB sends goes upstream as it is.
    xsub.send("hello upstream").unwrap();
    assert_eq!(
        xpub.recv_timeout(Duration::from_secs(5)).unwrap().concat(),
        "hello upstream"
    );
}

/// A burst to many subscribers leaves a tail short of a batch in every queue;
/// with this many the socket's I/O side judges them together (the sender
/// paused, so all are written), and each subscriber gets the whole burst,
/// in order.
#[test]
fn a_burst_to_many_subscribers_reaches_each_whole() {
    const SUBS: usize = 24;
    // Under the default high-water marks, and not a whole number of batches.
    const BURST: usize = 600;
    let dir = tempfile::tempdir().unwrap();
    let publisher = socket(SocketType::Pub);
    let ep = publisher
        .bind(&endpoint("ipc", &dir, "burst"))
        .unwrap()
        .to_string();
    let subs: Vec<Socket> = (0..SUBS)
        .map(|_| {
            let sub = socket(SocketType::Sub);
            sub.subscribe("").unwrap();
            sub.connect(&ep).unwrap();
            sub
        })
        .collect();
    sync_all(&publisher, &subs.iter().collect::<Vec<_>>(), "probe");
    for i in 0..BURST {
        publisher.send(format!("m{i}")).unwrap();
    }
    for (s, sub) in subs.iter().enumerate() {
        for i in 0..BURST {
            let m = sub
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("subscriber {s} got {i} of {BURST}: {e}"));
            assert_eq!(m.concat(), format!("m{i}").as_bytes(), "subscriber {s}");
        }
    }
}

/// A SUB subscribed to `topic`, connecting to `ep`.
fn subscriber(ep: &str, topic: &str) -> Socket {
    let sub = socket(SocketType::Sub);
    sub.subscribe(topic).unwrap();
    sub.connect(ep).unwrap();
    sub
}

/// The messages `sub` receives until `last` (inclusive), as strings.
fn recv_until(sub: &Socket, last: &str, what: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let m = sub
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{what}: after {} messages: {e}", got.len()));
        let s = String::from_utf8(m.concat().to_vec()).unwrap();
        let done = s == last;
        got.push(s);
        if done {
            return got;
        }
    }
}

/// The numbered messages a burst publishes: topics `a` and `b` in turn, and
/// every 97th large (past the size the publisher batches), so that large
/// ones fall between and inside batches.
fn burst_message(i: usize) -> String {
    let topic = if i % 2 == 0 { "a" } else { "b" };
    let pad = if i % 97 == 0 { 20_000 } else { 0 };
    format!("{topic}{i:05}{}", "-".repeat(pad))
}

#[test]
fn subscribers_to_every_topic_and_to_some_each_get_theirs_in_order() {
    // Subscribers to every topic over tcp and ipc take a PUB's shared batch;
    // a topic subscriber and an inproc one are offered each message; all
    // must see exactly their messages in the order sent, across whole
    // batches, the I/O thread's tails and a send after a pause.
    const BURST: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let publisher = socket(SocketType::Pub);
    let tcp = publisher.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let ipc = publisher
        .bind(&endpoint("ipc", &dir, "mixed"))
        .unwrap()
        .to_string();
    let inproc = format!("inproc://mixed-{}", std::process::id());
    publisher.bind(&inproc).unwrap();
    let all_tcp = subscriber(&tcp, "");
    let all_ipc = subscriber(&ipc, "");
    let only_a = subscriber(&tcp, "a");
    let all_inproc = subscriber(&inproc, "");
    let subs = [&all_tcp, &all_ipc, &only_a, &all_inproc];
    sync_all(&publisher, &subs, "a-probe");
    let sent: Vec<String> = (0..BURST + 3).map(burst_message).collect();
    let wanted_a: Vec<String> = sent
        .iter()
        .filter(|m| m.starts_with('a'))
        .cloned()
        .collect();
    // Each read as it arrives (a subscriber left unread would drop messages
    // at its high-water mark, as it should).
    std::thread::scope(|scope| {
        let readers: Vec<_> = [
            (&all_tcp, "tcp", &sent),
            (&all_ipc, "ipc", &sent),
            (&all_inproc, "inproc", &sent),
            (&only_a, "topic a", &wanted_a),
        ]
        .into_iter()
        .map(|(sub, what, wanted)| {
            scope.spawn(move || {
                let got = recv_until(sub, wanted.last().unwrap(), what);
                assert!(
                    &got == wanted,
                    "{what}: {} messages, not those sent",
                    got.len()
                );
            })
        })
        .collect();
        for m in &sent[..BURST] {
            publisher.send(m.as_str()).unwrap();
        }
        // The pause is what is tested (no event to wait for): past the
        // burst window, the next send goes out at once, and the two after it
        // make a tail for the I/O thread to hand out.
        std::thread::sleep(Duration::from_millis(20));
        for m in &sent[BURST..] {
            publisher.send(m.as_str()).unwrap();
        }
        for r in readers {
            r.join().unwrap();
        }
    });
}

#[test]
fn a_publisher_closed_right_after_a_burst_delivers_all_of_it() {
    // The end of a burst waits in the PUB's batch for the sender to pause;
    // closing must send it, not drop it.
    const BURST: usize = 300;
    let publisher = socket(SocketType::Pub);
    let ep = publisher.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let sub = subscriber(&ep, "");
    sync(&publisher, &sub, "probe");
    let sent: Vec<String> = (0..BURST).map(|i| format!("m{i}")).collect();
    for m in &sent {
        publisher.send(m.as_str()).unwrap();
    }
    publisher.close().unwrap();
    let got = recv_until(&sub, sent.last().unwrap(), "after close");
    assert!(got == sent, "{} messages, not those sent", got.len());
}

#[test]
fn a_subscriber_narrowing_its_topics_mid_stream_keeps_its_order() {
    // From every topic (the shared batch) to one (offered message by
    // message) and back while the publisher streams: no message twice, none
    // out of order, and after each change has reached the publisher, only
    // what the subscriber asked for.
    let publisher = socket(SocketType::Pub);
    let ep = publisher.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let sub = subscriber(&ep, "");
    sync(&publisher, &sub, "a-probe");
    let mut seq = 0usize;
    let mut burst = |n: usize| {
        for _ in 0..n {
            publisher.send(burst_message(seq).as_str()).unwrap();
            seq += 1;
        }
        // The change's probe: a topic-a message after the burst.
        publisher.send(format!("a-end{seq}")).unwrap();
        format!("a-end{seq}")
    };
    let mut received = Vec::new();
    let end = burst(700);
    received.extend(recv_until(&sub, &end, "all topics"));
    sub.subscribe("a").unwrap();
    sub.unsubscribe("").unwrap();
    // Wait until a b message no longer comes through: the change is in force.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publisher.send("b-probe").unwrap();
        publisher.send("a-probe").unwrap();
        let mut saw_b = false;
        while let Ok(m) = sub.recv_timeout(Duration::from_millis(20)) {
            saw_b |= m.concat().starts_with(b"b-probe");
        }
        if !saw_b {
            break;
        }
        assert!(Instant::now() < deadline, "the cancellation never arrived");
    }
    let end = burst(700);
    let narrowed = recv_until(&sub, &end, "topic a");
    assert!(
        narrowed.iter().all(|m| m.starts_with('a')),
        "a b message after the change"
    );
    received.extend(narrowed);
    sub.subscribe("").unwrap();
    sync(&publisher, &sub, "b-probe");
    let end = burst(700);
    received.extend(recv_until(&sub, &end, "all topics again"));
    // Numbered messages only (the probes are not): strictly increasing.
    let numbered: Vec<usize> = received
        .iter()
        .filter(|m| !m.contains("-end") && !m.contains("probe"))
        .map(|m| m[1..6].parse().unwrap())
        .collect();
    assert!(
        numbered.windows(2).all(|w| w[0] < w[1]),
        "a message twice or out of order"
    );
    // Whole where the subscriber took every topic: the first and last bursts.
    assert!(numbered.starts_with(&(0..700).collect::<Vec<_>>()));
    assert!(numbered.ends_with(&(1400..2100).collect::<Vec<_>>()));
}
