//! conduit channels against pyzmq PAIR sockets, both ways round, over tcp and ipc.

use std::time::Duration;

use bytes::Bytes;
use conduit::{Channel, ChannelBuilder, Message, RecvError, SocketType};

use crate::pyzmq::{Peer, bind_endpoint};

/// Everything a PAIR conversation should carry unchanged.
fn conversation() -> Vec<Message> {
    vec![
        Message::from("hello"),
        Message::from(""),
        Message::from_frames(["multi", "", "part", "message"]),
        Message::from(Bytes::from(
            (0..(1 << 20)).map(|i| (i % 253) as u8).collect::<Vec<u8>>(),
        )),
        Message::from(vec![9u8; 300]),
    ]
}

fn converse(channel: &Channel) {
    assert_eq!(channel.peer().unwrap().socket_type, SocketType::Pair);
    for m in conversation() {
        channel.send(m.clone()).unwrap();
        assert_eq!(channel.recv().unwrap(), m);
    }
}

/// How many messages `converse` sends, for the echoing peer's count.
const CONVERSATION: &str = "5";

#[test]
fn conduit_binds_and_pyzmq_connects() {
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let endpoint = match transport {
            "tcp" => "tcp://127.0.0.1:0".to_owned(),
            _ => format!("ipc://{}/c.sock", dir.path().display()),
        };
        let listener = ChannelBuilder::new().listen(&endpoint).unwrap();
        let bound = listener.endpoint().to_string();
        let peer = Peer::start(&["PAIR", "connect", &bound, "echo", CONVERSATION]);
        let channel = listener
            .accept_timeout(Duration::from_secs(20))
            .expect("pyzmq connected");
        converse(&channel);
        peer.finish();
        // pyzmq closed its socket: that is a clean close here.
        assert!(
            matches!(channel.recv(), Err(RecvError::Closed)),
            "over {transport}"
        );
    }
}

#[test]
fn pyzmq_binds_and_conduit_connects() {
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let peer = Peer::start(&[
            "PAIR",
            "bind",
            &bind_endpoint(transport, &dir),
            "echo",
            CONVERSATION,
        ]);
        let channel = Channel::connect(peer.endpoint.as_deref().unwrap()).unwrap();
        converse(&channel);
        peer.finish();
    }
}

#[test]
fn a_stream_from_pyzmq_arrives_whole_in_order_then_closes() {
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let mut peer = Peer::start(&[
            "PAIR",
            "bind",
            &bind_endpoint(transport, &dir),
            "send",
            "10000",
        ]);
        let channel = Channel::connect(peer.endpoint.take().as_deref().unwrap()).unwrap();
        for i in 0..10_000 {
            assert_eq!(
                channel.recv().unwrap(),
                Message::from_frames(["msg".to_owned(), i.to_string()])
            );
        }
        peer.finish();
        assert!(
            matches!(channel.recv(), Err(RecvError::Closed)),
            "over {transport}"
        );
    }
}

#[test]
fn a_stream_to_pyzmq_arrives_whole_in_order() {
    let message = |i: u32| Message::from_frames([format!("n{i}"), "x".repeat(i as usize % 300)]);
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let mut peer = Peer::start(&[
            "PAIR",
            "bind",
            &bind_endpoint(transport, &dir),
            "recv",
            "10000",
        ]);
        let channel = Channel::connect(peer.endpoint.as_deref().unwrap()).unwrap();
        // Send from a thread: the peer prints what it receives, and stops
        // receiving unless we read that at the same time.
        let sender = std::thread::spawn(move || {
            for i in 0..10_000u32 {
                channel.send(message(i)).unwrap();
            }
            // Close delivers everything before returning.
            channel.close().unwrap();
        });
        for i in 0..10_000u32 {
            if i % 500 == 0 {
                eprintln!("{transport} at {i}");
            }
            assert_eq!(peer.next_message(), message(i), "over {transport}");
        }
        sender.join().unwrap();
        peer.finish();
    }
}
