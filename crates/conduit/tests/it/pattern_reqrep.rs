//! REQ, REP, DEALER, ROUTER: envelopes, routing, and the way out of a lost reply.

use std::time::Duration;

use conduit::{Error, Message, Misuse, RecvTimeoutError, Socket, SocketEvent, SocketType};

use crate::sockets::*;

fn bound(kind: SocketType) -> (Socket, String) {
    let s = socket(kind);
    let ep = s.bind("tcp://127.0.0.1:*").unwrap().to_string();
    (s, ep)
}

fn connected(kind: SocketType, ep: &str) -> Socket {
    let s = socket(kind);
    s.connect(ep).unwrap();
    s
}

#[test]
fn req_rep_round_trip_keeps_the_envelope_out_of_sight() {
    let (rep, ep) = bound(SocketType::Rep);
    let req = connected(SocketType::Req, &ep);
    for i in 0..10 {
        req.send(Message::from_frames([format!("q{i}"), "part 2".into()]))
            .unwrap();
        let request = rep.recv().unwrap();
        assert_eq!(frames(&request), [format!("q{i}"), "part 2".into()]);
        rep.send(format!("a{i}")).unwrap();
        assert_eq!(recv_str(&req), format!("a{i}"));
    }
}

#[test]
fn req_and_rep_enforce_their_turns() {
    let (rep, ep) = bound(SocketType::Rep);
    let req = connected(SocketType::Req, &ep);
    assert!(matches!(
        req.try_recv(),
        Err(conduit::TryRecvError::Failed(Error::Misuse(
            Misuse::NoRequestSent
        )))
    ));
    assert!(matches!(
        rep.send("unasked").unwrap_err().error,
        Error::Misuse(Misuse::NoRequestReceived)
    ));
    req.send("one").unwrap();
    let err = req.send("two").unwrap_err();
    assert!(matches!(err.error, Error::Misuse(Misuse::RequestPending)));
    assert_eq!(
        err.error.to_string(),
        "a REQ socket must receive the reply before sending another request"
    );
    rep.recv().unwrap();
    assert!(matches!(
        rep.try_recv(),
        Err(conduit::TryRecvError::Failed(Error::Misuse(
            Misuse::ReplyPending
        )))
    ));
}

