//! The event-driven engine (issue 10): a fixed number of threads whatever the
//! peers, one descriptor per peer, the poller, the readiness descriptor,
//! `disconnect`/`unbind`, and waking blocked threads on close.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use conduit::{
    Channel, ChannelBuilder, Error, Interest, Misuse, Poller, RecvError, RecvTimeoutError, Socket,
    SocketType, pipe,
};

use crate::server_child::{Config, Server, serve_if_child};
use crate::sockets::{endpoint, recv_str, socket, wait_peers};

/// A field of `/proc/<pid>/status` as a number (`Threads`).
fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn threads_stay_flat_and_each_peer_costs_one_descriptor() {
    const TEST: &str = "engine::threads_stay_flat_and_each_peer_costs_one_descriptor";
    if serve_if_child(TEST) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}/flat.sock", dir.path().display());
    let mut server = Server::start(TEST, &Config::new(SocketType::Pull, &ep));
    server.wait_line("ENDPOINT", Duration::from_secs(10));
    let pid = server.pid();
    // One peer first, so that every thread the server starts (its reader
    // thread starts after it reports its endpoint) is counted before.
    let first = ChannelBuilder::new()
        .socket_type(SocketType::Push)
        .connect(&ep)
        .unwrap();
    first.send("hello first").unwrap();
    server.wait_line("RECV hello first", Duration::from_secs(20));
    let threads_before = status_field(pid, "Threads");
    let fds_before = open_fds(pid);

    const PEERS: usize = 200;
    let mut peers = vec![first];
    for i in 0..PEERS {
        let peer = ChannelBuilder::new()
            .socket_type(SocketType::Push)
            .connect(&ep)
            .unwrap();
        peer.send(format!("hello {i}")).unwrap();
        peers.push(peer);
    }
    for i in 0..PEERS {
        server.wait_line(&format!("RECV hello {i}"), Duration::from_secs(20));
    }
    let threads_after = status_field(pid, "Threads");
    let fds_after = open_fds(pid);
    assert_eq!(
        threads_after, threads_before,
        "the server's threads do not grow with its {PEERS} peers"
    );
    assert!(
        fds_after - fds_before <= PEERS + 2,
        "one descriptor per peer: {fds_before} before, {fds_after} with {PEERS} peers"
    );
    // With the default of one I/O thread, the whole process is the test
    // harness's threads, the reader, and that one.
    assert!(threads_after <= 5, "{threads_after} threads");
    drop(peers);
}

#[test]
fn poller_waits_on_sockets_channels_pipes_and_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let pull = socket(SocketType::Pull);
    let ep = pull
        .bind(&endpoint("ipc", &dir, "poll"))
        .unwrap()
        .to_string();
    let idle = socket(SocketType::Pull);
    let (ch_a, ch_b) = Channel::pair().unwrap();
    let (tx, rx) = pipe().unwrap();
    let (raw_a, raw_b) = std::os::unix::net::UnixStream::pair().unwrap();

    let mut poller = Poller::new();
    let i_pull = poller.add(&pull, Interest::READABLE);
    let i_idle = poller.add(&idle, Interest::READABLE);
    let i_ch = poller.add(&ch_a, Interest::READABLE);
    let i_rx = poller.add(&rx, Interest::READABLE);
    let i_raw = poller.add(raw_a.as_fd(), Interest::READABLE);

    // Nothing is ready: the timeout ends the wait, with nothing.
    let started = Instant::now();
    assert!(
        poller
            .poll(Some(Duration::from_millis(50)))
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() >= Duration::from_millis(50));

    // Each becomes ready in turn, from another thread while the poller waits.
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            push.send("to pull").unwrap();
        });
        let ready = poller.poll(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].index, i_pull);
        assert!(ready[0].readable);
    });
    // Level-triggered: still ready until received.
    assert_eq!(poller.poll(Some(Duration::ZERO)).unwrap()[0].index, i_pull);
    assert_eq!(recv_str(&pull), "to pull");
    assert!(poller.poll(Some(Duration::ZERO)).unwrap().is_empty());

    ch_b.send("to channel").unwrap();
    tx.send("to pipe").unwrap();
    tx.flush().unwrap();
    std::io::Write::write_all(&mut &raw_b, b"x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    while seen.len() < 3 && Instant::now() < deadline {
        seen = poller
            .poll(Some(Duration::from_secs(1)))
            .unwrap()
            .iter()
            .map(|r| r.index)
            .collect();
    }
    assert_eq!(seen, [i_ch, i_rx, i_raw]);
    assert!(!seen.contains(&i_idle));
    assert_eq!(ch_a.recv().unwrap().concat(), "to channel");
    assert_eq!(rx.recv().unwrap().concat(), "to pipe");
}

