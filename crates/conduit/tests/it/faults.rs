//! Faults with real processes: a peer killed mid-message, a server that crashes
//! and comes back, thousands of connections coming and going, and the socket
//! files of `ipc://` endpoints.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use conduit::{ChannelBuilder, RecvTimeoutError, Socket, SocketType};

use crate::raw_peer::opening;
use crate::server_child::{Config, Raw, Server, serve_if_child};
use crate::sockets::{self, Events, recv_str, socket, wait_event, wait_peers};
use crate::support::{child_command, child_role};

/// A socket of `kind` recording its events, reconnecting quickly.
fn recording(kind: SocketType) -> (conduit::SocketBuilder, Events) {
    sockets::recording(
        Socket::builder(kind)
            .linger(Duration::from_secs(5))
            .reconnect(Duration::from_millis(20), Duration::from_millis(200)),
    )
}

/// A tcp endpoint on a port that was free a moment ago, or an ipc path in `dir`:
/// one that a restarted server can bind again.
fn fixed_endpoint(transport: &str, dir: &tempfile::TempDir) -> String {
    match transport {
        "tcp" => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            format!("tcp://127.0.0.1:{port}")
        }
        _ => format!("ipc://{}/server.sock", dir.path().display()),
    }
}

#[test]
fn a_peer_killed_mid_message_is_reported_and_the_others_keep_working() {
    const TEST: &str = "faults::a_peer_killed_mid_message_is_reported_and_the_others_keep_working";
    if child_role(TEST).is_some() {
        // A PUSH peer that writes one whole message and most of the next (two
        // frames of three, the last one cut short), then waits to be killed.
        let mut raw = Raw::connect(&std::env::var("CONDUIT_TEST_CONNECT").unwrap());
        raw.write_all(&opening("PUSH")).unwrap();
        raw.write_all(b"\x00\x05whole\x01\x03one\x01\x03two\x00\x10half")
            .unwrap();
        println!("WROTE");
        std::io::stdout().flush().unwrap();
        std::thread::sleep(Duration::from_secs(60));
        return;
    }
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let (builder, events) = recording(SocketType::Pull);
        let pull = builder.build().unwrap();
        let ep = pull
            .bind(&crate::sockets::endpoint(transport, &dir, "killed"))
            .unwrap()
            .to_string();
        let good = socket(SocketType::Push);
        good.connect(&ep).unwrap();
        wait_peers(&pull, 1);

        let mut child = child_command(TEST, "dies")
            .env("CONDUIT_TEST_CONNECT", &ep)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("WROTE") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "the child ended early"
            );
        }
        assert_eq!(recv_str(&pull), "whole", "over {transport}");
        wait_peers(&pull, 2);
        child.kill().unwrap(); // SIGKILL, halfway through its second message
        child.wait().unwrap();

        let dropped = wait_event(&events, "dropped", 1);
        assert!(
            dropped.contains("peer closed the connection in the middle of a message"),
            "over {transport}: {dropped}"
        );
        wait_peers(&pull, 1);
        // No part of the cut message is delivered, and the good peer goes on.
        assert!(matches!(
            pull.recv_timeout(Duration::from_millis(100)),
            Err(RecvTimeoutError::Timeout)
        ));
        good.send("still here").unwrap();
        assert_eq!(recv_str(&pull), "still here", "over {transport}");
    }
}

