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
/// Its outputs are read meanwhile, so that one larger than a pipe's buffer
/// (a completion script) cannot stall it.
pub fn finish(mut child: Child) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                pipe.read_to_end(&mut bytes).unwrap();
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|s| Box::new(s) as _));
    let stderr = drain(child.stderr.take().map(|s| Box::new(s) as _));
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("conduit did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
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

/// Starts a command in the background with standard input closed and the
/// outputs piped, for [`finish`].
pub fn start(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs to completion with `input` on standard input.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(&input);
    });
    let out = finish(child);
    writer.join().unwrap();
    out
}

/// Sends SIGINT, as Ctrl-C does.
pub fn interrupt(child: &Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Checks the command exited with `code`, showing its standard error if not.
#[track_caller]
pub fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An ipc and a tcp endpoint, to run a test over each.
pub fn endpoints() -> Vec<(String, Option<tempfile::TempDir>)> {
    let (ipc, dir) = ipc_endpoint();
    vec![(ipc, Some(dir)), (free_tcp_endpoint(), None)]
}

/// A broker bound on tcp (front) and ipc (back), with `extra` arguments:
/// the proxy, its two endpoints, and the directory holding the ipc file.
pub fn start_broker(extra: &[&str]) -> (Child, String, String, tempfile::TempDir) {
    let front = free_tcp_endpoint();
    let (back, dir) = ipc_endpoint();
    let mut args = vec![
        "proxy",
        "broker",
        "--front-bind",
        &front,
        "--back-bind",
        &back,
    ];
    args.extend_from_slice(extra);
    let proxy = start(conduit().args(args));
    (proxy, front, back, dir)
}