#[test]
fn poller_sees_a_push_become_writable_when_a_peer_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let push = socket(SocketType::Push);
    let ep = push.bind(&endpoint("tcp", &dir, "w")).unwrap().to_string();
    let mut poller = Poller::new();
    poller.add(&push, Interest::WRITABLE);
    // No peer: a send would wait.
    assert!(!push.can_send());
    assert!(
        poller
            .poll(Some(Duration::from_millis(20)))
            .unwrap()
            .is_empty()
    );
    let pull = socket(SocketType::Pull);
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(20));
            pull.connect(&ep).unwrap();
        });
        let ready = poller.poll(Some(Duration::from_secs(10))).unwrap();
        assert!(ready[0].writable);
    });
    push.send("now").unwrap();
    assert_eq!(recv_str(&pull), "now");
}

#[test]
fn the_readiness_descriptor_is_readable_exactly_while_a_message_waits() {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let readable = |s: &Socket, wait_ms: i64| {
        let mut fds = [PollFd::new(s, PollFlags::IN)];
        let t = Timespec {
            tv_sec: wait_ms / 1000,
            tv_nsec: (wait_ms % 1000) * 1_000_000,
        };
        poll(&mut fds, Some(&t)).unwrap() == 1
    };
    let dir = tempfile::tempdir().unwrap();
    let pull = socket(SocketType::Pull);
    let ep = pull.bind(&endpoint("ipc", &dir, "fd")).unwrap().to_string();
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    assert!(!readable(&pull, 10));
    push.send("one").unwrap();
    push.send("two").unwrap();
    assert!(readable(&pull, 5000), "readable once a message arrived");
    // Wait until both are queued, then drain: it stays readable until the
    // queue is empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < 2 && Instant::now() < deadline {
        if readable(&pull, 100) {
            while let Ok(m) = pull.try_recv() {
                got.push(String::from_utf8(m.concat().to_vec()).unwrap());
            }
        }
    }
    assert_eq!(got, ["one", "two"]);
    assert!(!readable(&pull, 10), "not readable once drained");
    let fd = pull.as_fd().try_clone_to_owned().unwrap();
    drop(push);
    pull.close().unwrap();
    let mut fds = [rustix::event::PollFd::new(&fd, PollFlags::IN)];
    assert_eq!(poll(&mut fds, None).unwrap(), 1, "readable once closed");
}

#[test]
fn disconnect_stops_sending_to_an_endpoint_and_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let a = socket(SocketType::Pull);
    let b = socket(SocketType::Pull);
    let ep_a = a.bind(&endpoint("ipc", &dir, "a")).unwrap().to_string();
    let ep_b = b.bind(&endpoint("ipc", &dir, "b")).unwrap().to_string();
    let push = socket(SocketType::Push);
    push.connect(&ep_a).unwrap();
    push.connect(&ep_b).unwrap();
    wait_peers(&push, 2);
    wait_peers(&a, 1);
    push.disconnect(&ep_a).unwrap();
    wait_peers(&push, 1);
    wait_peers(&a, 0);
    for i in 0..10 {
        push.send(format!("m{i}")).unwrap();
    }
    for i in 0..10 {
        assert_eq!(recv_str(&b), format!("m{i}"), "all to the endpoint left");
    }
    // It does not come back.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a.peer_count(), 0);
    assert!(matches!(a.try_recv(), Err(conduit::TryRecvError::Empty)));
    // Unknown endpoints are an error, not ignored.
    assert!(matches!(push.disconnect(&ep_a), Err(Error::NotFound(_))));
}

#[test]
fn unbind_stops_accepting_removes_the_file_and_closes_its_peers() {
    let dir = tempfile::tempdir().unwrap();
    let pull = socket(SocketType::Pull);
    let ep = pull.bind(&endpoint("ipc", &dir, "u")).unwrap().to_string();
    let path = dir.path().join("u.sock");
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    wait_peers(&pull, 1);
    push.send("before").unwrap();
    assert_eq!(recv_str(&pull), "before");
    pull.unbind(&ep).unwrap();
    wait_peers(&pull, 0);
    wait_peers(&push, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while path.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!path.exists(), "the socket file is removed");
    assert!(
        ChannelBuilder::new().connect(&ep).is_err(),
        "nobody accepts"
    );
    assert!(matches!(pull.unbind(&ep), Err(Error::NotFound(_))));
    // Binding it again works.
    pull.bind(&ep).unwrap();
    wait_peers(&push, 1);
}

#[test]
fn closing_wakes_threads_blocked_on_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let pull = socket(SocketType::Pull);
    pull.bind(&endpoint("tcp", &dir, "c")).unwrap();
    let push = socket(SocketType::Push); // no peer: a send waits
    let (pull2, push2) = (pull.clone(), push.clone());
    let receiver = std::thread::spawn(move || pull2.recv());
    let sender = std::thread::spawn(move || push2.send("never"));
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    pull.close().unwrap();
    push.close().unwrap();
    assert!(matches!(receiver.join().unwrap(), Err(RecvError::Closed)));
    let sent = sender.join().unwrap();
    assert!(
        matches!(&sent, Err(e) if matches!(e.error, Error::SocketClosed)),
        "{sent:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "at once");
}

