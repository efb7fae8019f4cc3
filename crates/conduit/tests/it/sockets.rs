//! Helpers for socket tests: endpoints, and waiting for peers to be in service.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conduit::{Message, Socket, SocketBuilder, SocketEvent, SocketType};

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

/// The socket events a test has seen, as text.
pub type Events = Arc<Mutex<Vec<String>>>;

/// `builder`, recording every event it reports.
pub fn recording(builder: SocketBuilder) -> (SocketBuilder, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let builder = builder.on_event(move |e: &SocketEvent| sink.lock().unwrap().push(e.to_string()));
    (builder, events)
}

/// Waits for the `nth` (from 1) event containing `needle`.
pub fn wait_event(events: &Events, needle: &str, nth: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(e) = events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.contains(needle))
            .nth(nth - 1)
        {
            return e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no event #{nth} with {needle:?} in {:#?}",
            events.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
