//! A hand-written peer speaking exact bytes, to check what conduit does with
//! traffic a well-behaved library would never send.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use conduit::{ChannelBuilder, Error, Listener, Message, ProtocolError, RecvError, SocketType};

/// A ZMTP 3.1 greeting and a READY for `socket_type`, as raw bytes.
pub fn opening(socket_type: &str) -> Vec<u8> {
    opening_v(socket_type, 1)
}

/// A greeting for ZMTP 3.`minor` and a READY for `socket_type`.
pub fn opening_v(socket_type: &str, minor: u8) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, minor];
    bytes.extend_from_slice(b"NULL");
    bytes.resize(64, 0);
    let mut body = b"\x05READY\x0bSocket-Type".to_vec();
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type.as_bytes());
    bytes.extend_from_slice(&[0x04, body.len() as u8]);
    bytes.extend_from_slice(&body);
    bytes
}

pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Listens on `transport` and connects a raw stream to it.
fn raw_link(
    transport: &str,
    builder: &ChannelBuilder,
) -> (Listener, Box<dyn Stream>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = match transport {
        "ipc" => format!("ipc://{}/raw.sock", dir.path().display()),
        _ => "tcp://127.0.0.1:0".into(),
    };
    let listener = builder.listen(&endpoint).unwrap();
    let stream: Box<dyn Stream> = match listener.endpoint() {
        conduit::Endpoint::Ipc(path) => Box::new(UnixStream::connect(path).unwrap()),
        conduit::Endpoint::Tcp { port, .. } => {
            Box::new(TcpStream::connect(("127.0.0.1", *port)).unwrap())
        }
        other => panic!("{other}"),
    };
    (listener, stream, dir)
}

/// Reads the peer's greeting and one command frame; returns the frame's body.
pub fn read_opening(stream: &mut dyn Stream) -> Vec<u8> {
    let mut greeting = [0u8; 64];
    stream.read_exact(&mut greeting).unwrap();
    assert_eq!(&greeting[..12], &[0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1]);
    // The READY may use the long form once properties grow.
    read_short_frame(stream).1
}

pub fn read_short_frame(stream: &mut dyn Stream) -> (u8, Vec<u8>) {
    let mut header = [0u8; 2];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[0] & 0x02, 0, "expected a short frame");
    let mut body = vec![0u8; usize::from(header[1])];
    stream.read_exact(&mut body).unwrap();
    (header[0], body)
}

#[test]
fn a_peer_that_dies_mid_message_gives_truncated_not_a_partial_message() {
    for t in ["ipc", "tcp"] {
        let (listener, mut raw, _dir) = raw_link(t, &ChannelBuilder::new());
        raw.write_all(&opening("PAIR")).unwrap();
        // One whole message, then a frame announcing 5 bytes with 2 sent.
        raw.write_all(b"\x00\x03one\x00\x05ab").unwrap();
        let channel = listener.accept().unwrap();
        drop(raw);
        assert_eq!(channel.recv().unwrap(), Message::from("one"));
        assert!(
            matches!(channel.recv(), Err(RecvError::Failed(Error::Truncated))),
            "over {t}"
        );
    }
}

#[test]
fn a_pipe_writer_that_dies_mid_message_gives_truncated() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let rx = conduit::PipeReceiver::from_fd(reader.into()).unwrap();
    // The second message has its MORE frame but not its last one.
    writer.write_all(b"\x00\x03one\x01\x01a").unwrap();
    drop(writer);
    assert_eq!(rx.recv().unwrap(), Message::from("one"));
    assert!(matches!(
        rx.recv(),
        Err(RecvError::Failed(Error::Truncated))
    ));
}

#[test]
fn pings_are_answered_and_unknown_commands_ignored() {
    for t in ["ipc", "tcp"] {
        let (listener, mut raw, _dir) = raw_link(t, &ChannelBuilder::new());
        raw.write_all(&opening("PAIR")).unwrap();
        let channel = listener.accept().unwrap();
        read_opening(&mut *raw);
        let receiver = thread::spawn(move || channel.recv().unwrap());
        raw.write_all(b"\x04\x0a\x04PING\x00\x0aabc").unwrap();
        assert_eq!(
            read_short_frame(&mut *raw),
            (0x04, b"\x04PONGabc".to_vec()),
            "over {t}"
        );
        raw.write_all(b"\x04\x0a\x04JOINgroup").unwrap();
        raw.write_all(b"\x00\x02hi").unwrap();
        assert_eq!(receiver.join().unwrap(), Message::from("hi"), "over {t}");
    }
}

