//! The async API (feature `tokio`): patterns against real pyzmq peers,
//! cancellation, many sockets on one thread, sharing with blocking code, and
//! the async examples. Every test is bounded in time by `within`.

use std::future::Future;
use std::time::Duration;

use conduit::{
    AsyncChannel, AsyncSocket, Channel, Listener, Message, Misuse, RecvError, SendTimeoutError,
    Socket, SocketType,
};
use futures_util::{SinkExt, StreamExt};

use crate::guide_examples::example_with;
use crate::pyzmq::{Peer, bind_endpoint};
use crate::raw_peer::{opening, read_opening};
use crate::sockets::{endpoint, frames};

/// Fails the test instead of hanging it.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish in 30 s"))
}

fn builder(kind: SocketType) -> conduit::SocketBuilder {
    Socket::builder(kind).linger(Duration::from_secs(5))
}

fn asocket(kind: SocketType) -> AsyncSocket {
    builder(kind).build().unwrap().into_async().unwrap()
}

fn msg(parts: &[&str]) -> Message {
    Message::from_frames(parts.iter().map(|p| p.to_string()))
}

/// Our socket against a pyzmq peer over tcp and ipc, each side binding in
/// turn; `script` drives ours through the async API.
async fn with_peers<F, Fut>(
    ours: SocketType,
    identity: &str,
    theirs: &str,
    action: &[&str],
    script: F,
) where
    F: Fn(AsyncSocket, Peer) -> Fut,
    Fut: Future<Output = ()>,
{
    for transport in ["tcp", "ipc"] {
        for we_bind in [true, false] {
            eprintln!("{ours} - {theirs} over {transport}, conduit binds: {we_bind}");
            let dir = tempfile::tempdir().unwrap();
            let mut b = builder(ours);
            if !identity.is_empty() {
                b = b.identity(identity.to_owned());
            }
            let socket = b.build().unwrap().into_async().unwrap();
            let env = [("PEER_ID", "py")];
            let peer = if we_bind {
                let ep = socket
                    .bind(&endpoint(transport, &dir, "ours"))
                    .unwrap()
                    .to_string();
                let mut args = vec![theirs, "connect", &ep];
                args.extend(action);
                Peer::start_with(&args, &env)
            } else {
                let ep = bind_endpoint(transport, &dir);
                let mut args = vec![theirs, "bind", &ep];
                args.extend(action);
                let peer = Peer::start_with(&args, &env);
                socket.connect(peer.endpoint.as_deref().unwrap()).unwrap();
                peer
            };
            within("the exchange", script(socket, peer)).await;
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn async_req_and_rep_with_pyzmq() {
    with_peers(
        SocketType::Req,
        "",
        "REP",
        &["echo", "10"],
        |s, peer| async move {
            for i in 0..10 {
                let m = msg(&["req", &i.to_string()]);
                s.send(m.clone()).await.unwrap();
                assert_eq!(s.recv().await.unwrap(), m);
            }
            peer.finish();
            s.close().await.unwrap();
        },
    )
    .await;
    with_peers(
        SocketType::Rep,
        "",
        "REQ",
        &["request", "10"],
        |s, mut peer| async move {
            for i in 0..10 {
                let request = s.recv().await.unwrap();
                assert_eq!(frames(&request), ["req", &i.to_string()]);
                s.send(msg(&["reply", &i.to_string()])).await.unwrap();
                assert_eq!(frames(&peer.next_message()), ["reply", &i.to_string()]);
            }
            peer.finish();
            s.close().await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn async_push_and_pull_with_pyzmq() {
    with_peers(
        SocketType::Push,
        "",
        "PULL",
        &["recv", "20"],
        |mut s, mut peer| async move {
            // Half through send().await, half through the Sink.
            for i in 0..10 {
                s.send(msg(&["push", &i.to_string()])).await.unwrap();
            }
            for i in 10..20 {
                SinkExt::send(&mut s, msg(&["push", &i.to_string()]))
                    .await
                    .unwrap();
            }
            for i in 0..20 {
                assert_eq!(frames(&peer.next_message()), ["push", &i.to_string()]);
            }
            peer.finish();
            s.close().await.unwrap();
        },
    )
    .await;
    with_peers(
        SocketType::Pull,
        "",
        "PUSH",
        &["send", "20"],
        |mut s, peer| async move {
            let mut n = 0;
            while let Some(m) = s.next().await {
                assert_eq!(frames(&m.unwrap()), ["msg", &n.to_string()]);
                n += 1;
                if n == 20 {
                    break;
                }
            }
            assert_eq!(n, 20);
            peer.finish();
            s.close().await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn async_pub_and_sub_with_pyzmq() {
    with_peers(
        SocketType::Sub,
        "",
        "PUB",
        &["publish"],
        |mut s, mut peer| async move {
            s.subscribe("a.").unwrap();
            for _ in 0..5 {
                let m = s.next().await.unwrap().unwrap();
                assert!(frames(&m)[0].starts_with("a."), "{m:?}");
            }
            peer.stop();
            peer.finish();
            s.close().await.unwrap();
        },
    )
    .await;
    with_peers(
        SocketType::Pub,
        "",
        "SUB",
        &["subscribe", "a.", "5"],
        |s, mut peer| async move {
            let mut got = Vec::new();
            let mut i = 0;
            while got.len() < 5 {
                s.send(format!("a.{i}")).await.unwrap();
                s.send(format!("b.{i}")).await.unwrap();
                i += 1;
                if let Some(m) = peer.message_within(Duration::from_millis(5)) {
                    got.push(m);
                }
            }
            for m in got {
                assert!(frames(&m)[0].starts_with("a."), "{m:?}");
            }
            peer.finish();
            s.close().await.unwrap();
        },
    )
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn async_router_with_pyzmq_dealer() {
    with_peers(
        SocketType::Router,
        "",
        "DEALER",
        &["request", "10"],
        |s, mut peer| async move {
            for i in 0..10 {
                let m = s.recv().await.unwrap();
                // [routing id, "", "req", i]: the pyzmq DEALER's PEER_ID names it.
                assert_eq!(frames(&m), ["py", "", "req", &i.to_string()]);
                s.send(msg(&["py", "", "rep", &i.to_string()]))
                    .await
                    .unwrap();
                assert_eq!(frames(&peer.next_message()), ["", "rep", &i.to_string()]);
            }
            peer.finish();
            s.close().await.unwrap();
        },
    )
    .await;
}

/// A PULL and a PUSH connected over ipc, both async.
async fn push_pull(dir: &tempfile::TempDir, hwm: usize) -> (AsyncSocket, AsyncSocket) {
    let pull = builder(SocketType::Pull)
        .recv_hwm(hwm)
        .build()
        .unwrap()
        .into_async()
        .unwrap();
    let ep = pull
        .bind(&endpoint("ipc", dir, "pull"))
        .unwrap()
        .to_string();
    let push = builder(SocketType::Push)
        .send_hwm(hwm)
        .build()
        .unwrap()
        .into_async()
        .unwrap();
    push.connect(&ep).unwrap();
    (push, pull)
}

#[tokio::test(flavor = "current_thread")]
async fn dropped_recv_futures_lose_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let (push, pull) = push_pull(&dir, 1000).await;
    // Nothing there: the timeout drops a pending receive.
    let r = tokio::time::timeout(Duration::from_millis(20), pull.recv()).await;
    assert!(r.is_err(), "received {r:?} from nobody");

    // A sender paced so that receives are often pending when a timer beats
    // them in select!; every message must still arrive once, in order.
    const N: usize = 300;
    let sender = async {
        for i in 0..N {
            push.send(i.to_string()).await.unwrap();
            if i % 7 == 0 {
                // Longer than the receiver's timer (tokio's timers tick in
                // milliseconds): receives are cancelled in every pause.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let receiver = async {
        let mut got = Vec::new();
        let mut cancelled = 0;
        while got.len() < N {
            tokio::select! {
                m = pull.recv() => got.push(String::from_utf8(m.unwrap().concat().to_vec()).unwrap()),
                _ = tokio::time::sleep(Duration::from_micros(300)) => cancelled += 1,
            }
        }
        (got, cancelled)
    };
    let ((), (got, cancelled)) =
        within("the paced stream", async { tokio::join!(sender, receiver) }).await;
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    assert!(
        cancelled > 0,
        "no receive was ever cancelled: the test proved nothing"
    );
    // And nothing extra is left behind.
    assert!(matches!(pull.try_recv(), Err(conduit::TryRecvError::Empty)));
}

#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_send_hands_its_message_back() {
    // No peer: a PUSH send waits.
    let push = asocket(SocketType::Push);
    let mut send = push.send("kept");
    tokio::select! {
        r = &mut send => panic!("sent to nobody: {r:?}"),
        _ = tokio::time::sleep(Duration::from_millis(20)) => {}
    }
    assert_eq!(send.take_message().unwrap().concat(), "kept");
    // With its message taken, the future has nothing left to send.
    assert!(send.await.is_ok());

    match push.send_timeout("timed", Duration::from_millis(20)).await {
        Err(SendTimeoutError::Timeout(m)) => assert_eq!(m.concat(), "timed"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Through a plain timeout too: the future is dropped, nothing was sent.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), push.send("dropped"))
            .await
            .is_err()
    );

    // Once a peer comes, a new send goes, and only it arrives: nothing that
    // was handed back or dropped went out on its own.
    let dir = tempfile::tempdir().unwrap();
    let pull = asocket(SocketType::Pull);
    let ep = pull
        .bind(&endpoint("ipc", &dir, "late"))
        .unwrap()
        .to_string();
    push.connect(&ep).unwrap();
    within("the send", push.send("sent")).await.unwrap();
    assert_eq!(
        within("the receive", pull.recv()).await.unwrap().concat(),
        "sent"
    );
    let r = tokio::time::timeout(Duration::from_millis(100), pull.recv()).await;
    assert!(r.is_err(), "an extra message arrived: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_at_the_high_water_mark_are_sent_or_handed_back() {
    let dir = tempfile::tempdir().unwrap();
    let (push, pull) = push_pull(&dir, 4).await;
    within("the connection", async {
        while push.peer_count() == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    // Nobody reads: the kernel's buffers and both high-water marks fill (16
    // KiB messages fill them in a few hundred) and sends start timing out.
    let payload = vec![0u8; 16 << 10];
    let mut sent = Vec::new();
    let mut handed_back = Vec::new();
    for i in 0..5000 {
        let m = Message::from_frames([i.to_string().into_bytes(), payload.clone()]);
        match push.send_timeout(m, Duration::from_millis(2)).await {
            Ok(()) => sent.push(i.to_string()),
            Err(SendTimeoutError::Timeout(m)) => {
                assert_eq!(m.frames()[0], i.to_string(), "another message came back");
                handed_back.push(i);
                if handed_back.len() == 5 {
                    break;
                }
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(
        handed_back.len(),
        5,
        "the high-water mark never held a send"
    );
    // A waiting send completes once the reader makes room.
    let last = tokio::spawn(async move {
        push.send("last").await.unwrap();
        push
    });
    let mut got = Vec::new();
    loop {
        let m = within("the drain", pull.recv()).await.unwrap();
        let text = String::from_utf8(m.frames()[0].to_vec()).unwrap();
        if text == "last" {
            break;
        }
        got.push(text);
    }
    // Exactly the sends that said so went out, in order; none handed back did.
    assert_eq!(got, sent);
    let push = within("the waiting send", last).await.unwrap();
    push.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn many_sockets_on_one_current_thread_runtime() {
    const PAIRS: usize = 40;
    const MESSAGES: usize = 25;
    let dir = tempfile::tempdir().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..PAIRS {
        let pull = asocket(SocketType::Pull);
        let transport = if p % 2 == 0 { "tcp" } else { "ipc" };
        let ep = pull
            .bind(&endpoint(transport, &dir, &format!("pull{p}")))
            .unwrap()
            .to_string();
        let push = asocket(SocketType::Push);
        push.connect(&ep).unwrap();
        tasks.spawn(async move {
            for i in 0..MESSAGES {
                push.send(format!("{p}.{i}")).await.unwrap();
            }
            push
        });
        tasks.spawn(async move {
            let mut pull = pull;
            for i in 0..MESSAGES {
                let m = pull.next().await.unwrap().unwrap();
                assert_eq!(m.concat(), format!("{p}.{i}"));
            }
            pull
        });
    }
    let mut done = 0;
    within("the pairs", async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap().close().await.unwrap();
            done += 1;
        }
    })
    .await;
    assert_eq!(done, PAIRS * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_reply_between_tasks_on_the_multi_thread_runtime() {
    let rep = asocket(SocketType::Rep);
    let ep = rep.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let req = asocket(SocketType::Req);
    req.connect(&ep).unwrap();
    let server = tokio::spawn(async move {
        for _ in 0..200 {
            let m = rep.recv().await.unwrap();
            rep.send(m).await.unwrap();
        }
        rep
    });
    within("the round trips", async {
        for i in 0..200 {
            req.send(i.to_string()).await.unwrap();
            assert_eq!(req.recv().await.unwrap().concat(), i.to_string());
        }
    })
    .await;
    within("the server", server)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    req.close().await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn blocking_and_async_code_share_one_socket() {
    let dir = tempfile::tempdir().unwrap();
    let pull = builder(SocketType::Pull).build().unwrap();
    let ep = pull
        .bind(&endpoint("ipc", &dir, "shared"))
        .unwrap()
        .to_string();
    let blocking = pull.clone();
    let async_pull = pull.into_async().unwrap();
    let push = asocket(SocketType::Push);
    push.connect(&ep).unwrap();

    push.send("to async").await.unwrap();
    assert_eq!(
        within("recv", async_pull.recv()).await.unwrap().concat(),
        "to async"
    );
    push.send("to blocking").await.unwrap();
    let got = tokio::task::spawn_blocking(move || {
        let m = blocking.recv_timeout(Duration::from_secs(10));
        (m, blocking)
    });
    let (m, blocking) = within("blocking recv", got).await.unwrap();
    assert_eq!(m.unwrap().concat(), "to blocking");
    assert_eq!(blocking.peer_count(), async_pull.peer_count());

    // Back to blocking: the same socket, still connected.
    let socket = async_pull.into_inner();
    push.send("after").await.unwrap();
    let m = tokio::task::spawn_blocking(move || socket.recv_timeout(Duration::from_secs(10)));
    assert_eq!(
        within("recv after", m).await.unwrap().unwrap().concat(),
        "after"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn closing_another_handle_ends_a_waiting_receive_and_the_stream() {
    let socket = builder(SocketType::Pull).build().unwrap();
    let handle = socket.clone();
    let mut s = socket.into_async().unwrap();
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::task::spawn_blocking(move || handle.close().unwrap())
            .await
            .unwrap();
    });
    assert!(matches!(
        within("recv", s.recv()).await,
        Err(RecvError::Closed)
    ));
    assert!(within("next", s.next()).await.is_none());
    closer.await.unwrap();
    assert!(matches!(
        s.send("x").await.unwrap_err().error,
        conduit::Error::SocketClosed | conduit::Error::Misuse(_)
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn closing_ends_a_waiting_send_and_hands_its_message_back() {
    // No peer: the send waits until the socket is closed under it.
    let socket = builder(SocketType::Push).build().unwrap();
    let handle = socket.clone();
    let push = socket.into_async().unwrap();
    let closer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::task::spawn_blocking(move || handle.close().unwrap())
            .await
            .unwrap();
    });
    let e = within("the send", push.send("unsent")).await.unwrap_err();
    assert!(e.is_closed(), "{e:?}");
    assert_eq!(e.into_inner().concat(), "unsent");
    closer.await.unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn errors_are_the_blocking_ones() {
    let push = asocket(SocketType::Push);
    let e = push.recv().await.unwrap_err();
    assert!(
        matches!(
            e,
            RecvError::Failed(conduit::Error::Misuse(Misuse::CannotReceive(
                SocketType::Push
            )))
        ),
        "{e:?}"
    );
    let req = asocket(SocketType::Req);
    let e = req.recv().await.unwrap_err();
    assert!(
        matches!(
            e,
            RecvError::Failed(conduit::Error::Misuse(Misuse::NoRequestSent))
        ),
        "{e:?}"
    );
    let e = push.send(Message::new()).await.unwrap_err();
    assert!(matches!(e.error, conduit::Error::EmptyMessage), "{e:?}");
}

/// The request a ROUTER got first, from whichever of `routers` had it, and
/// that router's index.
async fn first_request(routers: &[AsyncSocket]) -> (usize, Message) {
    tokio::select! {
        m = routers[0].recv() => (0, m.unwrap()),
        m = routers[1].recv() => (1, m.unwrap()),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_relaxed_req_receives_its_reply_past_a_stale_one() {
    // A stale reply from the first peer stays queued, which keeps the
    // readiness descriptor readable while try_recv finds nothing: the
    // receive must still see the real reply arrive from the second peer.
    let routers = [asocket(SocketType::Router), asocket(SocketType::Router)];
    let req = builder(SocketType::Req)
        .req_relaxed(true)
        .req_correlate(true)
        .build()
        .unwrap()
        .into_async()
        .unwrap();
    for r in &routers {
        req.connect(&r.bind("tcp://127.0.0.1:*").unwrap()).unwrap();
    }
    within("both peers", async {
        while req.peer_count() < 2 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    let answer = |m: Message, text: &str| {
        let mut frames = m.into_frames();
        *frames.last_mut().unwrap() = text.to_owned().into();
        Message::from_frames(frames)
    };
    req.send("first").await.unwrap();
    let (a, first) = within("first request", first_request(&routers)).await;
    req.send("second").await.unwrap();
    let (b, second) = within("second request", first_request(&routers)).await;
    assert_ne!(a, b, "round-robin sent both requests to one peer");
    routers[a].send(answer(first, "stale")).await.unwrap();
    let pending = req.recv();
    tokio::pin!(pending);
    // The stale reply arrives and is held back while the receive waits.
    let early = tokio::time::timeout(Duration::from_millis(50), &mut pending).await;
    assert!(early.is_err(), "the stale reply was received: {early:?}");
    routers[b].send(answer(second, "fresh")).await.unwrap();
    assert_eq!(
        within("the reply", pending).await.unwrap().concat(),
        "fresh"
    );
}

#[test]
fn async_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<AsyncSocket>();
    check::<AsyncChannel>();
    check::<conduit::SocketSend<'static>>();
}

#[tokio::test(flavor = "current_thread")]
async fn async_channels_carry_whole_messages_both_ways() {
    let (a, b) = Channel::pair().unwrap();
    let (a, b) = (a.into_async().unwrap(), b.into_async().unwrap());
    // Nothing yet: a cancelled receive loses nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(20), b.recv())
            .await
            .is_err()
    );
    // Large enough to fill the socket buffer: the sender waits for the
    // receiver, both on this one thread.
    let big = vec![7u8; 4 << 20];
    let sender = async {
        for i in 0..4u8 {
            let mut m = Message::from_frames([vec![i]]);
            m.push_back(big.clone());
            a.send(m).await.unwrap();
        }
    };
    let receiver = async {
        let mut got = Vec::new();
        for _ in 0..4 {
            let m = b.recv().await.unwrap();
            assert_eq!(m.frames()[1].len(), big.len());
            got.push(m.frames()[0][0]);
        }
        got
    };
    let ((), got) = within("the big messages", async { tokio::join!(sender, receiver) }).await;
    assert_eq!(got, [0, 1, 2, 3]);
    b.send("back").await.unwrap();
    assert_eq!(within("reply", a.recv()).await.unwrap().concat(), "back");
    a.close().await.unwrap();
    assert!(matches!(
        within("end", b.recv()).await,
        Err(RecvError::Closed)
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn a_channel_receive_cancelled_mid_message_loses_nothing() {
    use std::io::Write;
    // A raw peer writes half a frame, and the rest only after the receive
    // waiting for it has been dropped.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raw.sock");
    let listener = Listener::bind(&format!("ipc://{}", path.display())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let peer = std::thread::spawn(move || {
        let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
        s.write_all(&opening("PAIR")).unwrap();
        read_opening(&mut s);
        for bytes in rx {
            s.write_all(&bytes).unwrap();
        }
    });
    let channel = within(
        "accept",
        tokio::task::spawn_blocking(move || listener.accept()),
    )
    .await
    .unwrap()
    .unwrap()
    .into_async()
    .unwrap();
    // ZMTP 3.1 short frame, last: flags 0, length 5, then "hel" of "hello".
    tx.send(vec![0x00, 5, b'h', b'e', b'l']).unwrap();
    let r = tokio::time::timeout(Duration::from_millis(50), channel.recv()).await;
    assert!(r.is_err(), "half a message was received: {r:?}");
    tx.send(b"lo".to_vec()).unwrap();
    let m = within("the rest", channel.recv()).await.unwrap();
    assert_eq!(m.frames(), [bytes::Bytes::from_static(b"hello")]);
    drop(tx);
    peer.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_sharing_one_socket_receive_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let (push, pull) = push_pull(&dir, 1000).await;
    let pull = std::sync::Arc::new(pull);
    const N: usize = 400;
    let mut takers = Vec::new();
    for _ in 0..3 {
        let pull = pull.clone();
        takers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Ok(m) = pull.recv().await {
                let n: usize = String::from_utf8_lossy(&m.concat()).parse().unwrap();
                if n == usize::MAX {
                    break;
                }
                got.push(n);
            }
            got
        }));
    }
    for i in 0..N {
        push.send(i.to_string()).await.unwrap();
    }
    for _ in 0..3 {
        push.send(usize::MAX.to_string()).await.unwrap();
    }
    let mut all = Vec::new();
    for t in takers {
        all.extend(within("a taker", t).await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>());
}

/// Two tasks waiting on one socket at once: one wait holds tokio's reader
/// slots (which keep a single waker), the other is in tokio's waiter list.
/// Both must be woken; a waiter whose wake-up went to the other task would
/// wait for a message that never comes. Each task tells when its receive
/// first waits, so the messages are sent only once both are waiting.
#[tokio::test(flavor = "current_thread")]
async fn two_tasks_waiting_on_one_socket_at_once_both_receive() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let (push, pull) = push_pull(&dir, 1000).await;
    let pull = Arc::new(pull);
    for round in 0..50 {
        let waiting = Arc::new(AtomicUsize::new(0));
        let taker = |pull: Arc<AsyncSocket>, waiting: Arc<AtomicUsize>| async move {
            let mut recv = std::pin::pin!(pull.recv());
            let mut counted = false;
            std::future::poll_fn(|cx| {
                let r = recv.as_mut().poll(cx);
                if r.is_pending() && !counted {
                    counted = true;
                    waiting.fetch_add(1, Ordering::SeqCst);
                }
                r
            })
            .await
        };
        let a = tokio::spawn(taker(pull.clone(), waiting.clone()));
        let b = tokio::spawn(taker(pull.clone(), waiting.clone()));
        within("both receives waiting", async {
            while waiting.load(Ordering::SeqCst) < 2 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        push.send(format!("{round}a")).await.unwrap();
        push.send(format!("{round}b")).await.unwrap();
        let both = tokio::time::timeout(Duration::from_secs(5), async {
            (a.await.unwrap(), b.await.unwrap())
        });
        let (x, y) = both
            .await
            .unwrap_or_else(|_| panic!("round {round}: a waiting receive was not woken"));
        let mut got = [text(&x.unwrap()), text(&y.unwrap())];
        got.sort();
        assert_eq!(got, [format!("{round}a"), format!("{round}b")]);
    }
}

#[test]
fn async_broker_example_routes_every_request() {
    let out = run_example("async_broker");
    let lines = |prefix: &str| out.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(lines("request client-"), 12, "{out}");
    assert_eq!(lines("reply worker-"), 12, "{out}");
    for c in 0..4 {
        assert_eq!(out.matches(&format!("-> client-{c}\n")).count(), 3, "{out}");
    }
    assert!(out.ends_with("routed 12 requests\n"), "{out}");
}

#[test]
fn async_select_example_serves_three_sockets() {
    let out = run_example("async_select");
    assert_eq!(out.matches("handled job ").count(), 20, "{out}");
    assert!(out.contains("operator: 20 jobs done\n"), "{out}");
    assert!(out.contains("stop after 20 jobs\n"), "{out}");
}

fn run_example(name: &str) -> String {
    let out = std::process::Command::new(example_with(name, &["--features", "tokio"]))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn text(m: &Message) -> String {
    String::from_utf8(m.concat().to_vec()).unwrap()
}

/// A socket connected to one peer reads it without asking its reactor's
/// epoll set which source is ready, and takes what is queued without a step
/// of the reactor: ping-pongs, then a burst past the read budget and the
/// receive high-water mark (left-over reads, and resumes queued without a
/// wake-up), must each arrive whole and in order.
#[tokio::test(flavor = "current_thread")]
async fn a_lone_connection_read_directly_loses_nothing() {
    const ROUNDS: usize = 2000;
    const BURST: usize = 20_000;
    for transport in ["tcp", "ipc"] {
        let dir = tempfile::tempdir().unwrap();
        let peer = builder(SocketType::Pair).build().unwrap();
        let ep = peer
            .bind(&endpoint(transport, &dir, "peer"))
            .unwrap()
            .to_string();
        let echo = std::thread::spawn(move || {
            for _ in 0..ROUNDS {
                let m = peer.recv().unwrap();
                peer.send(m).unwrap();
            }
            for i in 0..BURST {
                peer.send(i.to_string()).unwrap();
            }
            // Held until the burst is read, so that it is not cut short.
            peer.recv().unwrap();
        });
        let ours = builder(SocketType::Pair)
            .recv_hwm(16)
            .build()
            .unwrap()
            .into_async()
            .unwrap();
        ours.connect(&ep).unwrap();
        within("the ping-pong and the burst", async {
            for i in 0..ROUNDS {
                ours.send(i.to_string()).await.unwrap();
                assert_eq!(text(&ours.recv().await.unwrap()), i.to_string());
            }
            for i in 0..BURST {
                assert_eq!(text(&ours.recv().await.unwrap()), i.to_string());
            }
            ours.send("done").await.unwrap();
        })
        .await;
        echo.join().unwrap();
    }
}

/// While one peer's messages are read directly, a second peer (connected to,
/// or connecting to us) is still served: its connection makes the reactor
/// take a full step, and its message arrives while the first keeps sending.
#[tokio::test(flavor = "current_thread")]
async fn a_second_peer_is_served_while_the_first_is_read_directly() {
    for we_bind in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let pull = builder(SocketType::Pull)
            .build()
            .unwrap()
            .into_async()
            .unwrap();
        let first = builder(SocketType::Push).build().unwrap();
        let second = builder(SocketType::Push).build().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut bound = None;
        if we_bind {
            let ep = pull.bind(&endpoint("ipc", &dir, "pull")).unwrap();
            first.connect(&ep).unwrap();
            bound = Some(ep);
        } else {
            let ep = first.bind(&endpoint("ipc", &dir, "first")).unwrap();
            pull.connect(&ep).unwrap();
        }
        let streaming = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // At the high-water mark this times out and looks again.
                    let _ = first.send_timeout("first", Duration::from_millis(10));
                }
            })
        };
        within("the second peer's message", async {
            // The first peer's messages are being read.
            assert_eq!(text(&pull.recv().await.unwrap()), "first");
            if let Some(ep) = &bound {
                second.connect(ep).unwrap();
            } else {
                let ep = second.bind(&endpoint("ipc", &dir, "second")).unwrap();
                pull.connect(&ep).unwrap();
            }
            second.send("second").unwrap();
            while text(&pull.recv().await.unwrap()) != "second" {}
        })
        .await;
        assert_eq!(pull.peer_count(), 2);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        streaming.join().unwrap();
    }
}

/// A receive waits on the socket's reactor descriptor alone: a message that
/// another thread queues meanwhile must wake it. Here that thread is the
/// socket's I/O thread, which takes the reactor back once no task has stepped
/// it for its lease (50 ms), and reads the late message itself.
#[tokio::test(flavor = "current_thread")]
async fn a_message_the_io_thread_queues_wakes_a_waiting_receive() {
    let dir = tempfile::tempdir().unwrap();
    let (push, pull) = push_pull(&dir, 1000).await;
    push.send("first").await.unwrap();
    assert_eq!(
        text(&within("the first", pull.recv()).await.unwrap()),
        "first"
    );
    for i in 0..3 {
        let late = async {
            // Past the lease: the I/O thread watches the reactor again.
            tokio::time::sleep(Duration::from_millis(120)).await;
            push.send(i.to_string()).await.unwrap();
        };
        let (got, ()) = tokio::join!(within("the late message", pull.recv()), late);
        assert_eq!(text(&got.unwrap()), i.to_string());
    }
}

/// The same when every message is queued by the I/O thread: a socket whose
/// readiness descriptor was handed out (`AsFd`) is read by its I/O thread
/// only, and a task woken by the reactor's readiness may look before the
/// message is queued; the wake-up that comes with queueing it must not be
/// lost.
#[tokio::test(flavor = "current_thread")]
async fn messages_a_pinned_socket_s_io_thread_queues_wake_a_waiting_receive() {
    use std::os::fd::AsFd;
    let dir = tempfile::tempdir().unwrap();
    let pull = builder(SocketType::Pull).build().unwrap();
    let _ = pull.as_fd();
    let pull = pull.into_async().unwrap();
    let ep = pull.bind(&endpoint("ipc", &dir, "pull")).unwrap();
    let push = asocket(SocketType::Push);
    push.connect(&ep).unwrap();
    within("every message", async {
        for i in 0..300 {
            push.send(i.to_string()).await.unwrap();
            // Each in far less; a lost wake-up waited for the I/O thread's
            // next unrelated wake, seconds later.
            let got = tokio::time::timeout(Duration::from_secs(2), pull.recv())
                .await
                .unwrap_or_else(|_| panic!("message {i} stalled: a lost wake-up"));
            assert_eq!(text(&got.unwrap()), i.to_string());
        }
    })
    .await;
}
