//! A bound socket is an open door: whatever a peer sends, the socket drops that
//! connection promptly with a logged reason (a `SocketEvent`), keeps its memory
//! bounded, and keeps serving the well-behaved peer it already has and the next
//! one that comes.
//!
//! The socket under attack runs in a child process (`server_child`), so its
//! peak memory (`VmHWM`) is its own; every case runs over tcp and ipc.

use std::io::Write;
use std::time::{Duration, Instant};

use conduit::{Socket, SocketType};

use crate::raw_peer::opening;
use crate::server_child::{Config, Raw, Server, serve_if_child};
use crate::sockets::{socket, wait_peers};

/// The attacked socket's largest message.
const MAX_MESSAGE: usize = 1 << 20;
/// Its handshake timeout, shorter than the default so the slow cases are quick.
const HANDSHAKE: Duration = Duration::from_secs(1);
/// How much the attacked process's peak memory may grow during an attack. The
/// attacks that would be buffered (the streamed oversize frames) send 64 times
/// this; one that were reserved (2^62 bytes) would abort the process.
const MEMORY_SLACK_KIB: u64 = 16 << 10;

/// What a hostile peer does, and what the socket must log about it.
struct Case {
    /// Writes to the connection (from its own thread, so it may go on writing).
    attack: fn(Raw),
    /// Text the logged event must contain.
    reason: &'static str,
    /// Whether the socket tells the peer why in an ERROR command (it does once it
    /// has the peer's greeting, for everything but the peer's silence). None
    /// where the peer is still sending when the socket closes: over TCP the
    /// reset that unread input causes may then destroy the ERROR in flight.
    error_sent: Option<bool>,
    /// How long until the connection is dropped, at most.
    within: Duration,
}

fn endpoint_for(transport: &str, dir: &tempfile::TempDir) -> String {
    match transport {
        "tcp" => "tcp://127.0.0.1:*".into(),
        _ => format!("ipc://{}/door.sock", dir.path().display()),
    }
}

/// Runs `case` against a PULL socket over each transport.
fn attack(test: &str, case: Case) {
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(SocketType::Pull, &endpoint_for(transport, &dir));
        config.handshake_timeout = HANDSHAKE;
        config.max_message_size = MAX_MESSAGE;
        let mut server = Server::start(test, &config);

        // A well-behaved peer, in service before the attack.
        let good = socket(SocketType::Push);
        good.connect(&server.endpoint).unwrap();
        good.send("before").unwrap();
        server.wait_line("RECV before", Duration::from_secs(10));
        let peak_before = server.status_kib("VmHWM");

        let raw = Raw::connect(&server.endpoint);
        let mut reader = raw.try_clone();
        let start = Instant::now();
        let attacker = std::thread::spawn(move || (case.attack)(raw));
        let event = server.next_line(case.reason, case.within + Duration::from_secs(2));
        let took = start.elapsed();
        assert!(
            event.starts_with("EVENT handshake with") || event.starts_with("EVENT dropped"),
            "over {transport}: {event}"
        );
        assert!(
            took <= case.within,
            "over {transport}: dropped after {took:?}, expected within {:?}",
            case.within
        );
        // The connection is closed on the hostile peer, after an ERROR if the
        // peer got as far as a greeting.
        let received = reader
            .read_until_closed(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("over {transport}: the connection is still open"));
        let told = received.windows(6).any(|w| w == b"\x05ERROR");
        if let Some(expected) = case.error_sent {
            assert_eq!(
                told, expected,
                "over {transport}: ERROR sent: {told}, got {received:?}"
            );
        }
        attacker.join().unwrap();

        // The good peer was not disturbed, and a new one is served.
        good.send("after").unwrap();
        server.wait_line("RECV after", Duration::from_secs(10));
        let newcomer = socket(SocketType::Push);
        newcomer.connect(&server.endpoint).unwrap();
        newcomer.send("newcomer").unwrap();
        server.wait_line("RECV newcomer", Duration::from_secs(10));

        let peak_after = server.status_kib("VmHWM");
        assert!(
            peak_after <= peak_before + MEMORY_SLACK_KIB,
            "over {transport}: peak memory grew from {peak_before} KiB to {peak_after} KiB"
        );
    }
}

