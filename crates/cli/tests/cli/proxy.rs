//! `conduit proxy` with `--capture` (issue 4, "Proxy").

use crate::harness::*;

#[test]
fn broker_carries_requests_to_workers_and_replies_back() {
    let (proxy, front, back, _dir) = start_broker(&["--capture", "-n", "4"]);
    let worker =
        start(conduit().args(["rep", "--connect", &back, "--exec", "tr a-z A-Z", "-n", "2"]));
    let client = run(conduit().args([
        "req",
        "--connect",
        &front,
        "--identity",
        "client",
        "-d",
        "one",
        "-d",
        "two",
    ]));
    assert_code(&client, 0);
    assert_eq!(stdout(&client), "ONE\nTWO\n");
    assert_code(&finish(worker), 0);
    let proxy = finish(proxy);
    assert_code(&proxy, 0);
    // The capture shows each message whole: routing id, delimiter, body.
    assert_eq!(
        stderr(&proxy),
        "> client\t\tone\n< client\t\tONE\n> client\t\ttwo\n< client\t\tTWO\n"
    );
}

#[test]
fn forwarder_passes_subscriptions_up_and_publications_down() {
    let (front, _f) = ipc_endpoint();
    let (back, _b) = ipc_endpoint();
    let proxy = start(conduit().args([
        "proxy",
        "forwarder",
        "--front-bind",
        &front,
        "--back-bind",
        &back,
        "--capture=json",
        "-n",
        "2",
    ]));
    let sub = start(conduit().args(["sub", "--connect", &back, "-s", "news", "-n", "1"]));
    // The publisher waits until the subscription has come through the proxy.
    let publisher =
        run(conduit().args(["pub", "--connect", &front, "-d", "weather", "-d", "news!"]));
    assert_code(&publisher, 0);
    let got = finish(sub);
    assert_code(&got, 0);
    assert_eq!(stdout(&got), "news!\n");
    let proxy = finish(proxy);
    assert_code(&proxy, 0);
    assert_eq!(stderr(&proxy), "< [\"\\u0001news\"]\n> [\"news!\"]\n");
}

#[test]
fn streamer_passes_work_from_pushers_to_pullers() {
    let (front, _f) = ipc_endpoint();
    let back = free_tcp_endpoint();
    let proxy = start(conduit().args([
        "proxy",
        "streamer",
        "--front-bind",
        &front,
        "--back-bind",
        &back,
        "-n",
        "2",
        "-v",
        "--capture=hex",
    ]));
    let pull = start(conduit().args(["pull", "--connect", &back, "-n", "2"]));
    let push = run(conduit().args(["push", "--connect", &front, "-d", "a", "-d", "b"]));
    assert_code(&push, 0);
    let got = finish(pull);
    assert_code(&got, 0);
    assert_eq!(stdout(&got), "a\nb\n");
    let proxy = finish(proxy);
    assert_code(&proxy, 0);
    let err = stderr(&proxy);
    assert!(err.contains("frontend: handshake done with"), "{err}");
    assert!(err.contains(": a PUSH peer"), "{err}");
    assert!(err.contains("backend: handshake done with"), "{err}");
    assert!(err.contains(": a PULL peer"), "{err}");
    // A streamer carries nothing back: every captured line goes forward.
    assert!(err.contains("\n> 61\n"), "{err}");
    assert!(err.contains("\n> 62\n"), "{err}");
    assert!(!err.contains("< "), "{err}");
}

#[test]
fn proxy_needs_both_sides() {
    let got = run(conduit().args(["proxy", "broker", "--front-bind", "tcp://127.0.0.1:*"]));
    assert_code(&got, 2);
    assert!(stderr(&got).contains("--back-bind"), "{}", stderr(&got));
}

#[test]
fn a_broker_forwards_both_ways_in_one_thread() {
    let (proxy, front, back, _dir) = start_broker(&[]);
    let worker =
        start(conduit().args(["rep", "--connect", &back, "--exec", "tr a-z A-Z", "-n", "3"]));
    for word in ["one", "two", "six"] {
        let client = run(conduit().args(["req", "--connect", &front, "-d", word]));
        assert_code(&client, 0);
        assert_eq!(stdout(&client), format!("{}\n", word.to_uppercase()));
    }
    // Its own thread, the Ctrl-C watcher and the one I/O thread, however many
    // peers came and went (there were a thread per peer and two forwarding
    // threads before the engine).
    let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.id())).unwrap();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(threads, "3", "{status}");
    assert_code(&finish(worker), 0);
    interrupt(&proxy);
    let proxy = finish(proxy);
    assert_eq!(proxy.status.code(), Some(130), "{}", stderr(&proxy));
}
