//! What happens to connections: wrong peers, reconnecting, heartbeats, linger,
//! many peers and endpoints.

use std::io::Write;
use std::time::{Duration, Instant};

use conduit::{Socket, SocketType};

use crate::raw_peer::{opening, raw_connect, read_greeting_and_ready};
use crate::sockets::{self, *};

fn recording(kind: SocketType) -> (conduit::SocketBuilder, Events) {
    sockets::recording(Socket::builder(kind).linger(Duration::from_secs(5)))
}

fn wait_for_event(events: &Events, needle: &str) -> String {
    wait_event(events, needle, 1)
}

#[test]
fn a_wrong_peer_type_is_refused_and_the_right_ones_keep_working() {
    let (builder, events) = recording(SocketType::Push);
    let push = builder.build().unwrap();
    let ep = push.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let good = socket(SocketType::Pull);
    good.connect(&ep).unwrap();
    let wrong = socket(SocketType::Push);
    wrong.connect(&ep).unwrap();
    let refused = wait_for_event(&events, "failed");
    assert!(
        refused.contains("a PUSH socket cannot talk to a PUSH peer"),
        "{refused}"
    );
    wait_peers(&push, 1);
    push.send("for the puller").unwrap();
    assert_eq!(recv_str(&good), "for the puller");
}

#[test]
fn reconnecting_backs_off_up_to_the_maximum() {
    let (builder, events) = recording(SocketType::Push);
    let push = builder
        .reconnect(Duration::from_millis(20), Duration::from_millis(160))
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ep = endpoint("ipc", &dir, "nobody");
    push.connect(&ep).unwrap();
    std::thread::sleep(Duration::from_millis(900));
    let delays: Vec<String> = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| e.strip_prefix(&format!("reconnecting to {ep} in ")))
        .map(|rest| rest.split(' ').next().unwrap().to_owned())
        .collect();
    assert!(delays.len() >= 5, "{delays:?}");
    assert_eq!(&delays[..5], ["20ms", "40ms", "80ms", "160ms", "160ms"]);
    // And once something listens there, it connects.
    let pull = socket(SocketType::Pull);
    pull.bind(&ep).unwrap();
    push.send_timeout("finally", Duration::from_secs(5))
        .unwrap();
    assert_eq!(recv_str(&pull), "finally");
}

#[test]
fn heartbeats_drop_a_silent_peer_and_keep_a_quiet_one() {
    let (builder, events) = recording(SocketType::Pull);
    let pull = builder
        .heartbeat(
            Duration::from_millis(100),
            Duration::from_millis(200),
            Duration::ZERO,
        )
        .build()
        .unwrap();
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    // A peer that completes the handshake, then never says anything again (it
    // does not even answer PING).
    let mut raw = raw_connect(&ep);
    raw.write_all(&opening("PUSH")).unwrap();
    read_greeting_and_ready(&mut *raw);
    wait_peers(&pull, 1);
    let start = Instant::now();
    let dropped = wait_for_event(&events, "dropped");
    assert!(dropped.contains("heartbeat timed out"), "{dropped}");
    assert!(start.elapsed() < Duration::from_secs(2));
    // A conduit peer answers the pings from its own thread, idle or not.
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    wait_peers(&pull, 1);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(pull.peer_count(), 1, "{:?}", events.lock().unwrap());
    push.send("still here").unwrap();
    assert_eq!(recv_str(&pull), "still here");
}

#[test]
fn close_gives_up_after_the_linger_time() {
    let pull = Socket::builder(SocketType::Pull)
        .recv_hwm(1)
        .build()
        .unwrap();
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let push = Socket::builder(SocketType::Push)
        .linger(Duration::from_millis(200))
        .send_hwm(1000)
        .build()
        .unwrap();
    push.connect(&ep).unwrap();
    wait_peers(&push, 1);
    // Far more than the socket buffers hold, and nobody reads.
    let big = vec![0u8; 1 << 20];
    let mut sent = 0;
    while push.try_send(big.clone()).is_ok() && sent < 200 {
        sent += 1;
    }
    let start = Instant::now();
    assert!(push.close().is_err(), "undelivered messages are reported");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn many_peers_on_several_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let pull = socket(SocketType::Pull);
    let tcp = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let ipc = pull
        .bind(&endpoint("ipc", &dir, "many"))
        .unwrap()
        .to_string();
    let pushes: Vec<Socket> = (0..20)
        .map(|i| {
            let p = socket(SocketType::Push);
            p.connect(if i % 2 == 0 { &tcp } else { &ipc }).unwrap();
            p
        })
        .collect();
    wait_peers(&pull, 20);
    for (i, p) in pushes.iter().enumerate() {
        for n in 0..100 {
            p.send(format!("{i}:{n}")).unwrap();
        }
    }
    let mut got = std::collections::HashSet::new();
    for _ in 0..2000 {
        assert!(got.insert(recv_str(&pull)));
    }
}
