//! Nothing a socket promised to deliver is lost: not through a receiver slower
//! than the sender, and not at close. (Channels and pipes: `contract.rs`; the
//! PUSH/PULL million over tcp: `pattern_pipeline.rs`.)

use std::time::Duration;

use conduit::{RecvTimeoutError, Socket, SocketType};

use crate::sockets::{self, Events, endpoint};
use crate::support::{number_of, numbered};

fn recording(kind: SocketType, hwm: usize) -> (Socket, Events) {
    let (builder, events) = sockets::recording(Socket::builder(kind).send_hwm(hwm).recv_hwm(hwm));
    (builder.build().unwrap(), events)
}

/// The sender's link closed cleanly: a "closed" event and no "dropped" one.
fn assert_closed_cleanly(events: &Events, transport: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !events
        .lock()
        .unwrap()
        .iter()
        .any(|e| e.starts_with("closed "))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "over {transport}: {:?}",
            events.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let events = events.lock().unwrap();
    assert!(
        !events.iter().any(|e| e.starts_with("dropped ")),
        "over {transport}: {events:?}"
    );
}

/// A million messages through a PUSH whose sends wait at a small high-water mark,
/// to a PULL that stops reading now and then: each arrives once, in order, and
/// nothing else does. Over ipc (the tcp run is in `pattern_pipeline.rs`).
#[test]
fn a_million_messages_through_a_slow_puller_over_ipc_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (pull, events) = recording(SocketType::Pull, 100);
    let ep = pull
        .bind(&endpoint("ipc", &dir, "million"))
        .unwrap()
        .to_string();
    let push = Socket::builder(SocketType::Push)
        .send_hwm(100)
        .build()
        .unwrap();
    push.connect(&ep).unwrap();
    const N: u32 = 1_000_000;
    let sender = std::thread::spawn(move || {
        for i in 0..N {
            push.send(numbered(i)).unwrap();
        }
        push.close().unwrap();
    });
    for i in 0..N {
        let m = pull.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(number_of(&m), i);
        if i % 100_000 == 0 {
            std::thread::sleep(Duration::from_millis(50)); // the sender must wait
        }
    }
    sender.join().unwrap();
    assert_closed_cleanly(&events, "ipc");
    assert!(matches!(
        pull.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout)
    ));
}

/// PAIR sockets: everything sent before `close` is received, in order, before
/// the link is reported closed, and nothing after.
#[test]
fn a_pair_socket_delivers_everything_sent_before_close() {
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let (a, events) = recording(SocketType::Pair, 1000);
        let ep = a
            .bind(&endpoint(transport, &dir, "pair"))
            .unwrap()
            .to_string();
        let b = Socket::new(SocketType::Pair).unwrap();
        b.connect(&ep).unwrap();
        const N: u32 = 100_000;
        let sender = std::thread::spawn(move || {
            for i in 0..N {
                b.send(numbered(i)).unwrap();
            }
            // Most are still queued here; close must deliver every one.
            b.close().unwrap();
        });
        for i in 0..N {
            let m = a.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(number_of(&m), i, "over {transport}");
        }
        sender.join().unwrap();
        assert_closed_cleanly(&events, transport);
        assert!(matches!(
            a.recv_timeout(Duration::from_millis(100)),
            Err(RecvTimeoutError::Timeout)
        ));
    }
}

/// An XPUB whose receive queue filled up: once the application reads, the
/// subscriber's connection is read again, and everything it sent upstream
/// arrives, in order: its messages and its subscriptions (which wait for room
/// in the same queue), each of those then in force. The regression test for an
/// XPUB that did not wake its connection threads when its full queue was read:
/// the fifth item never came.
#[test]
fn an_xpub_reads_again_once_its_full_queue_is_read() {
    const N: usize = 50;
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let xpub = Socket::builder(SocketType::XPub)
            .recv_hwm(4)
            .linger(Duration::from_secs(5))
            .build()
            .unwrap();
        let ep = xpub
            .bind(&endpoint(transport, &dir, "xpub"))
            .unwrap()
            .to_string();
        let xsub = crate::sockets::socket(SocketType::XSub);
        xsub.connect(&ep).unwrap();
        // Both ends in service: an XSUB with no publisher yet drops messages.
        crate::sockets::wait_peers(&xpub, 1);
        crate::sockets::wait_peers(&xsub, 1);
        // A subscription (a SUBSCRIBE command on the wire), then a message, each
        // time: ten times what the XPUB's queue holds, none read yet.
        for i in 0..N {
            xsub.send([&b"\x01"[..], format!("topic.{i}").as_bytes()].concat())
                .unwrap();
            xsub.send(format!("upstream {i}")).unwrap();
        }
        for i in 0..N {
            for expected in [format!("\x01topic.{i}"), format!("upstream {i}")] {
                let m = xpub
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("over {transport}, {expected:?}: {e}"));
                assert_eq!(m.concat(), expected, "over {transport}");
            }
        }
        // Every subscription is in force: the XSUB gets what is published to it.
        for i in 0..N {
            xpub.send(format!("topic.{i} news")).unwrap();
        }
        for i in 0..N {
            let m = xsub.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(m.concat(), format!("topic.{i} news"), "over {transport}");
        }
    }
}