/// Writes `bytes` and keeps the connection open (reading nothing) for a while,
/// so that it is the socket that closes it.
fn send_and_linger(mut raw: Raw, bytes: &[u8]) {
    let _ = raw.write_all(bytes);
    std::thread::sleep(Duration::from_millis(500));
}

/// A ZMTP 3.1 greeting with `mechanism`.
fn greeting(mechanism: &[u8]) -> Vec<u8> {
    let mut g = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1];
    g.extend_from_slice(mechanism);
    g.resize(64, 0);
    g
}

/// Our opening as a PUSH peer, then `traffic`.
fn after_handshake(traffic: &[u8]) -> Vec<u8> {
    [&opening("PUSH")[..], traffic].concat()
}

/// Streams `header` and then `len` bytes of body, as fast as the socket takes
/// them, until it closes on us.
fn stream_body(mut raw: Raw, header: &[u8], len: usize) {
    let _ = raw.write_all(&after_handshake(header));
    let chunk = vec![0x5Au8; 64 << 10];
    let mut sent = 0;
    while sent < len {
        if raw.write_all(&chunk).is_err() {
            return;
        }
        sent += chunk.len();
    }
}

/// A test's name for its server child; in the child, serves and returns from
/// the test.
macro_rules! serve_in_child {
    ($name:ident) => {{
        const TEST: &str = concat!("hostile_peers::", stringify!($name));
        if serve_if_child(TEST) {
            return;
        }
        TEST
    }};
}

