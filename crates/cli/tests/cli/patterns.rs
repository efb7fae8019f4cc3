//! Every socket type from the command line (issue 3): `conduit pair|push|pull|
//! req|rep|dealer|router|pub|sub|xpub|xsub`.

use std::time::{Duration, Instant};

use crate::harness::*;

fn lines(o: &std::process::Output) -> Vec<String> {
    stdout(o).lines().map(str::to_owned).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn pull_binds_tcp_and_ipc_at_once_and_gets_every_pushers_messages() {
    let (ipc, _dir) = ipc_endpoint();
    let tcp = free_tcp_endpoint();
    let pull = start(conduit().args([
        "pull",
        "--bind",
        &ipc,
        "--bind",
        &tcp,
        "--count",
        "4",
        "--timeout",
        "20",
    ]));
    let a = start(conduit().args(["push", "--connect", &ipc, "-d", "a1", "-d", "a2"]));
    let b = run(conduit().args(["push", "--connect", &tcp, "-d", "b1", "-d", "b2"]));
    assert_code(&b, 0);
    assert_code(&finish(a), 0);
    let got = finish(pull);
    assert_code(&got, 0);
    assert_eq!(sorted(lines(&got)), ["a1", "a2", "b1", "b2"]);
}

#[test]
fn push_connects_to_several_pullers_and_sends_stdin_lines() {
    let (a_ep, _a) = ipc_endpoint();
    let (b_ep, _b) = ipc_endpoint();
    // Without --count, each puller stops once nothing came for --timeout.
    let pullers: Vec<_> = [&a_ep, &b_ep]
        .iter()
        .map(|ep| start(conduit().args(["pull", "--bind", ep, "--timeout", "1"])))
        .collect();
    let push = run_with_input(
        conduit().args(["push", "--connect", &a_ep, "--connect", &b_ep]),
        b"1\n2\n3\n4\n",
    );
    assert_code(&push, 0);
    let mut all = Vec::new();
    for p in pullers {
        all.extend(lines(&finish(p)));
    }
    assert_eq!(sorted(all), ["1", "2", "3", "4"]);
}

#[test]
fn repeat_interval_and_count_pace_the_sender() {
    let (ep, _dir) = ipc_endpoint();
    let pull = start(conduit().args(["pull", "--bind", &ep, "--count", "3"]));
    let begun = Instant::now();
    let push = run(conduit().args([
        "push",
        "--connect",
        &ep,
        "-d",
        "tick",
        "--repeat",
        "3",
        "--interval",
        "0.1",
    ]));
    assert_code(&push, 0);
    assert!(begun.elapsed() >= Duration::from_millis(200));
    let got = finish(pull);
    assert_eq!(lines(&got), ["tick", "tick", "tick"]);

    // --repeat 0 is forever; --count stops it.
    let pull = start(conduit().args(["pull", "--bind", &ep, "--count", "5"]));
    let push = run(conduit().args([
        "push",
        "--connect",
        &ep,
        "-d",
        "a",
        "-d",
        "b",
        "--repeat",
        "0",
        "--count",
        "5",
    ]));
    assert_code(&push, 0);
    assert_eq!(lines(&finish(pull)), ["a", "b", "a", "b", "a"]);
}

#[test]
fn sub_gets_what_it_subscribed_to_and_pub_waits_for_it() {
    let ep = free_tcp_endpoint();
    let published = [
        "-d",
        "weather 21C",
        "-d",
        "news nothing",
        "-d",
        "alert storm",
    ];
    for (prefixes, expected) in [
        (
            &["--subscribe", "weather", "-s", "alert"][..],
            &["weather 21C", "alert storm"][..],
        ),
        (&[], &["weather 21C", "news nothing", "alert storm"]),
    ] {
        // Started first: the publisher waits for the subscriptions.
        let sub = start(
            conduit()
                .args(["sub", "--connect", &ep, "--count"])
                .arg(expected.len().to_string())
                .args(prefixes),
        );
        let publisher = run(conduit().args(["pub", "--bind", &ep]).args(published));
        assert_code(&publisher, 0);
        let got = finish(sub);
        assert_code(&got, 0);
        assert_eq!(lines(&got), expected);
    }
}

#[test]
fn pub_with_no_subscriber_times_out_with_1() {
    let (ep, _dir) = ipc_endpoint();
    let got = run(conduit().args(["pub", "--bind", &ep, "-d", "x", "--timeout", "0.2"]));
    assert_code(&got, 1);
    assert_eq!(
        stderr(&got),
        "conduit: timed out after 200ms waiting for a subscriber\n"
    );
    // A plain PUB publishes to nobody, and that is not an error.
    let got = run(conduit().args(["pub", "--bind", &ep, "-d", "x", "--no-wait"]));
    assert_code(&got, 0);
}

#[test]
fn req_prints_each_reply_from_rep_echo() {
    for (ep, _dir) in endpoints() {
        let rep = start(conduit().args(["rep", "--bind", &ep, "--echo", "--count", "2"]));
        let req = run(conduit().args(["req", "--connect", &ep, "-d", "ping", "-d", "two\tcols"]));
        assert_code(&req, 0);
        assert_eq!(stdout(&req), "ping\ntwo\\tcols\n", "over {ep}");
        let rep = finish(rep);
        assert_code(&rep, 0);
        // rep prints the requests it answers.
        assert_eq!(stdout(&rep), "ping\ntwo\\tcols\n");
    }
}

#[test]
fn rep_answers_with_d_in_turn_or_with_stdin_lines() {
    let (ep, _dir) = ipc_endpoint();
    let rep = start(conduit().args(["rep", "--bind", &ep, "-d", "A", "-d", "B", "-n", "3"]));
    let req = run_with_input(conduit().args(["req", "--connect", &ep]), b"1\n2\n3\n");
    assert_code(&req, 0);
    assert_eq!(lines(&req), ["A", "B", "A"]);
    assert_code(&finish(rep), 0);

    // Replies read from standard input, one per request; it ending stops rep.
    let (ep, _dir) = ipc_endpoint();
    let mut rep = conduit();
    rep.args(["rep", "--bind", &ep]);
    rep.args(["--count", "2"]);
    let rep = std::thread::spawn(move || run_with_input(&mut rep, b"first\nsecond\n"));
    let req = run(conduit().args(["req", "--connect", &ep, "-d", "x", "-d", "y"]));
    assert_eq!(lines(&req), ["first", "second"]);
    let rep = rep.join().unwrap();
    assert_code(&rep, 0);
    assert_eq!(lines(&rep), ["x", "y"]);
}

#[test]
fn req_with_no_server_times_out_with_1() {
    let (ep, _dir) = ipc_endpoint();
    let got = run(conduit().args(["req", "--connect", &ep, "-d", "x", "--timeout", "0.3"]));
    assert_code(&got, 1);
    let err = stderr(&got);
    assert!(
        err.starts_with(
            "conduit: timed out after 300ms waiting for a server to take request 1 (cannot connect"
        ),
        "{err}"
    );
}

#[test]
fn router_sees_the_dealers_identity_and_answers_it() {
    let ep = free_tcp_endpoint();
    // The router's message names a dealer that is not there yet: it waits.
    let router = start(conduit().args([
        "router",
        "--bind",
        &ep,
        "--input",
        "json",
        "-d",
        r#"["client-1", "welcome"]"#,
        "--count",
        "1",
        "--timeout",
        "20",
    ]));
    let dealer = run(conduit().args([
        "dealer",
        "--connect",
        &ep,
        "--identity",
        "client-1",
        "-d",
        "hello",
        "--count",
        "1",
    ]));
    assert_code(&dealer, 0);
    assert_eq!(stdout(&dealer), "welcome\n");
    let router = finish(router);
    assert_code(&router, 0);
    assert_eq!(stdout(&router), "client-1\thello\n");
}

#[test]
fn router_shows_the_req_envelope() {
    let (ep, _dir) = ipc_endpoint();
    let router = start(conduit().args(["router", "--bind", &ep, "--count", "1"]));
    let mut req = start(conduit().args(["req", "--connect", &ep, "--identity", "r", "-d", "q"]));
    let got = finish(router);
    assert_code(&got, 0);
    // The routing id, REQ's empty delimiter frame, then the request.
    assert_eq!(stdout(&got), "r\t\tq\n");
    // The request is never answered.
    req.kill().unwrap();
    req.wait().unwrap();
}

#[test]
fn pair_talks_both_ways() {
    let (ep, _dir) = ipc_endpoint();
    let a = start(conduit().args(["pair", "--bind", &ep, "-d", "from a", "-n", "1"]));
    let b = run(conduit().args(["pair", "--connect", &ep, "-d", "from b", "-n", "1"]));
    assert_code(&b, 0);
    assert_eq!(stdout(&b), "from a\n");
    let a = finish(a);
    assert_code(&a, 0);
    assert_eq!(stdout(&a), "from b\n");
}

#[test]
fn pair_sends_stdin_lines_then_stops() {
    let (ep, _dir) = ipc_endpoint();
    let a = start(conduit().args(["pair", "--bind", &ep, "-n", "2"]));
    let b = run_with_input(conduit().args(["pair", "--connect", &ep]), b"x\ny\n");
    assert_code(&b, 0);
    let a = finish(a);
    assert_code(&a, 0);
    assert_eq!(lines(&a), ["x", "y"]);
}

#[test]
fn xsub_subscribes_upstream_and_xpub_prints_the_subscription() {
    let (ep, _dir) = ipc_endpoint();
    let xsub =
        start(conduit().args(["xsub", "--connect", &ep, "--subscribe", "w", "--count", "1"]));
    let xpub = run(conduit().args([
        "xpub", "--bind", &ep, "-d", "news", "-d", "w1", "--count", "1",
    ]));
    assert_code(&xpub, 0);
    assert_eq!(stdout(&xpub), "\\x01w\n");
    let xsub = finish(xsub);
    assert_code(&xsub, 0);
    assert_eq!(stdout(&xsub), "w1\n");
}

#[test]
fn xpub_with_count_publishes_piped_stdin_to_a_real_subscriber_before_exiting() {
    // The subscription is the one message --count 1 waits for; the piped
    // line must still go out after it, not be dropped at exit.
    let (ep, _dir) = ipc_endpoint();
    let sub = start(conduit().args(["sub", "--connect", &ep, "--count", "1", "--timeout", "20"]));
    let xpub = run_with_input(
        conduit().args(["xpub", "--bind", &ep, "--count", "1", "--timeout", "20"]),
        b"weather 21C\n",
    );
    assert_code(&xpub, 0);
    assert_eq!(stdout(&xpub), "\\x01\n");
    let sub = finish(sub);
    assert_code(&sub, 0);
    assert_eq!(stdout(&sub), "weather 21C\n");
}

#[test]
fn sub_with_no_publisher_times_out_with_1_and_without_count_ends_idle_with_0() {
    let (ep, _dir) = ipc_endpoint();
    let got = run(conduit().args(["sub", "--bind", &ep, "--timeout", "0.2"]));
    assert_code(&got, 1);
    assert_eq!(
        stderr(&got),
        "conduit: timed out after 200ms waiting for a message\n"
    );
    // Something arrived, then nothing for --timeout: a normal end.
    let sub = start(conduit().args(["pull", "--bind", &ep, "--timeout", "0.5"]));
    let push = run(conduit().args(["push", "--connect", &ep, "-d", "only"]));
    assert_code(&push, 0);
    let got = finish(sub);
    assert_code(&got, 0);
    assert_eq!(stdout(&got), "only\n");
    // With --count, fewer messages than asked for is a timeout.
    let sub = start(conduit().args(["pull", "--bind", &ep, "--timeout", "0.5", "-n", "2"]));
    let push = run(conduit().args(["push", "--connect", &ep, "-d", "only"]));
    assert_code(&push, 0);
    let got = finish(sub);
    assert_code(&got, 1);
    assert_eq!(
        stderr(&got),
        "conduit: timed out after 500ms waiting for a message (1 of 2 received)\n"
    );
}
