//! Helpers for socket tests: endpoints, and waiting for peers to be in service.

use std::time::{Duration, Instant};

use conduit::{Message, Socket, SocketType};

/// A fresh endpoint to bind on each transport ("tcp" lets the OS pick a port).
pub fn endpoint(transport: &str, dir: &tempfile::TempDir, name: &str) -> String {
    match transport {
        "tcp" => "tcp://127.0.0.1:*".into(),
        _ => format!("ipc://{}/{name}.sock", dir.path().display()),
    }
}

/// A socket with a short linger, so a test that fails does not hang on close.
pub fn socket(kind: SocketType) -> Socket {
    Socket::builder(kind)
        .linger(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Waits until `socket` has `n` peers in service.
pub fn wait_peers(socket: &Socket, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket.peer_count() != n {
        assert!(
            Instant::now() < deadline,
            "{} socket has {} peers, expected {n}",
            socket.socket_type(),
            socket.peer_count()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub fn recv_str(socket: &Socket) -> String {
    let m = socket.recv_timeout(Duration::from_secs(10)).unwrap();
    String::from_utf8(m.concat().to_vec()).unwrap()
}

pub fn frames(m: &Message) -> Vec<String> {
    m.frames()
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}
