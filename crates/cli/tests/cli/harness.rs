//! A small harness that runs the built `conduit` binary.

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn conduit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_conduit"))
}

/// Runs to completion with a time limit, so a hung command fails the test
/// instead of hanging it.
pub fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child)
}

/// Waits for a spawned child (with piped stdout and stderr) within 30 s.
pub fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("conduit did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().unwrap();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut stdout).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_end(&mut stderr).unwrap();
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A unique ipc endpoint in a fresh directory (kept alive by the returned guard).
pub fn ipc_endpoint() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (format!("ipc://{}/t.sock", dir.path().display()), dir)
}

/// A TCP port that was free a moment ago.
pub fn free_tcp_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://127.0.0.1:{}", l.local_addr().unwrap().port())
}
