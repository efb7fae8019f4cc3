//! Ctrl-C and a closed standard output (issue 4, "Errors": exit codes).

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::harness::*;

/// Long enough for the command to have set up its Ctrl-C handler.
const SETTLE: Duration = Duration::from_millis(500);

#[test]
fn ctrl_c_closes_and_exits_130() {
    let (ep, _dir) = ipc_endpoint();
    for args in [
        vec!["pull", "--bind", &ep],
        vec!["sub", "--connect", &ep, "-v"],
        vec!["rep", "--bind", &ep, "--echo"],
        vec!["push", "--connect", &ep, "-d", "never taken"],
        vec!["req", "--connect", &ep, "-d", "never answered"],
        vec!["pair", "--bind", &ep, "-n", "1"],
        vec!["recv", "--bind", &ep],
        vec![
            "proxy",
            "streamer",
            "--front-bind",
            &ep,
            "--back-connect",
            "ipc://@conduit-nowhere",
        ],
    ] {
        let child = start(conduit().args(&args));
        std::thread::sleep(SETTLE);
        interrupt(&child);
        let got = finish(child);
        assert_code(&got, 130);
        assert!(
            !stderr(&got).contains("conduit:"),
            "{args:?}: {}",
            stderr(&got)
        );
    }
}

#[test]
fn ctrl_c_while_reading_stdin_exits_130() {
    let (ep, _dir) = ipc_endpoint();
    let pull = start(conduit().args(["pull", "--bind", &ep, "-n", "1"]));
    let mut push = conduit()
        .args(["push", "--connect", &ep])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = push.stdin.take().unwrap();
    stdin.write_all(b"sent\n").unwrap();
    assert_eq!(stdout(&finish(pull)), "sent\n");
    // Standard input stays open, with nothing more on it.
    interrupt(&push);
    let got = finish(push);
    assert_code(&got, 130);
    drop(stdin);
}

#[test]
fn a_closed_stdout_ends_a_socket_command_quietly_with_0() {
    let (ep, _dir) = ipc_endpoint();
    let mut sub = conduit()
        .args(["pull", "--bind", &ep])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Like `conduit pull ... | head -0`.
    drop(sub.stdout.take());
    let push = run(conduit().args(["push", "--connect", &ep, "-d", "x"]));
    assert_code(&push, 0);
    let got = finish(sub);
    assert_code(&got, 0);
    assert_eq!(stderr(&got), "");
}

#[test]
fn piped_into_head_ends_quietly_with_0() {
    let (ep, _dir) = ipc_endpoint();
    // Pushes until stopped, so that pull has a line to print after head left.
    let mut push = start(
        conduit()
            .args(["push", "--connect", &ep, "-d", "tick"])
            .args(["--repeat", "0", "--interval", "0.05"]),
    );
    let script = format!(
        "{} pull --bind {ep} | head -n 1; echo \"pull: ${{PIPESTATUS[0]}}\" >&2",
        env!("CARGO_BIN_EXE_conduit")
    );
    let got = run(std::process::Command::new("bash").args(["-c", &script]));
    push.kill().unwrap();
    push.wait().unwrap();
    assert_code(&got, 0);
    assert_eq!(stdout(&got), "tick\n");
    // Nothing said, and exit code 0.
    assert_eq!(stderr(&got), "pull: 0\n");
}
