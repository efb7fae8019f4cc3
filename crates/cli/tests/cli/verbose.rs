//! `-v`: connection events on standard error (issue 4, "Watching").

use crate::harness::*;

#[test]
fn v_shows_listening_connected_handshake_and_closed() {
    let (ep, _dir) = ipc_endpoint();
    let pull = start(conduit().args(["pull", "--bind", &ep, "-n", "1", "-v"]));
    let push = run(conduit().args(["push", "--connect", &ep, "-d", "x", "-v"]));
    assert_code(&push, 0);
    let pull = finish(pull);
    assert_code(&pull, 0);

    let push_err = stderr(&push);
    assert!(
        push_err.contains(&format!("push: connected {ep}\n")),
        "{push_err}"
    );
    assert!(
        push_err.contains(&format!("push: handshake done with {ep}: a PULL peer\n")),
        "{push_err}"
    );
    assert!(
        push_err.contains(&format!("push: closed {ep}\n")),
        "{push_err}"
    );

    let pull_err = stderr(&pull);
    assert!(
        pull_err.starts_with(&format!("pull: listening on {ep}\n")),
        "{pull_err}"
    );
    assert!(
        pull_err.contains(&format!("pull: connected {ep} from ")),
        "{pull_err}"
    );
    assert!(pull_err.contains(": a PUSH peer\n"), "{pull_err}");
    // Without -v, nothing.
    assert_eq!(stdout(&pull), "x\n");
}

#[test]
fn v_shows_reconnecting_with_the_reason() {
    let (ep, _dir) = ipc_endpoint();
    let got = run(conduit().args([
        "push",
        "--connect",
        &ep,
        "-d",
        "x",
        "-v",
        "--timeout",
        "0.5",
    ]));
    assert_code(&got, 1);
    let err = stderr(&got);
    let path = ep.trim_start_matches("ipc://");
    assert!(
        err.starts_with(&format!(
            "push: reconnecting to {ep} in 100ms (cannot connect to {ep}: No such file or directory (os error 2))\n"
        )),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "conduit: timed out after 500ms waiting for a peer to take message 1 \
             (cannot connect to {ep}: No such file or directory (os error 2))\n"
        )),
        "{err} {path}"
    );
}

#[test]
fn a_peer_of_the_wrong_type_is_reported_even_without_v() {
    let (ep, _dir) = ipc_endpoint();
    let a = start(conduit().args(["pull", "--bind", &ep, "--timeout", "1"]));
    let b = run(conduit().args(["pull", "--connect", &ep, "--timeout", "1"]));
    assert_code(&b, 1);
    let a = finish(a);
    assert_code(&a, 1);
    assert!(
        stderr(&a).contains("failed: protocol error: a PULL socket cannot talk to a PULL peer"),
        "{}",
        stderr(&a)
    );
}

#[test]
fn send_and_recv_have_v_too() {
    let (ep, _dir) = ipc_endpoint();
    let recv = start(conduit().args(["recv", "--bind", &ep, "-v"]));
    let send = run(conduit().args(["send", "--connect", &ep, "-d", "x", "-v"]));
    assert_code(&send, 0);
    assert_eq!(
        stderr(&send),
        format!("send: handshake done with {ep}: a PAIR peer\nsend: closed\n")
    );
    let recv = finish(recv);
    assert_code(&recv, 0);
    assert_eq!(
        stderr(&recv),
        format!(
            "recv: listening on {ep}\nrecv: handshake done with {ep}: a PAIR peer\nrecv: closed by the peer\n"
        )
    );
}