macro_rules! hostile {
    ($(#[$doc:meta])* $name:ident, $case:expr) => {
        $(#[$doc])*
        #[test]
        fn $name() {
            attack(serve_in_child!($name), $case);
        }
    };
}

const PROMPTLY: Duration = Duration::from_secs(2);

hostile!(
    /// Fails on the first byte, and gets no ERROR: it would not understand one.
    an_http_request_instead_of_a_greeting,
    Case {
        attack: |raw| send_and_linger(raw, b"GET / HTTP/1.1\r\nHost: conduit\r\n\r\n"),
        reason: "not a ZMTP peer: byte 0 of the greeting is 0x47",
        error_sent: Some(false),
        within: PROMPTLY,
    }
);

hostile!(
    a_wrong_signature,
    Case {
        attack: |raw| {
            let mut g = greeting(b"NULL");
            g[9] = 0x7E;
            send_and_linger(raw, &g)
        },
        reason: "not a ZMTP peer: byte 9 of the greeting is 0x7e, expected 0x7f",
        error_sent: Some(false),
        within: PROMPTLY,
    }
);

hostile!(
    /// ZMTP 1.0 starts with a length-prefixed identity frame: here an empty one.
    a_zmtp_1_0_greeting,
    Case {
        attack: |raw| send_and_linger(raw, b"\x01\x00"),
        reason: "not a ZMTP peer: byte 0 of the greeting is 0x01",
        error_sent: Some(false),
        within: PROMPTLY,
    }
);

hostile!(
    /// ZMTP 2.0 (RFC 15): the signature, then revision 0x01, a socket type byte
    /// and an identity frame.
    a_zmtp_2_0_greeting,
    Case {
        attack: |raw| send_and_linger(raw, b"\xff\0\0\0\0\0\0\0\x01\x7f\x01\x08\x00\x00"),
        reason: "peer speaks ZMTP 2.0; conduit needs 3.0 or later",
        error_sent: Some(false),
        within: PROMPTLY,
    }
);

hostile!(
    a_mechanism_mismatch,
    Case {
        attack: |raw| send_and_linger(raw, &greeting(b"PLAIN")),
        reason: "peer uses security mechanism \"PLAIN\", which this side is not set up for",
        error_sent: Some(false),
        within: PROMPTLY,
    }
);

hostile!(
    /// Nine bytes announce 4 EiB; nothing may be reserved for it.
    a_frame_announcing_2_pow_62_bytes,
    Case {
        attack: |raw| send_and_linger(raw, &after_handshake(&[0x02, 0x40, 0, 0, 0, 0, 0, 0, 0])),
        reason: "message of at least 4611686018427387904 bytes exceeds the maximum message size of 1048576 bytes",
        error_sent: Some(true),
        within: PROMPTLY,
    }
);

hostile!(
    /// One frame of 64 MiB against a 1 MiB limit, actually sent.
    a_frame_over_the_maximum_size_streamed,
    Case {
        attack: |raw| stream_body(raw, &[0x02, 0, 0, 0, 0, 0x04, 0, 0, 0], 64 << 20),
        reason: "message of at least 67108864 bytes exceeds the maximum message size",
        error_sent: None,
        within: PROMPTLY,
    }
);

hostile!(
    /// A message of 256 KiB frames with MORE, 64 MiB in all: every frame is
    /// within the limit, the message is not.
    a_multipart_message_over_the_maximum_size_streamed,
    Case {
        attack: |mut raw| {
            let _ = raw.write_all(&opening("PUSH"));
            let mut frame = vec![0x03, 0, 0, 0, 0, 0, 0x04, 0, 0];
            frame.resize(9 + (256 << 10), 0x5A);
            for _ in 0..256 {
                if raw.write_all(&frame).is_err() {
                    return;
                }
            }
        },
        reason: "message of at least 1310720 bytes exceeds the maximum message size of 1048576 bytes",
        error_sent: None,
        within: PROMPTLY,
    }
);

hostile!(
    reserved_flag_bits,
    Case {
        attack: |raw| send_and_linger(raw, &after_handshake(b"\x00\x02ok\x40\x01x")),
        reason: "frame flags 0x40 have reserved bits set",
        error_sent: Some(true),
        within: PROMPTLY,
    }
);

hostile!(
    a_command_frame_with_more,
    Case {
        attack: |raw| send_and_linger(raw, &after_handshake(b"\x05\x07\x04PING\x00\x00")),
        reason: "command frame has the MORE flag set",
        error_sent: Some(true),
        within: PROMPTLY,
    }
);

hostile!(
    /// A command whose name runs past the end of its frame.
    a_truncated_command,
    Case {
        attack: |raw| send_and_linger(raw, &after_handshake(b"\x04\x04\x09SUB")),
        reason: "malformed unnamed command: command name runs past the end",
        error_sent: Some(true),
        within: PROMPTLY,
    }
);

hostile!(
    /// A command frame cut off by the peer closing its side: the socket sees the
    /// end of the stream inside a frame.
    a_command_cut_off_by_the_end_of_the_stream,
    Case {
        attack: |mut raw| {
            let _ = raw.write_all(&after_handshake(b"\x04\x0f\x09SUBSCR"));
            raw.shutdown_write();
            std::thread::sleep(Duration::from_millis(500));
        },
        reason: "peer closed the connection in the middle of a message",
        error_sent: Some(false),
        within: PROMPTLY,
    }
);

hostile!(
    /// READY whose Socket-Type value claims 9 bytes and has 4.
    a_ready_with_malformed_property_lengths,
    Case {
        attack: |raw| {
            let mut bytes = greeting(b"NULL");
            bytes.extend_from_slice(b"\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x09PUSH");
            send_and_linger(raw, &bytes)
        },
        reason: "malformed READY command: property value runs past the end",
        error_sent: Some(true),
        within: PROMPTLY,
    }
);

hostile!(
    an_incompatible_socket_type,
    Case {
        attack: |raw| send_and_linger(raw, &opening("PUB")),
        reason: "a PULL socket cannot talk to a PUB peer",
        error_sent: Some(true),
        within: PROMPTLY,
    }
);

hostile!(
    /// A greeting at one byte per 100 ms: the handshake timeout (1 s here)
    /// drops it, however much it keeps sending.
    a_greeting_one_byte_per_100_ms,
    Case {
        attack: |mut raw| {
            for byte in opening("PUSH") {
                if raw.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        },
        reason: "handshake did not complete within 1s",
        error_sent: Some(false),
        within: Duration::from_secs(3),
    }
);

hostile!(
    a_peer_that_connects_and_never_speaks,
    Case {
        attack: |raw| {
            std::thread::sleep(Duration::from_secs(2));
            drop(raw);
        },
        reason: "handshake did not complete within 1s",
        error_sent: Some(false),
        within: Duration::from_secs(3),
    }
);

#[test]
fn the_handshake_timeout_defaults_to_a_few_seconds() {
    assert_eq!(conduit::DEFAULT_HANDSHAKE_TIMEOUT, Duration::from_secs(5));
    // And the default applies to sockets: a silent peer is still there after
    // half of it, and gone soon after it.
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = events.clone();
    let pull = Socket::builder(SocketType::Pull)
        .on_event(move |e| sink.lock().unwrap().push(e.to_string()))
        .build()
        .unwrap();
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let _silent = Raw::connect(&ep);
    std::thread::sleep(Duration::from_millis(2500));
    let failed = |events: &[String]| events.iter().any(|e| e.contains("handshake did not"));
    assert!(
        !failed(&events.lock().unwrap()),
        "{:?}",
        events.lock().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    while !failed(&events.lock().unwrap()) {
        assert!(Instant::now() < deadline, "{:?}", events.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.contains("handshake did not complete within 5s"))
    );
}

/// A PUSH socket with a peer that completes the handshake and then never reads:
/// the high-water mark holds, so the socket's memory does not grow with what it
/// sends, sending does not stall, and the good peer gets everything else.
#[test]
fn a_peer_that_never_reads_is_held_at_the_high_water_mark() {
    let test = serve_in_child!(a_peer_that_never_reads_is_held_at_the_high_water_mark);
    const HWM: usize = 10;
    const N: usize = 4000;
    const SIZE: usize = 64 << 10; // 250 MiB in all
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(SocketType::Push, &endpoint_for(transport, &dir));
        config.send_hwm = HWM;
        let mut server = Server::start(test, &config);

        let mut deaf = Raw::connect(&server.endpoint);
        deaf.write_all(&opening("PULL")).unwrap();
        server.wait_line("a PULL peer", Duration::from_secs(10));
        let good = socket(SocketType::Pull);
        good.connect(&server.endpoint).unwrap();
        server.next_line("a PULL peer", Duration::from_secs(10));
        wait_peers(&good, 1);
        let peak_before = server.status_kib("VmHWM");

        server.command(&format!("SEND {N} {SIZE}"));
        let mut received = 0;
        while good.recv_timeout(Duration::from_secs(2)).is_ok() {
            received += 1;
        }
        server.wait_line(&format!("SENT {N}"), Duration::from_secs(10));
        // What the deaf peer holds is at most its queue and what the kernel
        // buffers for it (a few MiB).
        let held = N - received;
        assert!(
            held <= HWM + (16 << 20) / SIZE,
            "over {transport}: the peer that never reads holds {held} messages"
        );
        assert!(held >= 1, "over {transport}: the deaf peer took nothing");
        let peak_after = server.status_kib("VmHWM");
        assert!(
            peak_after <= peak_before + MEMORY_SLACK_KIB,
            "over {transport}: peak memory grew from {peak_before} KiB to {peak_after} KiB"
        );
        drop(deaf);
    }
}

hostile!(
    /// A multipart message of empty frames that never ends. Each frame is two
    /// bytes on the wire and adds nothing to the message's size, but the socket
    /// holds on to every one of them (a `Bytes` each, 32 bytes, and the read
    /// buffers they point into) until the message is complete: it must give up
    /// long before its memory grows with the stream.
    endless_empty_frames,
    Case {
        attack: |mut raw| {
            let _ = raw.write_all(&opening("PUSH"));
            let frames = b"\x01\x00".repeat(32 << 10); // 64 KiB of frames
            for _ in 0..(8 << 20) / frames.len() {
                if raw.write_all(&frames).is_err() {
                    return;
                }
            }
        },
        // Whatever the wording, a protocol error that drops the connection.
        reason: "protocol error",
        error_sent: None,
        within: PROMPTLY,
    }
);

/// A peer that sends PINGs as fast as it can and never reads: every PING asks
/// for a PONG, and a PONG that cannot be written must not be queued without
/// bound. (Not a protocol error: the connection may stay.)
#[test]
fn a_peer_that_pings_and_never_reads_cannot_fill_memory_with_pongs() {
    let test = serve_in_child!(a_peer_that_pings_and_never_reads_cannot_fill_memory_with_pongs);
    // PINGs with a 16-byte context: 25 bytes in, 23 bytes of PONG out each.
    let ping = b"\x04\x17\x04PING\x00\x00sixteen bytes!!!";
    const FLOOD: usize = 48 << 20;
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(SocketType::Pull, &endpoint_for(transport, &dir));
        let mut server = Server::start(test, &config);
        let good = socket(SocketType::Push);
        good.connect(&server.endpoint).unwrap();
        good.send("before").unwrap();
        server.wait_line("RECV before", Duration::from_secs(10));
        let peak_before = server.status_kib("VmHWM");

        let mut raw = Raw::connect(&server.endpoint);
        raw.write_all(&opening("PUSH")).unwrap();
        let pings = ping.repeat((64 << 10) / ping.len());
        let mut sent = 0;
        while sent < FLOOD {
            // The socket reads them all (it must, to see the next message);
            // only the PONGs have nowhere to go.
            raw.write_all(&pings).unwrap();
            sent += pings.len();
        }
        // A message after the flood: once it is received, every PING before
        // it has been handled.
        raw.write_all(b"\x00\x0aafter-ping").unwrap();
        server.wait_line("RECV after-ping", Duration::from_secs(60));
        good.send("after").unwrap();
        server.wait_line("RECV after", Duration::from_secs(10));
        let peak_after = server.status_kib("VmHWM");
        assert!(
            peak_after <= peak_before + MEMORY_SLACK_KIB,
            "over {transport}: peak memory grew from {peak_before} KiB to {peak_after} KiB \
             after {} MiB of PINGs",
            FLOOD >> 20
        );
        drop(raw);
    }
}

/// A subscriber to everything, in service at the publishing server: its
/// subscription has taken effect (a publication reached it) before any flood
/// starts, since a flood held at an XPUB's high-water mark would hold it too.
fn good_subscriber(server: &mut Server) -> Socket {
    let good = socket(SocketType::Sub);
    good.subscribe("").unwrap();
    good.connect(&server.endpoint).unwrap();
    server.wait_line("a SUB peer", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        server.command("SEND 1 1");
        if good.recv_timeout(Duration::from_millis(100)).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription never took effect"
        );
    }
    // Probes published while the first was on its way.
    while good.recv_timeout(Duration::from_millis(100)).is_ok() {}
    good
}

/// The server publishes three messages, and `good` gets them.
fn still_publishes(server: &mut Server, good: &Socket, context: &str) {
    server.command("SEND 3 5");
    for _ in 0..3 {
        let m = good.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(m.byte_len(), 5, "{context}");
    }
}

/// An XPUB hands every first subscription and last cancellation of a topic to
/// its application. A subscriber that subscribes and cancels without end, while
/// the application is not reading, must be held back at the receive high-water
/// mark like any other input, not queued without bound; and the XPUB goes on
/// publishing to its good subscriber.
#[test]
fn a_subscription_flood_to_an_xpub_is_held_at_the_high_water_mark() {
    let test = serve_in_child!(a_subscription_flood_to_an_xpub_is_held_at_the_high_water_mark);
    // SUBSCRIBE x, CANCEL x: 23 bytes, two notifications for the application.
    let pair = b"\x04\x0b\x09SUBSCRIBEx\x04\x08\x06CANCELx";
    const FLOOD: usize = 16 << 20;
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new(SocketType::XPub, &endpoint_for(transport, &dir));
        let mut server = Server::start(test, &config);
        let good = good_subscriber(&mut server);
        let peak_before = server.status_kib("VmHWM");

        let mut raw = Raw::connect(&server.endpoint);
        raw.write_all(&opening("SUB")).unwrap();
        // Held back, the writes stall: stop at the first that does.
        raw.set_write_timeout(Duration::from_secs(1));
        let flood = pair.repeat((64 << 10) / pair.len());
        let mut sent = 0;
        while sent < FLOOD && raw.write_all(&flood).is_ok() {
            sent += flood.len();
        }
        // Let the socket work through what it took.
        std::thread::sleep(Duration::from_millis(500));
        let peak_after = server.status_kib("VmHWM");
        assert!(
            peak_after <= peak_before + MEMORY_SLACK_KIB,
            "over {transport}: peak memory grew from {peak_before} KiB to {peak_after} KiB \
             after {} KiB of subscriptions",
            sent >> 10
        );
        still_publishes(&mut server, &good, &format!("over {transport}"));
        drop(raw);
    }
}