#[test]
fn a_restarted_server_is_reconnected_to_and_traffic_continues() {
    const TEST: &str = "faults::a_restarted_server_is_reconnected_to_and_traffic_continues";
    if serve_if_child(TEST) {
        return;
    }
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(SocketType::Pull, &fixed_endpoint(transport, &dir));
        let mut first = Server::start(TEST, &config);
        let (builder, events) = recording(SocketType::Push);
        let push = builder.build().unwrap();
        push.connect(&config.endpoint).unwrap();
        for i in 0..10 {
            push.send(format!("first-{i}")).unwrap();
        }
        first.wait_line("RECV first-9", Duration::from_secs(10));

        first.kill(); // a crash: no close, the ipc file stays behind
        let gone = wait_event(&events, &format!("reconnecting to {}", config.endpoint), 1);
        assert!(gone.contains("reconnecting"), "{gone}");
        wait_peers(&push, 0);

        let mut second = Server::start(TEST, &config);
        wait_event(&events, "handshake done", 2);
        for i in 0..100 {
            push.send_timeout(format!("second-{i}"), Duration::from_secs(10))
                .unwrap();
        }
        second.wait_line("RECV second-99", Duration::from_secs(10));
        let received: Vec<&String> = second
            .seen
            .iter()
            .filter(|l| l.starts_with("RECV "))
            .collect();
        let expected: Vec<String> = (0..100).map(|i| format!("RECV second-{i}")).collect();
        assert_eq!(
            received,
            expected.iter().collect::<Vec<_>>(),
            "over {transport}"
        );
    }
}

#[test]
fn a_restarted_publisher_gets_the_subscriptions_again() {
    const TEST: &str = "faults::a_restarted_publisher_gets_the_subscriptions_again";
    if serve_if_child(TEST) {
        return;
    }
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(SocketType::Pub, &fixed_endpoint(transport, &dir));
        let (builder, events) = recording(SocketType::Sub);
        let sub = builder.build().unwrap();
        sub.subscribe("x.").unwrap();
        sub.connect(&config.endpoint).unwrap();

        // Receives until a message from publisher `tag` arrives; every message
        // must be one subscribed to.
        let expect_from = |tag: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let m = sub.recv_timeout(left).unwrap();
                let text = String::from_utf8(m.concat().to_vec()).unwrap();
                assert!(text.starts_with("x."), "over {transport}: got {text}");
                if text.starts_with(&format!("x.{tag}.")) {
                    return;
                }
            }
        };

        let mut first = Server::start(TEST, &config);
        first.command("PUBLISH first");
        expect_from("first");
        first.kill();
        wait_event(&events, "reconnecting", 1);

        let mut second = Server::start(TEST, &config);
        second.command("PUBLISH second");
        // Nobody subscribes again by hand: the SUB tells the new process.
        expect_from("second");
        wait_event(&events, "handshake done", 2);
    }
}

/// What the cycling child measured, once warm and at the end.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    descriptors: usize,
    threads: usize,
    rss_kib: u64,
}

fn sample() -> Sample {
    let count = |dir| std::fs::read_dir(dir).unwrap().count();
    Sample {
        descriptors: count("/proc/self/fd"),
        threads: count("/proc/self/task"),
        rss_kib: crate::server_child::proc_status_kib(std::process::id(), "VmRSS"),
    }
}

/// One connection that comes and goes, of one of several kinds, alternating
/// between `endpoints`. Returns whether it delivered a message.
fn cycle(i: usize, endpoints: &[String]) -> bool {
    let ep = &endpoints[i % endpoints.len()];
    match i % 10 {
        // A whole socket: its threads, its reconnector, its close.
        0 => {
            let push = Socket::builder(SocketType::Push)
                .linger(Duration::from_secs(5))
                .build()
                .unwrap();
            push.connect(ep).unwrap();
            push.send("socket").unwrap();
            push.close().unwrap();
            true
        }
        // A peer that hangs up before the handshake.
        1 => {
            drop(Raw::connect(ep));
            false
        }
        // A peer that is not ZMTP at all.
        2 => {
            let mut raw = Raw::connect(ep);
            let _ = raw.write_all(b"GET / HTTP/1.0\r\n\r\n");
            false
        }
        // A channel: connect, one message, close.
        _ => {
            let channel = ChannelBuilder::new()
                .socket_type(SocketType::Push)
                .connect(ep)
                .unwrap();
            channel.send("channel").unwrap();
            channel.close().unwrap();
            true
        }
    }
}