/// A receiver at its high-water mark makes room (a lazy resume, which makes
/// no wake-up while its thread leases the reactor), then closes: the close
/// must still reach the reactor, whatever the lazy task left in the inbox.
#[test]
fn closing_after_making_room_without_waiting_completes() {
    let dir = tempfile::tempdir().unwrap();
    for (i, ep) in [
        endpoint("ipc", &dir, "room"),
        "inproc://engine-room".to_owned(),
    ]
    .into_iter()
    .enumerate()
    {
        let pull = Socket::builder(SocketType::Pull)
            .recv_hwm(4)
            .build()
            .unwrap();
        let ep = pull.bind(&ep).unwrap();
        let push = Socket::builder(SocketType::Push)
            .send_hwm(4)
            .build()
            .unwrap();
        push.connect(&ep).unwrap();
        wait_peers(&pull, 1);
        // Waiting with nothing there, this thread takes the reactor's lease.
        assert!(pull.recv_timeout(Duration::from_millis(5)).is_err());
        // More than the two high-water marks hold, at once (within the lease).
        for n in 0..20 {
            let _ = push.try_send(format!("m{n}"));
        }
        // This thread steps the reactor, which fills the queue and pauses the
        // peer; taking one message leaves the lazy resume.
        pull.recv_timeout(Duration::from_secs(10)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(pull.close());
        });
        let closed = rx.recv_timeout(Duration::from_secs(10));
        assert!(
            matches!(closed, Ok(Ok(()))),
            "case {i}: close hung: {closed:?}"
        );
        drop(push);
    }
}

/// The (SO_SNDBUF, SO_RCVBUF) of every socket descriptor this process has.
fn socket_buffer_sizes() -> Vec<(i32, i32)> {
    let get = |fd: i32, opt: i32| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are valid for writing; a descriptor that is
        // not a socket (or has closed meanwhile) fails, and is skipped.
        let rc =
            unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&raw mut v).cast(), &mut len) };
        (rc == 0).then_some(v)
    };
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|fd| Some((get(fd, libc::SO_SNDBUF)?, get(fd, libc::SO_RCVBUF)?)))
        .collect()
}

#[test]
fn buffer_sizes_apply_to_every_connection_of_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    // Sizes no other test asks for, below the kernel's caps (the kernel
    // doubles what it is given).
    let (send, recv) = (150_001usize, 160_003usize);
    let want = ((2 * send) as i32, (2 * recv) as i32);
    for transport in ["ipc", "tcp"] {
        let pull = Socket::builder(SocketType::Pull)
            .send_buffer_size(send)
            .recv_buffer_size(recv)
            .build()
            .unwrap();
        let ep = pull.bind(&endpoint(transport, &dir, "buffers")).unwrap();
        let push = Socket::builder(SocketType::Push)
            .send_buffer_size(send)
            .recv_buffer_size(recv)
            .build()
            .unwrap();
        push.connect(&ep).unwrap();
        push.send("sized").unwrap();
        assert_eq!(recv_str(&pull), "sized");
        // Both ends of the one connection: the accepted and the connected.
        let sized = socket_buffer_sizes()
            .into_iter()
            .filter(|&sizes| sizes == want)
            .count();
        assert!(sized >= 2, "{transport}: {sized} descriptors have {want:?}");
    }
}

#[test]
fn busy_polling_sockets_answer_and_keep_their_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    for transport in ["ipc", "tcp"] {
        let spin = |kind| {
            Socket::builder(kind)
                .busy_poll(Duration::from_secs(1))
                .build()
                .unwrap()
        };
        let rep = spin(SocketType::Rep);
        let ep = rep.bind(&endpoint(transport, &dir, "spin")).unwrap();
        let req = spin(SocketType::Req);
        req.connect(&ep).unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..100 {
                let m = rep.recv().unwrap();
                rep.send(m).unwrap();
            }
            rep
        });
        for i in 0..100 {
            req.send(format!("{i}")).unwrap();
            assert_eq!(recv_str(&req), format!("{i}"));
        }
        let rep = server.join().unwrap();
        // A deadline shorter than the spin still ends the wait on time, and
        // closing still wakes a spinning receiver.
        let started = Instant::now();
        assert!(matches!(
            rep.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        ));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{transport}: spun past the deadline"
        );
        let waiter = rep.clone();
        let blocked = std::thread::spawn(move || waiter.recv_timeout(Duration::from_secs(30)));
        rep.close().unwrap();
        assert!(matches!(
            blocked.join().unwrap(),
            Err(RecvTimeoutError::Closed)
        ));
    }
}

