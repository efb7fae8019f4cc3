//! A conduit socket in a child process (this test binary, re-run), so that a
//! test can see exactly what that process holds: its peak memory and its
//! descriptors from `/proc/<pid>`, untouched by the tests running beside it in
//! this process; and so that it can be killed and restarted like a real server.
//!
//! The child binds one socket and reports on stdout, one line each:
//! `ENDPOINT <bound endpoint>`, `EVENT <SocketEvent>`, `RECV <text or size>`,
//! `SENT <n>`. It takes commands on stdin (`SEND <n> <size>`, `PUBLISH <tag>`)
//! and exits when stdin closes, so it never outlives the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use conduit::{Socket, SocketType};

use crate::support::{child_command, child_role};

const CONFIG: &str = "CONDUIT_TEST_SOCKET";

/// How the child's socket is set up.
#[derive(Debug, Clone)]
pub struct Config {
    pub kind: SocketType,
    pub endpoint: String,
    pub handshake_timeout: Duration,
    pub max_message_size: usize,
    pub send_hwm: usize,
    /// The most one subscriber may subscribe to: topics, bytes.
    pub max_subscriptions: (usize, usize),
    /// Whether the application reads what the socket receives (and reports it
    /// in `RECV` lines); by default the types that receive messages do, an
    /// XPUB does not.
    pub reads: bool,
}

impl Config {
    pub fn new(kind: SocketType, endpoint: &str) -> Config {
        Config {
            kind,
            endpoint: endpoint.to_owned(),
            handshake_timeout: conduit::DEFAULT_HANDSHAKE_TIMEOUT,
            max_message_size: 64 << 20,
            send_hwm: conduit::DEFAULT_HWM,
            max_subscriptions: (
                conduit::DEFAULT_MAX_SUBSCRIPTIONS,
                conduit::DEFAULT_MAX_SUBSCRIPTION_BYTES,
            ),
            reads: matches!(
                kind,
                SocketType::Pull | SocketType::Pair | SocketType::Sub | SocketType::Dealer
            ),
        }
    }

    fn to_env(&self) -> String {
        format!(
            "{} {} {} {} {} {} {} {}",
            self.kind,
            self.endpoint,
            self.handshake_timeout.as_millis(),
            self.max_message_size,
            self.send_hwm,
            self.max_subscriptions.0,
            self.max_subscriptions.1,
            self.reads
        )
    }

    fn from_env() -> Config {
        let text = std::env::var(CONFIG).unwrap();
        let f: Vec<&str> = text.split(' ').collect();
        Config {
            kind: SocketType::from_wire(f[0].as_bytes()).unwrap(),
            endpoint: f[1].to_owned(),
            handshake_timeout: Duration::from_millis(f[2].parse().unwrap()),
            max_message_size: f[3].parse().unwrap(),
            send_hwm: f[4].parse().unwrap(),
            max_subscriptions: (f[5].parse().unwrap(), f[6].parse().unwrap()),
            reads: f[7].parse().unwrap(),
        }
    }
}

/// In the child started for `test` as a server: serves, and exits when stdin
/// closes. Returns false in the test process itself.
pub fn serve_if_child(test: &str) -> bool {
    if child_role(test).as_deref() != Some("server") {
        return false;
    }
    let config = Config::from_env();
    let socket = Socket::builder(config.kind)
        .handshake_timeout(config.handshake_timeout)
        .max_message_size(config.max_message_size)
        .send_hwm(config.send_hwm)
        .max_subscriptions(config.max_subscriptions.0, config.max_subscriptions.1)
        .linger(Duration::from_secs(1))
        .on_event(|e| say(&format!("EVENT {e}")))
        .build()
        .unwrap();
    let socket = std::sync::Arc::new(socket);
    let bound = socket.bind(&config.endpoint).unwrap();
    say(&format!("ENDPOINT {bound}"));
    if config.reads {
        let socket = socket.clone();
        std::thread::spawn(move || {
            while let Ok(m) = socket.recv() {
                let body = m.concat();
                match std::str::from_utf8(&body) {
                    Ok(text) if body.len() <= 64 => say(&format!("RECV {text}")),
                    _ => say(&format!("RECV {} bytes", body.len())),
                }
            }
        });
    }
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["SEND", n, size] => {
                let n: usize = n.parse().unwrap();
                let size: usize = size.parse().unwrap();
                for i in 0..n {
                    socket.send(vec![i as u8; size]).unwrap();
                }
                say(&format!("SENT {n}"));
            }
            ["PUBLISH", tag] => {
                // Two topics, every 5 ms, until the process ends.
                let socket = socket.clone();
                let tag = tag.to_owned();
                std::thread::spawn(move || {
                    for i in 0.. {
                        socket.send(format!("x.{tag}.{i}")).unwrap();
                        socket.send(format!("y.{tag}.{i}")).unwrap();
                        std::thread::sleep(Duration::from_millis(5));
                    }
                });
            }
            _ => panic!("unknown command {line:?}"),
        }
    }
    std::process::exit(0);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The test's side of a server child.