#[test]
fn ten_thousand_connect_disconnect_cycles_leak_nothing() {
    const TEST: &str = "faults::ten_thousand_connect_disconnect_cycles_leak_nothing";
    const CYCLES: usize = 10_000;
    const WARM: usize = 1_000;
    if child_role(TEST).is_some() {
        // Everything in this process is ours, so /proc/self counts only this.
        let dir = tempfile::tempdir().unwrap();
        let pull = Arc::new(socket(SocketType::Pull));
        let endpoints = vec![
            pull.bind("tcp://127.0.0.1:*").unwrap().to_string(),
            pull.bind(&format!("ipc://{}/cycles.sock", dir.path().display()))
                .unwrap()
                .to_string(),
        ];
        let received = Arc::new(AtomicUsize::new(0));
        {
            let (pull, received) = (pull.clone(), received.clone());
            std::thread::spawn(move || {
                while pull.recv().is_ok() {
                    received.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Waits until every connection so far is gone and its message read,
        // then measures.
        let settle = |sent: usize, floor: Option<&Sample>| {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let now = sample();
                let done = pull.peer_count() == 0
                    && received.load(Ordering::Relaxed) == sent
                    && floor.is_none_or(|f| {
                        now.descriptors <= f.descriptors && now.threads <= f.threads
                    });
                if done || Instant::now() > deadline {
                    return now;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let start = Instant::now();
        let mut sent = 0;
        for i in 0..WARM {
            sent += usize::from(cycle(i, &endpoints));
        }
        let warm = settle(sent, None);
        for i in WARM..CYCLES {
            sent += usize::from(cycle(i, &endpoints));
        }
        let end = settle(sent, Some(&warm));
        let took = start.elapsed();
        assert_eq!(received.load(Ordering::Relaxed), sent, "messages lost");
        println!(
            "RESULT warm {} {} {} end {} {} {} took {}",
            warm.descriptors,
            warm.threads,
            warm.rss_kib,
            end.descriptors,
            end.threads,
            end.rss_kib,
            took.as_millis()
        );
        return;
    }
    let out = child_command(TEST, "cycles")
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no result in {stdout}"));
    let n: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    let (warm, end) = (&n[0..3], &n[3..6]);
    eprintln!("{CYCLES} cycles: {line}");
    assert!(end[0] <= warm[0], "descriptors grew: {line}");
    assert!(end[1] <= warm[1], "threads grew: {line}");
    // 9,000 cycles after warming up: 4 MiB is under 500 bytes a cycle.
    assert!(end[2] <= warm[2] + 4096, "memory grew: {line}");
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn ipc_path(endpoint: &str) -> std::path::PathBuf {
    endpoint.strip_prefix("ipc://").unwrap().into()
}

#[test]
fn ipc_socket_files_are_owner_only_unless_widened() {
    let dir = tempfile::tempdir().unwrap();
    let ep = |name: &str| format!("ipc://{}/{name}.sock", dir.path().display());

    let default = socket(SocketType::Pull);
    default.bind(&ep("default")).unwrap();
    assert_eq!(mode_of(&ipc_path(&ep("default"))), 0o600);
    let widened = Socket::builder(SocketType::Pull)
        .ipc_mode(0o660)
        .build()
        .unwrap();
    widened.bind(&ep("group")).unwrap();
    assert_eq!(mode_of(&ipc_path(&ep("group"))), 0o660);

    let listener = ChannelBuilder::new().listen(&ep("channel")).unwrap();
    assert_eq!(mode_of(&ipc_path(&ep("channel"))), 0o600);
    let listener_wide = ChannelBuilder::new()
        .ipc_mode(0o666)
        .listen(&ep("channel-wide"))
        .unwrap();
    assert_eq!(mode_of(&ipc_path(&ep("channel-wide"))), 0o666);
    drop((listener, listener_wide));
}

#[test]
fn ipc_socket_files_are_removed_on_close_but_never_anothers() {
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}/mine.sock", dir.path().display());
    let path = ipc_path(&ep);

    let closed = socket(SocketType::Pull);
    closed.bind(&ep).unwrap();
    assert!(path.exists());
    closed.close().unwrap();
    assert!(!path.exists(), "close leaves the file");

    let dropped = socket(SocketType::Pull);
    dropped.bind(&ep).unwrap();
    drop(dropped);
    assert!(!path.exists(), "drop leaves the file");

    drop(ChannelBuilder::new().listen(&ep).unwrap());
    assert!(!path.exists(), "a listener leaves the file");

    // Someone removes our file and binds the path again: closing ours must not
    // remove theirs.
    let old = socket(SocketType::Pull);
    old.bind(&ep).unwrap();
    std::fs::remove_file(&path).unwrap();
    let new = socket(SocketType::Pull);
    new.bind(&ep).unwrap();
    old.close().unwrap();
    assert!(
        path.exists(),
        "closing removed a file that another socket bound"
    );
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    push.send("to the new one").unwrap();
    assert_eq!(recv_str(&new), "to the new one");
}

/// The error and its causes, as `conduit` prints them.
fn chain(e: &conduit::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

#[test]
fn a_stale_ipc_file_is_reclaimed_and_a_live_one_refused() {
    const TEST: &str = "faults::a_stale_ipc_file_is_reclaimed_and_a_live_one_refused";
    if serve_if_child(TEST) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}/crash.sock", dir.path().display());
    let path = ipc_path(&ep);
    let mut server = Server::start(TEST, &Config::new(SocketType::Pull, &ep));

    // While the other process is alive, the path is refused, and its socket
    // still works.
    let err = socket(SocketType::Pull).bind(&ep).unwrap_err();
    assert!(
        chain(&err).contains("another process is listening there"),
        "{}",
        chain(&err)
    );
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    push.send("to the live one").unwrap();
    server.wait_line("RECV to the live one", Duration::from_secs(10));
    drop(push);

    // It crashes: the file stays, and the next bind takes it over.
    server.kill();
    assert!(
        std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_socket()
    );
    let pull = socket(SocketType::Pull);
    pull.bind(&ep).unwrap();
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    push.send("to the new one").unwrap();
    assert_eq!(recv_str(&pull), "to the new one");

    // A path that is not a socket is never removed.
    let file = dir.path().join("data.txt");
    std::fs::write(&file, "precious").unwrap();
    let err = socket(SocketType::Pull)
        .bind(&format!("ipc://{}", file.display()))
        .unwrap_err();
    assert!(
        chain(&err).contains("exists and is not a socket"),
        "{}",
        chain(&err)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");
}

/// A PUB sends to its subscribers while holding its socket's lock. A send that
/// drains a queue a send had found full, or that finds the subscriber gone,
/// wakes the application threads waiting for room, and must not take that lock
/// again: a publisher sending without pause to subscribers that stall, read
/// again and vanish keeps publishing. (It deadlocked in a soak run.)
#[test]
fn a_publisher_outlives_subscribers_that_stall_and_vanish() {
    use std::sync::atomic::AtomicBool;
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let publisher = Socket::builder(SocketType::Pub)
            .send_hwm(4)
            .linger(Duration::from_secs(1))
            .build()
            .unwrap();
        let ep = publisher
            .bind(&crate::sockets::endpoint(transport, &dir, "pub"))
            .unwrap()
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (done, finished) = std::sync::mpsc::channel();
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                publisher.send(vec![7u8; 4 << 10]).unwrap();
            }
            let _ = done.send(());
        });
        for _ in 0..40 {
            let sub = socket(SocketType::Sub);
            sub.subscribe("").unwrap();
            sub.connect(&ep).unwrap();
            // Stall until the publisher's queue for us is full, read a burst,
            // stall again, and vanish with messages unread.
            let _ = sub.recv_timeout(Duration::from_secs(2));
            std::thread::sleep(Duration::from_millis(5));
            for _ in 0..50 {
                let _ = sub.recv_timeout(Duration::from_millis(50));
            }
            std::thread::sleep(Duration::from_millis(5));
            drop(sub);
        }
        let good = socket(SocketType::Sub);
        good.subscribe("").unwrap();
        good.connect(&ep).unwrap();
        good.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("over {transport}: the publisher is stuck: {e}"));
        stop.store(true, Ordering::Relaxed);
        finished
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("over {transport}: the publisher is stuck: {e}"));
    }
}