#[test]
fn a_malformed_frame_breaks_only_that_channel_and_the_peer_is_told_why() {
    for t in ["ipc", "tcp"] {
        let (listener, mut raw, _dir) = raw_link(t, &ChannelBuilder::new());
        raw.write_all(&opening("PAIR")).unwrap();
        let channel = listener.accept().unwrap();
        read_opening(&mut *raw);
        raw.write_all(b"\x80\x01x").unwrap(); // reserved flag bit
        assert!(matches!(
            channel.recv(),
            Err(RecvError::Failed(Error::Protocol(
                ProtocolError::ReservedFlags(0x80)
            )))
        ));
        let (flags, body) = read_short_frame(&mut *raw);
        assert_eq!(flags, 0x04);
        assert!(body.starts_with(b"\x05ERROR"), "over {t}: {body:?}");
        // The listener still accepts well-behaved peers.
        let endpoint = listener.endpoint().to_string();
        let good = thread::spawn(move || {
            let c = conduit::Channel::connect(&endpoint).unwrap();
            c.send("fine").unwrap();
            c
        });
        assert_eq!(
            listener.accept().unwrap().recv().unwrap(),
            Message::from("fine")
        );
        good.join().unwrap();
    }
}

#[test]
fn handshake_failures_are_reported_by_cause() {
    let builder = ChannelBuilder::new().handshake_timeout(Duration::from_millis(200));
    for t in ["ipc", "tcp"] {
        // Connects and never speaks.
        let (listener, _raw, _dir) = raw_link(t, &builder);
        assert!(
            matches!(listener.accept(), Err(Error::HandshakeTimeout(_))),
            "over {t}"
        );

        // Speaks HTTP.
        let (listener, mut raw, _dir) = raw_link(t, &builder);
        raw.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert!(matches!(
            listener.accept(),
            Err(Error::Protocol(ProtocolError::BadSignature {
                offset: 0,
                ..
            }))
        ));

        // Speaks ZMTP, but as a socket type PAIR cannot talk to.
        let (listener, mut raw, _dir) = raw_link(t, &builder);
        raw.write_all(&opening("PUSH")).unwrap();
        assert!(matches!(
            listener.accept(),
            Err(Error::Protocol(ProtocolError::IncompatibleSocketType {
                ours: SocketType::Pair,
                peer: SocketType::Push
            }))
        ));
        read_opening(&mut *raw);
        let (_, error) = read_short_frame(&mut *raw);
        let reason = b"a PAIR socket cannot talk to a PUSH peer";
        assert_eq!(
            error,
            [&b"\x05ERROR"[..], &[reason.len() as u8], reason].concat()
        );
    }
}

#[test]
fn both_sides_see_each_others_announcements() {
    let (a, b) = crate::support::channel_pair(
        "tcp",
        &ChannelBuilder::new().property("X-App", "demo").unwrap(),
    );
    let peer = b.peer().unwrap();
    assert_eq!(peer.socket_type, SocketType::Pair);
    assert_eq!(peer.properties.get("x-app").unwrap(), "demo");
    assert!(a.peer().unwrap().greeting.is_3_1());
}

/// A raw stream connected to a conduit endpoint string (tcp or ipc).
pub fn raw_connect(endpoint: &str) -> Box<dyn Stream> {
    match endpoint.parse::<conduit::Endpoint>().unwrap() {
        conduit::Endpoint::Ipc(path) => Box::new(UnixStream::connect(path).unwrap()),
        conduit::Endpoint::Tcp { port, .. } => {
            Box::new(TcpStream::connect(("127.0.0.1", port)).unwrap())
        }
        other => panic!("{other}"),
    }
}

/// Reads one short or long frame: (flags, body).
pub fn read_frame(stream: &mut dyn Stream) -> (u8, Vec<u8>) {
    let mut flags = [0u8; 1];
    stream.read_exact(&mut flags).unwrap();
    let len = if flags[0] & 0x02 != 0 {
        let mut size = [0u8; 8];
        stream.read_exact(&mut size).unwrap();
        u64::from_be_bytes(size) as usize
    } else {
        let mut size = [0u8; 1];
        stream.read_exact(&mut size).unwrap();
        usize::from(size[0])
    };
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    (flags[0], body)
}

/// Reads the peer's greeting and its READY (of any length).
pub fn read_greeting_and_ready(stream: &mut dyn Stream) -> Vec<u8> {
    let mut greeting = [0u8; 64];
    stream.read_exact(&mut greeting).unwrap();
    read_frame(stream).1
}
