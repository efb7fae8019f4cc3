//! One-line errors, never a panic (issue 4, "Errors").

use crate::harness::*;

#[track_caller]
fn fails_with(args: &[&str], code: i32, message: &str) {
    let got = run(conduit().args(args));
    assert_code(&got, code);
    assert_eq!(stderr(&got), message, "{args:?}");
}

#[test]
fn bad_endpoint() {
    fails_with(
        &["pull", "--bind", "tcp://127.0.0.1"],
        2,
        "conduit: invalid endpoint \"tcp://127.0.0.1\": expected tcp://host:port\n",
    );
    fails_with(
        &["sub", "--connect", "udp://x:1"],
        2,
        "conduit: invalid endpoint \"udp://x:1\": unknown transport (expected tcp://, ipc:// or inproc://)\n",
    );
}

#[test]
fn address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let ep = format!("tcp://{}", taken.local_addr().unwrap());
    fails_with(
        &["rep", "--bind", &ep, "--echo"],
        2,
        &format!("conduit: cannot bind {ep}: Address already in use (os error 98)\n"),
    );
}

#[test]
fn connection_refused() {
    // A channel gives up at once...
    fails_with(
        &[
            "send",
            "--connect",
            "tcp://127.0.0.1:1",
            "--timeout",
            "0.2",
            "-d",
            "x",
        ],
        2,
        "conduit: cannot connect to tcp://127.0.0.1:1: Connection refused (os error 111)\n",
    );
    // ...a socket keeps trying (the peer may come up), and says why at the timeout.
    fails_with(
        &[
            "req",
            "--connect",
            "tcp://127.0.0.1:1",
            "--timeout",
            "0.3",
            "-d",
            "x",
        ],
        1,
        "conduit: timed out after 300ms waiting for a server to take request 1 \
         (cannot connect to tcp://127.0.0.1:1: Connection refused (os error 111))\n",
    );
}

#[test]
fn permission_denied() {
    // A directory only its owner may enter; as root, run as nobody to be refused.
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}/locked/x.sock", dir.path().display());
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let root = run(std::process::Command::new("id").arg("-u"));
    let mut cmd = if stdout(&root).trim() == "0" {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_conduit"));
        c
    } else {
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o500)).unwrap();
        conduit()
    };
    let got = run(cmd.args(["pull", "--bind", &ep]));
    assert_code(&got, 2);
    assert_eq!(
        stderr(&got),
        format!("conduit: cannot bind {ep}: Permission denied (os error 13)\n")
    );
}

#[test]
fn message_too_large() {
    // A channel's one peer breaking the limit ends the command...
    let (ep, _dir) = ipc_endpoint();
    let recv = start(conduit().args(["recv", "--bind", &ep, "--max-size", "4"]));
    let send = run(conduit().args(["send", "--connect", &ep, "-d", "too long"]));
    assert_code(&send, 0);
    let got = finish(recv);
    assert_code(&got, 2);
    assert_eq!(
        stderr(&got),
        "conduit: receive failed: protocol error: \
         message of at least 8 bytes exceeds the maximum message size of 4 bytes\n"
    );
    // ...a socket drops that peer, says so, and goes on with the others.
    let pull = start(conduit().args(["pull", "--bind", &ep, "--max-size", "4", "-n", "1"]));
    let push = run(conduit().args(["push", "--connect", &ep, "-d", "too long"]));
    assert_code(&push, 0);
    let push = run(conduit().args(["push", "--connect", &ep, "-d", "ok"]));
    assert_code(&push, 0);
    let got = finish(pull);
    assert_code(&got, 0);
    assert_eq!(stdout(&got), "ok\n");
    let err = stderr(&got);
    assert!(
        err.starts_with(&format!("pull: dropped {ep} from ")),
        "{err}"
    );
    assert!(
        err.ends_with(
            ": protocol error: message of at least 8 bytes exceeds the maximum message size of 4 bytes\n"
        ),
        "{err}"
    );
}

#[test]
fn misuse_is_a_usage_error() {
    fails_with(
        &[
            "router",
            "--bind",
            "ipc://@conduit-router-misuse",
            "-d",
            "no routing id",
        ],
        2,
        "conduit: cannot send: a ROUTER message starts with the peer's routing id, then at least one frame\n",
    );
    fails_with(
        &["pull", "--connect", "-"],
        2,
        "conduit: \"-\" is not an endpoint here: standard input and output carry one channel, \
         with `conduit send` and `conduit recv`\n",
    );
}

#[test]
fn usage_errors_are_one_line_too() {
    fails_with(
        &["rep", "--bind", "ipc://@x", "--echo", "-d", "y"],
        2,
        "conduit: the argument '--echo' cannot be used with '--data <MSG>' \
         (see `conduit rep --help`)\n",
    );
    fails_with(
        &["pull"],
        2,
        "conduit: the following required arguments were not provided: \
         <--bind <ENDPOINT>|--connect <ENDPOINT>> (see `conduit pull --help`)\n",
    );
    fails_with(
        &["pull", "--bind", "ipc://@x", "--count", "many"],
        2,
        "conduit: invalid value 'many' for '--count <N>': invalid digit found in string \
         (see `conduit pull --help`)\n",
    );
    fails_with(
        &["proxy", "hub"],
        2,
        "conduit: invalid value 'hub' for '<KIND>' \
         [possible values: broker, forwarder, streamer] (see `conduit proxy --help`)\n",
    );
    fails_with(
        &["publish"],
        2,
        "conduit: unrecognized subcommand 'publish'; \
         tip: some similar subcommands exist: 'pull', 'xpub', 'pub' (see `conduit --help`)\n",
    );
}
