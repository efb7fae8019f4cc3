//! Arbitrary sequences of operations on a real ROUTER socket and up to three
//! DEALER peers over ipc, checked against a model of what the socket promises:
//! peers join and leave (with the same identity again later), send, and are
//! sent to.
//!
//! - what a peer sent arrives once, in the order it sent it on that
//!   connection, tagged with its identity, even after the peer has left
//!   (`Core::remove_peer` keeps its queue); across two connections of the same
//!   identity, one after the other, there is no order (fair queueing, as in
//!   libzmq);
//! - a message the ROUTER sends to a peer in service reaches that peer and no
//!   other; to a peer that left, it is refused (`router_mandatory`);
//! - nothing arrives that was not sent.
//!
//! Every operation waits for what it changed to be visible (a peer in service,
//! a peer gone), so the model never races the socket's threads. The sans-IO
//! pieces under these sockets have the same kind of check in the
//! `pattern_state` fuzz target.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use conduit::{Error, Message, RecvTimeoutError, Socket, SocketType};
use proptest::prelude::*;

use crate::sockets::wait_peers;

const PEERS: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Leave(usize),
    /// Peer sends this many messages.
    PeerSends(usize, u8),
    /// The ROUTER receives one message (when one is due).
    RouterReceives,
    /// The ROUTER sends one message to the peer.
    RouterSends(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0..PEERS;
    prop_oneof![
        2 => peer.clone().prop_map(Op::Join),
        1 => peer.clone().prop_map(Op::Leave),
        3 => (peer.clone(), 1u8..5).prop_map(|(p, n)| Op::PeerSends(p, n)),
        3 => Just(Op::RouterReceives),
        2 => peer.prop_map(Op::RouterSends),
    ]
}

fn identity(p: usize) -> String {
    format!("dealer-{p}")
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let router = Socket::builder(SocketType::Router)
        .router_mandatory(true)
        .linger(Duration::from_secs(5))
        .build()
        .unwrap();
    let ep = router
        .bind(&format!("ipc://{}/router.sock", dir.path().display()))
        .unwrap()
        .to_string();
    let mut dealers: Vec<Option<Socket>> = (0..PEERS).map(|_| None).collect();
    // Model: per connection (peer, and how many times it joined before), what it
    // sent that the ROUTER has not received yet.
    let mut pending: HashMap<(usize, u32), VecDeque<u32>> = HashMap::new();
    let mut joins = [0u32; PEERS];
    let mut next_seq = 0u32;
    let mut routed = 0u32;
    let live = |d: &[Option<Socket>]| d.iter().filter(|d| d.is_some()).count();
    let due =
        |pending: &HashMap<(usize, u32), VecDeque<u32>>| pending.values().any(|q| !q.is_empty());

    // Checks a message the ROUTER received against the model.
    let check = |m: Message, pending: &mut HashMap<(usize, u32), VecDeque<u32>>| {
        prop_assert_eq!(m.frame_count(), 2, "{:?}", m);
        let from = String::from_utf8_lossy(&m.frames()[0]).into_owned();
        let body = String::from_utf8_lossy(&m.frames()[1]).into_owned();
        let parse = || -> Option<(usize, u32, u32)> {
            let (conn, seq) = body.split_once(':')?;
            let (p, join) = conn.split_once('.')?;
            Some((p.parse().ok()?, join.parse().ok()?, seq.parse().ok()?))
        };
        let (p, join, seq) = parse()
            .ok_or_else(|| TestCaseError::fail(format!("a message never sent: {body:?}")))?;
        prop_assert_eq!(
            &from,
            &identity(p),
            "tagged with another identity: {}",
            body
        );
        let expected = pending.get_mut(&(p, join)).and_then(VecDeque::pop_front);
        prop_assert_eq!(
            Some(seq),
            expected,
            "{}: not the next message that connection sent",
            body
        );
        Ok(())
    };

    for op in ops {
        match *op {
            Op::Join(p) if dealers[p].is_none() => {
                let dealer = Socket::builder(SocketType::Dealer)
                    .identity(identity(p))
                    .linger(Duration::from_secs(5))
                    .build()
                    .unwrap();
                dealer.connect(&ep).unwrap();
                dealers[p] = Some(dealer);
                joins[p] += 1;
                wait_peers(&router, live(&dealers));
            }
            Op::Leave(p) if dealers[p].is_some() => {
                // Close delivers what it sent before it goes.
                dealers[p].take().unwrap().close().unwrap();
                wait_peers(&router, live(&dealers));
            }
            Op::PeerSends(p, n) => {
                if let Some(dealer) = &dealers[p] {
                    for _ in 0..n {
                        let seq = next_seq;
                        next_seq += 1;
                        dealer.send(format!("{p}.{}:{seq}", joins[p])).unwrap();
                        pending.entry((p, joins[p])).or_default().push_back(seq);
                    }
                }
            }
            Op::RouterReceives if due(&pending) => {
                let m = router
                    .recv_timeout(Duration::from_secs(10))
                    .map_err(|e| TestCaseError::fail(format!("router recv: {e}")))?;
                check(m, &mut pending)?;
            }
            Op::RouterSends(p) => {
                routed += 1;
                let body = format!("to {p} #{routed}");
                let msg = Message::from_frames([identity(p), body.clone()]);
                let sent = router.send_timeout(msg, Duration::from_secs(5));
                match &dealers[p] {
                    Some(dealer) => {
                        prop_assert!(sent.is_ok(), "to a peer in service: {:?}", sent);
                        let got = dealer
                            .recv_timeout(Duration::from_secs(10))
                            .map_err(|e| TestCaseError::fail(format!("dealer {p}: {e}")))?;
                        prop_assert_eq!(got.concat(), body);
                    }
                    None => prop_assert!(
                        matches!(
                            sent,
                            Err(conduit::SendTimeoutError::Failed(ref e))
                                if matches!(e.error, Error::Unroutable(_))
                        ),
                        "to a peer that is not there: {:?}",
                        sent
                    ),
                }
            }
            _ => {}
        }
    }
    // Everything still pending arrives, and then nothing more.
    while due(&pending) {
        let m = router
            .recv_timeout(Duration::from_secs(10))
            .map_err(|e| TestCaseError::fail(format!("router recv at the end: {e}")))?;
        check(m, &mut pending)?;
    }
    prop_assert!(matches!(
        router.recv_timeout(Duration::from_millis(50)),
        Err(RecvTimeoutError::Timeout)
    ));
    for dealer in dealers.iter().flatten() {
        prop_assert!(matches!(
            dealer.recv_timeout(Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        ));
    }
    Ok(())
}

/// Cases per run: 24 on every test run; `CONDUIT_MODEL_CASES=2000` for a long
/// search by hand.
fn cases() -> u32 {
    std::env::var("CONDUIT_MODEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_router_and_its_dealers_keep_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