#[test]
fn the_io_thread_count_is_fixed_once_sockets_exist() {
    let _s = socket(SocketType::Pair);
    let n = conduit::io_threads();
    assert!(n >= 1);
    assert!(
        conduit::set_io_threads(n).is_ok(),
        "the same number is fine"
    );
    assert!(matches!(
        conduit::set_io_threads(n + 1),
        Err(Error::Misuse(Misuse::IoThreadsStarted))
    ));
    assert!(matches!(
        conduit::set_io_threads(0),
        Err(Error::Misuse(Misuse::NoIoThreads))
    ));
}

/// The child of the descriptor-limit test: a PULL with only a few descriptors
/// to spare, printing what it receives and each failure to accept.
fn fd_limited_server(ep: &str) {
    use std::io::Write;
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let pull = Socket::builder(SocketType::Pull)
        .on_event(move |e| {
            if let conduit::SocketEvent::AcceptFailed { .. } = e {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "ACCEPT-FAILED {e}");
                let _ = out.flush();
            }
        })
        .build()
        .unwrap();
    pull.bind(ep).unwrap();
    // Room for a dozen connections more than are open now.
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(open + 12),
            maximum: limit.maximum,
        },
    )
    .unwrap();
    say("READY".into());
    let reader = std::thread::spawn(move || {
        while let Ok(m) = pull.recv() {
            say(format!("RECV {}", String::from_utf8_lossy(&m.concat())));
        }
    });
    // Until the test closes our stdin.
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
    std::process::exit(if reader.is_finished() { 1 } else { 0 });
}

#[test]
fn out_of_descriptors_a_listener_says_so_once_and_accepts_again_when_they_free_up() {
    use std::io::BufRead;
    const TEST: &str =
        "engine::out_of_descriptors_a_listener_says_so_once_and_accepts_again_when_they_free_up";
    if let Some(role) = crate::support::child_role(TEST) {
        if role == "server" {
            fd_limited_server(&std::env::var("CONDUIT_TEST_EP").unwrap());
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}/limited.sock", dir.path().display());
    let mut child = crate::support::child_command(TEST, "server")
        .env("CONDUIT_TEST_EP", &ep)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    // Only our lines: the test harness in the child prints its own.
    let next = |within: Duration| loop {
        let line = lines.recv_timeout(within).ok()?;
        if line.starts_with("RECV ") || line.starts_with("ACCEPT-FAILED ") {
            return Some(line);
        }
        // It follows the harness's "test ... " on the same line.
        if line.ends_with("READY") {
            return Some("READY".to_owned());
        }
    };
    assert_eq!(next(Duration::from_secs(10)).as_deref(), Some("READY"));

    // Twice as many peers as the server has descriptors for.
    const PEERS: usize = 24;
    let peers: Vec<Socket> = (0..PEERS)
        .map(|i| {
            let push = socket(SocketType::Push);
            push.connect(&ep).unwrap();
            let p = push.clone();
            std::thread::spawn(move || p.send(format!("p{i}")));
            push
        })
        .collect();
    // What it can take arrives; then nothing more, however long we wait.
    let mut received = Vec::new();
    let mut failures = Vec::new();
    while let Some(line) = next(Duration::from_millis(1500)) {
        match line.split_once(' ') {
            Some(("RECV", body)) => received.push(body.to_owned()),
            Some(("ACCEPT-FAILED", _)) => failures.push(line),
            _ => panic!("unexpected {line:?}"),
        }
    }
    assert!(
        !received.is_empty() && received.len() < PEERS,
        "some peers served, not all: {received:?}"
    );
    assert_eq!(
        failures.len(),
        1,
        "said once, not per attempt: {failures:?}"
    );
    // No spinning meanwhile: the server used next to no CPU for a second.
    let cpu = |pid: u32| -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat.rsplit(") ").next().unwrap().split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = cpu(child.id());
    std::thread::sleep(Duration::from_secs(1));
    assert!(cpu(child.id()) - before < 20, "under 0.2 s of CPU in 1 s");

    // Peers served leave: their descriptors free up, and the waiting ones
    // get in.
    let served: Vec<usize> = received
        .iter()
        .map(|b| b.trim_start_matches('p').parse().unwrap())
        .collect();
    let mut peers: Vec<Option<Socket>> = peers.into_iter().map(Some).collect();
    for &i in &served {
        peers[i].take().unwrap().close().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while received.len() < PEERS && Instant::now() < deadline {
        if let Some(line) = next(Duration::from_millis(200)) {
            if let Some(body) = line.strip_prefix("RECV ") {
                received.push(body.to_owned());
            }
        }
    }
    received.sort();
    received.dedup();
    assert_eq!(received.len(), PEERS, "every peer got in in the end");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}
