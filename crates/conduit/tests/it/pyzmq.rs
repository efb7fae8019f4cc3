//! A real libzmq peer, through pyzmq, in a child process.
//!
//! The tests need Python with pyzmq: `CONDUIT_PYTHON` names the interpreter, else
//! the workspace's `.venv` (which `scripts/test` creates). Without it they fail,
//! saying how to get it; they never skip.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use conduit::Message;

fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = std::env::var_os("CONDUIT_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
            });
        let ok = Command::new(&python)
            .args(["-c", "import zmq"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the interop tests need Python with pyzmq at {} (run scripts/test, which \
             creates .venv with pyzmq, or set CONDUIT_PYTHON)",
            python.display()
        );
        python
    })
}

/// Runs a Python snippet with pyzmq to completion; returns its standard output.
pub fn run_python(code: &str) -> String {
    let out = Command::new(python())
        .args(["-c", code])
        .output()
        .expect("cannot start python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running pyzmq peer; killed if the test ends before it does.
pub struct Peer {
    child: Child,
    lines: Receiver<String>,
    /// The endpoint it bound, when it binds.
    pub endpoint: Option<String>,
}

impl Peer {
    /// Starts `peer.py` with `args` (TYPE bind|connect ENDPOINT ACTION [ARGS]).
    pub fn start(args: &[&str]) -> Peer {
        Peer::start_with(args, &[])
    }

    /// Starts `peer.py` with `args` and extra environment variables.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Peer {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/peer.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("cannot start python");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let endpoint = (args[1] == "bind").then(|| {
            let line = read_line(&mut stdout);
            line.strip_prefix("ENDPOINT ")
                .unwrap_or_else(|| panic!("peer said {line:?}"))
                .to_owned()
        });
        // Lines are read on a thread of their own, so that a test can wait for
        // one with a deadline while it keeps sending.
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            lines,
            endpoint,
        }
    }

    /// The next message the peer printed, waiting up to 20 s.
    pub fn next_message(&mut self) -> Message {
        self.message_within(Duration::from_secs(20))
            .expect("the pyzmq peer printed no message in time")
    }

    /// The next message the peer printed, if it prints one within `timeout`.
    pub fn message_within(&mut self, timeout: Duration) -> Option<Message> {
        let line = match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => return None,
            Err(RecvTimeoutError::Disconnected) => panic!("the pyzmq peer exited early"),
        };
        let frames: Vec<String> = parse_hex_list(&line);
        Some(Message::from_frames(frames.iter().map(|h| hex_decode(h))))
    }

    /// The next line the peer printed, raw, waiting up to 20 s.
    pub fn next_line(&mut self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(20))
            .expect("the pyzmq peer printed no line in time")
    }

    /// Closes the peer's standard input: a publishing peer stops then.
    pub fn stop(&mut self) {
        drop(self.child.stdin.take());
    }

    /// Waits for the peer to exit, asserting it succeeded.
    pub fn finish(mut self) {
        self.stop();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "pyzmq peer failed: {status}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_line(r: &mut impl BufRead) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(!line.is_empty(), "pyzmq peer exited early");
    line.trim_end().to_owned()
}

/// Parses `["61", ""]`, the only JSON the peer prints.
fn parse_hex_list(line: &str) -> Vec<String> {
    let inner = line
        .trim()
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .unwrap();
    inner
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_owned())
        .filter(|s| !inner.trim().is_empty() || !s.is_empty())
        .collect()
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A fresh endpoint on `transport` for a peer to bind ("tcp" lets it pick a port).
pub fn bind_endpoint(transport: &str, dir: &tempfile::TempDir) -> String {
    match transport {
        "tcp" => "tcp://127.0.0.1:*".into(),
        _ => format!("ipc://{}/py.sock", dir.path().display()),
    }
}