/// A subscriber inventing new topics without end. A PUB or XPUB keeps every
/// topic of every subscriber (an XPUB whose application reads, as a proxy's
/// does, is not held back by its high-water mark), so the subscriber is dropped
/// at its subscription limits (here 16,384 topics or 1 MiB of them; by default
/// 65,536 and 4 MiB) with the reason logged, long before the flood ends; the
/// socket's memory does not follow the flood, and its good subscriber keeps
/// getting what is published.
#[test]
fn a_flood_of_new_subscriptions_is_dropped_at_the_subscription_limits() {
    let test = serve_in_child!(a_flood_of_new_subscriptions_is_dropped_at_the_subscription_limits);
    const TOPICS: usize = 16 << 10;
    const BYTES: usize = 1 << 20;
    // Unbounded, 32 MiB of 8-byte topics would be 1.6 million of them.
    const FLOOD: usize = 32 << 20;
    let floods = [
        (
            8,
            format!("subscriber went over its limit of {TOPICS} topics"),
        ),
        (
            16 << 10,
            format!("subscriber went over its limit of {BYTES} bytes of topics"),
        ),
    ];
    for kind in [SocketType::Pub, SocketType::XPub] {
        for transport in ["tcp", "ipc"] {
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config::new(kind, &endpoint_for(transport, &dir));
            config.max_subscriptions = (TOPICS, BYTES);
            config.reads = true;
            let mut server = Server::start(test, &config);
            let good = good_subscriber(&mut server);
            let peak_before = server.status_kib("VmHWM");

            for (topic_len, reason) in &floods {
                let mut raw = Raw::connect(&server.endpoint);
                raw.write_all(&opening("SUB")).unwrap();
                let mut reader = raw.try_clone();
                let topic_len = *topic_len;
                let flooder = std::thread::spawn(move || {
                    let mut sent = 0;
                    let mut i = 0u64;
                    while sent < FLOOD {
                        let mut batch = bytes::BytesMut::new();
                        while batch.len() < 64 << 10 {
                            let topic = format!("{i:0topic_len$}");
                            conduit_proto::Command::Subscribe(topic.into()).encode(&mut batch);
                            i += 1;
                        }
                        if raw.write_all(&batch).is_err() {
                            return;
                        }
                        sent += batch.len();
                    }
                });
                let event = server.next_line(reason, Duration::from_secs(20));
                assert!(
                    event.starts_with("EVENT dropped"),
                    "{kind} over {transport}: {event}"
                );
                reader
                    .read_until_closed(Duration::from_secs(5))
                    .unwrap_or_else(|| panic!("{kind} over {transport}: still open"));
                flooder.join().unwrap();
            }

            still_publishes(&mut server, &good, &format!("over {transport}"));
            let peak_after = server.status_kib("VmHWM");
            assert!(
                peak_after <= peak_before + MEMORY_SLACK_KIB,
                "{kind} over {transport}: peak memory grew from {peak_before} KiB to \
                 {peak_after} KiB"
            );
        }
    }
}