#[test]
fn req_round_robins_over_reps() {
    let (rep1, ep1) = bound(SocketType::Rep);
    let (rep2, ep2) = bound(SocketType::Rep);
    let req = socket(SocketType::Req);
    req.connect(&ep1).unwrap();
    req.connect(&ep2).unwrap();
    wait_peers(&req, 2);
    let mut served = [0, 0];
    for _ in 0..4 {
        req.send("q").unwrap();
        let (which, rep) = loop {
            if let Ok(m) = rep1.try_recv() {
                break (0, (m, &rep1));
            }
            if let Ok(m) = rep2.try_recv() {
                break (1, (m, &rep2));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        served[which] += 1;
        rep.1.send("a").unwrap();
        recv_str(&req);
    }
    assert_eq!(served, [2, 2]);
}

#[test]
fn rep_answers_a_dealer_through_the_envelope_and_drops_what_has_none() {
    let (rep, ep) = bound(SocketType::Rep);
    let dealer = connected(SocketType::Dealer, &ep);
    dealer
        .send(Message::from_frames(["hop", "", "question"]))
        .unwrap();
    assert_eq!(recv_str(&rep), "question");
    rep.send("answer").unwrap();
    assert_eq!(frames(&dealer.recv().unwrap()), ["hop", "", "answer"]);
    // No empty delimiter: not a request; REP drops it and waits for a real one.
    dealer
        .send(Message::from_frames(["no", "delimiter"]))
        .unwrap();
    assert!(matches!(
        rep.recv_timeout(Duration::from_millis(200)),
        Err(RecvTimeoutError::Timeout)
    ));
}

#[test]
fn a_lost_reply_is_escaped_with_relaxed_and_correlated_requests() {
    // A REP that takes the request and dies without answering, then one that works.
    let (mute, mute_ep) = bound(SocketType::Rep);
    let req = Socket::builder(SocketType::Req)
        .req_relaxed(true)
        .req_correlate(true)
        .linger(Duration::ZERO)
        .build()
        .unwrap();
    req.connect(&mute_ep).unwrap();
    req.send("first try").unwrap();
    assert_eq!(recv_str(&mute), "first try");
    assert!(matches!(
        req.recv_timeout(Duration::from_millis(100)),
        Err(RecvTimeoutError::Timeout)
    ));
    let (good, good_ep) = bound(SocketType::Rep);
    req.connect(&good_ep).unwrap();
    wait_peers(&req, 2);
    // The mute REP finally answers the abandoned request: that reply is dropped.
    mute.send("stale").unwrap();
    // Resend (relaxed lets us); it may go to either peer: whoever gets it answers.
    req.send("second try").unwrap();
    let answer = loop {
        if let Ok(m) = good.try_recv() {
            good.send(format!("fresh: {}", String::from_utf8_lossy(&m.concat())))
                .unwrap();
            break recv_str(&req);
        }
        if let Ok(m) = mute.try_recv() {
            mute.send(format!("fresh: {}", String::from_utf8_lossy(&m.concat())))
                .unwrap();
            break recv_str(&req);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(answer, "fresh: second try");
}

#[test]
fn router_addresses_peers_by_identity() {
    let (router, ep) = bound(SocketType::Router);
    let alice = Socket::builder(SocketType::Dealer)
        .identity("alice")
        .build()
        .unwrap();
    alice.connect(&ep).unwrap();
    let anon = connected(SocketType::Dealer, &ep);
    wait_peers(&router, 2);
    alice.send("from alice").unwrap();
    assert_eq!(frames(&router.recv().unwrap()), ["alice", "from alice"]);
    anon.send("from anon").unwrap();
    let m = router.recv().unwrap();
    let generated = m.frames()[0].clone();
    assert_eq!(generated.len(), 5);
    assert_eq!(generated[0], 0, "generated ids start with a zero byte");
    router
        .send(Message::from_frames(["alice", "hi alice"]))
        .unwrap();
    router
        .send(Message::from_frames([generated, "hi anon".into()]))
        .unwrap();
    assert_eq!(recv_str(&alice), "hi alice");
    assert_eq!(recv_str(&anon), "hi anon");
}

#[test]
fn router_drops_the_unroutable_unless_mandatory() {
    let (router, _) = bound(SocketType::Router);
    router.send(Message::from_frames(["nobody", "x"])).unwrap();
    let strict = Socket::builder(SocketType::Router)
        .router_mandatory(true)
        .build()
        .unwrap();
    let err = strict
        .send(Message::from_frames(["nobody", "x"]))
        .unwrap_err();
    assert_eq!(err.error.to_string(), "no peer has routing id b\"nobody\"");
    assert_eq!(frames(&err.into_message()), ["nobody", "x"]);
}

#[test]
fn a_duplicate_identity_is_turned_away_unless_handover() {
    for handover in [false, true] {
        let (events, seen) = std::sync::mpsc::channel();
        let router = Socket::builder(SocketType::Router)
            .router_handover(handover)
            .on_event(move |e| {
                let _ = events.send(e.clone());
            })
            .build()
            .unwrap();
        let ep = router.bind("tcp://127.0.0.1:*").unwrap().to_string();
        let first = Socket::builder(SocketType::Dealer)
            .identity("dup")
            .build()
            .unwrap();
        first.connect(&ep).unwrap();
        wait_peers(&router, 1);
        let second = Socket::builder(SocketType::Dealer)
            .identity("dup")
            .build()
            .unwrap();
        second.connect(&ep).unwrap();
        // The router has decided: it turned the second away, or (handover)
        // dropped the first for it.
        loop {
            match seen.recv_timeout(Duration::from_secs(10)).unwrap() {
                SocketEvent::Rejected { .. } if !handover => break,
                SocketEvent::Disconnected { .. } if handover => break,
                _ => {}
            }
        }
        router
            .send(Message::from_frames(["dup", "who gets this?"]))
            .unwrap();
        let (winner, loser) = if handover {
            (&second, &first)
        } else {
            (&first, &second)
        };
        assert_eq!(recv_str(winner), "who gets this?", "handover={handover}");
        assert!(loser.recv_timeout(Duration::from_millis(200)).is_err());
    }
}

#[test]
fn dealer_to_dealer_and_router_to_router() {
    let (d1, ep) = bound(SocketType::Dealer);
    let d2 = connected(SocketType::Dealer, &ep);
    d2.send(Message::from_frames(["a", "b"])).unwrap();
    assert_eq!(frames(&d1.recv().unwrap()), ["a", "b"]);
    d1.send("back").unwrap();
    assert_eq!(recv_str(&d2), "back");

    let (r1, ep) = bound(SocketType::Router);
    let r2 = Socket::builder(SocketType::Router)
        .identity("r2")
        .build()
        .unwrap();
    r2.connect(&ep).unwrap();
    wait_peers(&r1, 1);
    r1.send(Message::from_frames(["r2", "hello r2"])).unwrap();
    let m = r2.recv().unwrap();
    assert_eq!(frames(&m)[1], "hello r2");
    r2.send(Message::from_frames([
        m.frames()[0].clone(),
        "hello r1".into(),
    ]))
    .unwrap();
    assert_eq!(frames(&r1.recv().unwrap()), ["r2", "hello r1"]);
}
