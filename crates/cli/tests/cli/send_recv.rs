//! `conduit send` and `conduit recv`.

use std::io::Write;
use std::process::Stdio;

use crate::harness::*;

#[test]
fn messages_from_d_flags_arrive_as_lines() {
    for (ep, _dir) in endpoints() {
        let recv = conduit()
            .args(["recv", "--bind", &ep, "--timeout", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Connecting may precede the bind: send retries until the peer is up.
        let sent = run(conduit().args([
            "send",
            "--connect",
            &ep,
            "-d",
            "hello",
            "-d",
            "a\tb",
            "-d",
            "",
        ]));
        assert!(sent.status.success(), "{}", stderr(&sent));
        let got = finish(recv);
        assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
        assert_eq!(stdout(&got), "hello\na\\tb\n\n", "over {ep}");
    }
}

#[test]
fn each_line_of_stdin_is_a_message_and_count_stops_early() {
    for (ep, _dir) in endpoints() {
        let recv = conduit()
            .args(["recv", "--connect", &ep, "--count", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut send = conduit()
            .args(["send", "--bind", &ep])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        send.stdin
            .take()
            .unwrap()
            .write_all(b"one\ntwo\nthree\n")
            .unwrap();
        let got = finish(recv);
        assert_eq!(stdout(&got), "one\ntwo\n", "{}", stderr(&got));
        assert_eq!(got.status.code(), Some(0));
        // The sender's peer went away after two; it reports that, it does not hang.
        let sent = finish(send);
        assert!(
            sent.status.code() == Some(0) || sent.status.code() == Some(2),
            "{sent:?}"
        );
    }
}

#[test]
fn a_shell_pipe_carries_frames_with_dash() {
    let mut send = conduit()
        .args(["send", "--connect", "-", "-d", "a", "-d", "b"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let got = run(conduit()
        .args(["recv", "--connect", "-"])
        .stdin(send.stdout.take().unwrap()));
    assert_eq!(stdout(&got), "a\nb\n");
    assert_eq!(got.status.code(), Some(0));
    assert!(send.wait().unwrap().success());
}

#[test]
fn timeout_exits_with_1() {
    let (ep, _dir) = ipc_endpoint();
    let got = run(conduit().args(["recv", "--bind", &ep, "--timeout", "0.2"]));
    assert_eq!(got.status.code(), Some(1));
    assert_eq!(stdout(&got), "");
}

#[test]
fn errors_are_one_line_with_exit_code_2() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["recv", "--bind", "udp://x:1"],
            "conduit: invalid endpoint \"udp://x:1\": unknown transport (expected tcp://, ipc:// or inproc://)\n",
        ),
        (
            &[
                "send",
                "--connect",
                "tcp://127.0.0.1:1",
                "--timeout",
                "0.1",
                "-d",
                "x",
            ],
            "conduit: cannot connect to tcp://127.0.0.1:1: Connection refused (os error 111)\n",
        ),
        (
            &["recv", "--bind", "-"],
            "conduit: --bind - makes no sense: use --connect - for standard input or output\n",
        ),
        (
            &["recv", "--bind", "ipc:///nonexistent-dir/x.sock"],
            "conduit: cannot bind ipc:///nonexistent-dir/x.sock: No such file or directory (os error 2)\n",
        ),
    ];
    for (args, message) in cases {
        let got = run(conduit().args(args));
        assert_eq!(got.status.code(), Some(2), "{args:?}");
        assert_eq!(stderr(&got), message);
    }
    let usage = run(conduit().args(["recv"]));
    assert_eq!(usage.status.code(), Some(2));
    assert!(stderr(&usage).contains("--bind"));
}

#[test]
fn a_closed_stdout_ends_quietly_with_0() {
    let mut send = conduit()
        .args(["send", "--connect", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut recv = conduit()
        .args(["recv", "--connect", "-"])
        .stdin(send.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut feeder = send.stdin.take().unwrap();
    // Close recv's stdout, like `| head -0`, then give it something to print.
    drop(recv.stdout.take());
    feeder.write_all(b"line\n").unwrap();
    drop(feeder);
    let got = finish(recv);
    assert_eq!(got.status.code(), Some(0), "{}", stderr(&got));
    assert_eq!(stderr(&got), "");
    // Its reader gone, the sender stops (reporting that) rather than hang.
    send.wait().unwrap();
}

#[test]
fn demo_runs_every_scenario() {
    let got = run(conduit().arg("demo"));
    assert!(got.status.success(), "{}", stderr(&got));
    let out = stdout(&got);
    assert!(out.contains("grep (pid"), "{out}");
    assert!(out.contains("kept 3:"), "{out}");
    assert!(
        out.contains("unsigned long factorial(unsigned n) {"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("round trip") && l.contains("median"))
            .count(),
        3,
        "{out}"
    );
    assert!(out.contains("connected as a PAIR peer"));
    // The socket scenarios, with real `conduit` processes.
    assert!(out.contains("got job 1, job 3, job 5\n"), "{out}");
    assert!(out.contains("got job 2, job 4, job 6\n"), "{out}");
    assert!(out.contains("subscriber (pid"), "{out}");
    assert!(out.contains("got weather 21C | weather 22C\n"), "{out}");
    assert!(out.contains("got news hello\n"), "{out}");
    assert!(
        out.contains("$ conduit rep --bind ipc://") && out.contains("--exec 'tr a-z A-Z'"),
        "{out}"
    );
    assert!(out.contains("hello -> HELLO, world -> WORLD\n"), "{out}");
    // The proxy, with what --capture=json and -v print.
    assert!(
        out.contains("$ conduit proxy streamer --front-bind"),
        "{out}"
    );
    assert!(out.contains("\n     > [\"job\",\"1\"]\n"), "{out}");
    assert!(
        out.contains("\n     > [\"job\",{\"hex\":\"ff00\"}]\n"),
        "{out}"
    );
    assert!(out.contains(": a PUSH peer\n"), "{out}");
}
