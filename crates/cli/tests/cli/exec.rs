//! `rep --exec CMD` and `pull --exec CMD` (issue 4, "Serving").

use crate::harness::*;

#[test]
fn rep_exec_replies_with_what_the_command_prints() {
    let (ep, _dir) = ipc_endpoint();
    let rep = start(conduit().args(["rep", "--bind", &ep, "--exec", "tr a-z A-Z", "-n", "2"]));
    let req = run(conduit().args(["req", "--connect", &ep, "-d", "hello", "-d", "world"]));
    assert_code(&req, 0);
    assert_eq!(stdout(&req), "HELLO\nWORLD\n");
    let rep = finish(rep);
    assert_code(&rep, 0);
    // The command's output is the reply; nothing is printed.
    assert_eq!(stdout(&rep), "");
}

#[test]
fn rep_exec_output_can_be_a_json_message() {
    let (ep, _dir) = ipc_endpoint();
    let rep = start(conduit().args([
        "rep",
        "--bind",
        &ep,
        "--input",
        "json",
        "--exec",
        r#"read line; printf '["got", "%s"]\n' "$line""#,
        "-n",
        "1",
    ]));
    let req = run(conduit().args(["req", "--connect", &ep, "-d", "x"]));
    assert_eq!(stdout(&req), "got\tx\n");
    assert_code(&finish(rep), 0);
}

#[test]
fn a_failing_command_is_reported_and_its_output_still_replies() {
    let (ep, _dir) = ipc_endpoint();
    let rep = start(conduit().args([
        "rep",
        "--bind",
        &ep,
        "--exec",
        "echo oops; exit 3",
        "-n",
        "1",
    ]));
    let req = run(conduit().args(["req", "--connect", &ep, "-d", "x"]));
    assert_eq!(stdout(&req), "oops\n");
    let rep = finish(rep);
    assert_code(&rep, 0);
    assert_eq!(
        stderr(&rep),
        "conduit: `echo oops; exit 3` failed: exit status: 3\n"
    );
}

#[test]
fn pull_exec_runs_the_command_for_each_message() {
    let (ep, _dir) = ipc_endpoint();
    let pull = start(conduit().args([
        "pull",
        "--bind",
        &ep,
        "-n",
        "2",
        "--exec",
        "printf '%s bytes\\n' $(wc -c)",
    ]));
    let push = run(conduit().args(["push", "--connect", &ep, "-d", "four", "-d", "seven!"]));
    assert_code(&push, 0);
    let got = finish(pull);
    assert_code(&got, 0);
    // Each message reaches the command as a text line, newline included.
    assert_eq!(stdout(&got), "5 bytes\n7 bytes\n");
}
