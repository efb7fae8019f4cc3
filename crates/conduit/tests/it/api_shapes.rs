//! The API's shared shapes (issue 13): misuse errors are typed, each case a
//! variant a caller can match with its own message; every `*_timeout` gives
//! up with an error.

use conduit::process::ChildEnd;
use std::time::Duration;

use conduit::{
    AcceptTimeoutError, Channel, ChannelBuilder, Error, Listener, Misuse, ParentEndError, Socket,
    SocketType,
};

use crate::sockets::*;

#[test]
fn socket_misuse_is_a_variant_to_match() {
    let publisher = socket(SocketType::Pub);
    let e = publisher.subscribe("topic").unwrap_err();
    assert!(
        matches!(e, Error::Misuse(Misuse::NotSubscriber(SocketType::Pub))),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "only a SUB socket subscribes (an XSUB sends subscription messages); this is a PUB"
    );
    let e = publisher.recv().unwrap_err();
    assert!(e.to_string().contains("a PUB socket cannot receive"), "{e}");

    let router = socket(SocketType::Router);
    let e = router.send("no routing id").unwrap_err();
    assert!(
        matches!(e.error, Error::Misuse(Misuse::NoRoutingId)),
        "{e:?}"
    );
    assert_eq!(e.into_message().concat(), "no routing id");
}

#[test]
fn builder_misuse_is_a_variant_to_match() {
    let e = ChannelBuilder::new()
        .property("not a name", "x")
        .unwrap_err();
    assert!(
        matches!(&e, Error::Misuse(Misuse::PropertyName(name)) if name == "not a name"),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "invalid property name \"not a name\"");
}

#[test]
fn process_end_errors_are_variants_to_match() {
    let (end, _other) = ChildEnd::socket_pair().unwrap();
    let e = end.into_receiver(&ChannelBuilder::new()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Misuse(Misuse::WrongEnd {
                actual: "socket",
                wanted: "pipe-read"
            })
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "this end is a socket, not a pipe-read");

    // The test runner spawned this process, not conduit::process::spawn.
    if std::env::var_os(conduit::process::ENV_VAR).is_none() {
        let e = Channel::from_parent().unwrap_err();
        assert!(
            matches!(
                e,
                Error::ParentEnd(ParentEndError::NotSpawned {
                    variable: "CONDUIT_FD",
                    ..
                })
            ),
            "{e:?}"
        );
    }
}

#[test]
fn accept_timeout_gives_up_with_an_error_like_every_timeout() {
    let listener = Listener::bind("tcp://127.0.0.1:0").unwrap();
    let e = listener
        .accept_timeout(Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(e, AcceptTimeoutError::Timeout), "{e:?}");
    assert!(e.is_timeout());
    // The listener still works once a peer comes.
    let endpoint = listener.endpoint().clone();
    let client = std::thread::spawn(move || Channel::connect(&endpoint).unwrap());
    let server = listener.accept_timeout(Duration::from_secs(20)).unwrap();
    let client = client.join().unwrap();
    client.send("hello").unwrap();
    assert_eq!(server.recv().unwrap().concat(), "hello");
}

#[test]
fn channel_bind_and_accept_waits_for_a_peer_where_socket_bind_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let ep = format!("ipc://{}/one.sock", dir.path().display());
    // Nothing listens yet: the channel's one attempt fails, the socket's
    // connect returns at once and connects once something listens.
    assert!(Channel::connect(&ep).is_err());
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    drop(push);

    let (tx, rx) = std::sync::mpsc::channel();
    let server_ep = ep.clone();
    let server = std::thread::spawn(move || {
        tx.send("waiting").unwrap();
        Channel::bind_and_accept(&server_ep).unwrap()
    });
    assert_eq!(rx.recv().unwrap(), "waiting");
    // Retrying for a while finds the listener once it is up.
    let client = ChannelBuilder::new()
        .connect_timeout(Duration::from_secs(20))
        .connect(&ep)
        .unwrap();
    let server = server.join().unwrap();
    client.send("hi").unwrap();
    assert_eq!(server.recv().unwrap().concat(), "hi");
}

#[test]
fn the_shared_builder_setters_act_alike_on_channels_and_sockets() {
    // `identity` from either builder is what a ROUTER sees.
    let router = socket(SocketType::Router);
    let ep = router.bind("tcp://127.0.0.1:*").unwrap();
    let channel = ChannelBuilder::new()
        .socket_type(SocketType::Dealer)
        .identity("from-channel")
        .connect(&ep)
        .unwrap();
    let dealer = Socket::builder(SocketType::Dealer)
        .identity("from-socket")
        .linger(Duration::from_secs(5))
        .build()
        .unwrap();
    dealer.connect(&ep).unwrap();
    channel.send("a").unwrap();
    dealer.send("b").unwrap();
    let mut seen: Vec<String> = (0..2)
        .map(|_| {
            let m = router.recv_timeout(Duration::from_secs(20)).unwrap();
            String::from_utf8(m.frames()[0].to_vec()).unwrap()
        })
        .collect();
    seen.sort();
    assert_eq!(seen, ["from-channel", "from-socket"]);

    // `max_message_size` from either builder cuts off a peer that sends more.
    let small = ChannelBuilder::new().max_message_size(4);
    let listener = small.listen("tcp://127.0.0.1:0").unwrap();
    let endpoint = listener.endpoint().clone();
    let sender = std::thread::spawn(move || {
        let ch = Channel::connect(&endpoint).unwrap();
        ch.send("too long").unwrap();
        ch
    });
    let ch = listener.accept().unwrap();
    assert!(ch.recv().is_err());
    drop(sender.join().unwrap());

    let (events, dropped) = std::sync::mpsc::channel();
    let events = std::sync::Mutex::new(events);
    let pull = Socket::builder(SocketType::Pull)
        .max_message_size(4)
        .on_event(move |e| {
            if let conduit::SocketEvent::Disconnected {
                error: Some(error), ..
            } = e
            {
                let _ = events.lock().unwrap().send(error.to_string());
            }
        })
        .build()
        .unwrap();
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap();
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    push.send("too long").unwrap();
    let why = dropped.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(why.contains("protocol error"), "{why}");
    assert!(pull.try_recv().is_err());
}