#[derive(Debug)]
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line read so far, for failure messages and later searches.
    pub seen: Vec<String>,
    pub endpoint: String,
}

impl Server {
    /// Starts the server child of `test` and waits until it listens.
    pub fn start(test: &str, config: &Config) -> Server {
        let mut child = child_command(test, "server")
            .env(CONFIG, config.to_env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            endpoint: String::new(),
        };
        let line = server.wait_line("ENDPOINT ", Duration::from_secs(10));
        server.endpoint = line["ENDPOINT ".len()..].to_owned();
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a line containing `needle` (searching what was seen already
    /// first); fails the test after `within`.
    pub fn wait_line(&mut self, needle: &str, within: Duration) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        self.next_line(needle, within)
    }

    /// Waits for a line containing `needle` among lines not seen yet.
    pub fn next_line(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {needle:?} from the server within {within:?}; it said {:#?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap();
                    panic!(
                        "the server ended ({status}) before saying {needle:?}; it said {:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Sends the child a command line.
    pub fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// A field of `/proc/<pid>/status` in KiB (VmRSS, VmHWM).
    pub fn status_kib(&self, field: &str) -> u64 {
        proc_status_kib(self.pid(), field)
    }

    /// Kills the child with SIGKILL, as a crash would end it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing stdin ends it; kill it in case it is stuck.
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status`, in KiB.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// A raw stream to a conduit endpoint, for peers that misbehave.
#[derive(Debug)]
pub enum Raw {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Raw {
    pub fn connect(endpoint: &str) -> Raw {
        match endpoint.parse::<conduit::Endpoint>().unwrap() {
            conduit::Endpoint::Ipc(path) => Raw::Unix(UnixStream::connect(path).unwrap()),
            conduit::Endpoint::Tcp { port, .. } => {
                Raw::Tcp(TcpStream::connect(("127.0.0.1", port)).unwrap())
            }
            other => panic!("{other}"),
        }
    }

    pub fn try_clone(&self) -> Raw {
        match self {
            Raw::Tcp(s) => Raw::Tcp(s.try_clone().unwrap()),
            Raw::Unix(s) => Raw::Unix(s.try_clone().unwrap()),
        }
    }

    pub fn set_write_timeout(&self, timeout: Duration) {
        let _ = match self {
            Raw::Tcp(s) => s.set_write_timeout(Some(timeout)),
            Raw::Unix(s) => s.set_write_timeout(Some(timeout)),
        };
    }

    pub fn shutdown_write(&self) {
        let _ = match self {
            Raw::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Raw::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }

    /// Reads until the other side closes (end of stream or reset) and returns
    /// what arrived; None if it is still open after `within`.
    pub fn read_until_closed(&mut self, within: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 16 << 10];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let _ = match self {
                Raw::Tcp(s) => s.set_read_timeout(Some(left)),
                Raw::Unix(s) => s.set_read_timeout(Some(left)),
            };
            match self.read(&mut buf) {
                Ok(0) => return Some(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Some(got), // reset: closed too
            }
        }
    }
}

impl Read for Raw {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Raw::Tcp(s) => s.read(buf),
            Raw::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Raw {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Raw::Tcp(s) => s.write(buf),
            Raw::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
