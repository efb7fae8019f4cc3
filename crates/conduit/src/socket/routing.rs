//! Where each socket type sends a message, and which message it receives next
//! (RFC 28 request-reply, RFC 29 publish-subscribe, RFC 30 pipeline, RFC 31 pair;
//! libzmq's behaviour where they leave room).

use std::sync::{Arc, MutexGuard};

use bytes::Bytes;
use conduit_proto::{Message, PeerInfo, SocketType, SubscriptionMessage, envelope};

use super::core::{Core, Gave, Peer, State, send_subscription};
use crate::engine::out::Refused;
use crate::error::{Error, Misuse, SendError};
use crate::reader::RecvFail;
use crate::transport::Wait;
use crate::writer::SendFail;

fn broken(message: Message, error: Error) -> SendFail {
    SendFail::Broken(SendError { message, error })
}

fn gave_up(message: Message, gave: Gave) -> SendFail {
    match gave {
        Gave::Up => SendFail::WouldBlock(message),
        Gave::Closing => broken(message, Error::SocketClosed),
    }
}

/// Tries to queue `msg` on `peer` without waiting; gives it back if the peer is
/// at its high-water mark or its connection broke (its I/O thread then takes
/// it out of service).
fn offer(peer: &Peer, msg: Message) -> Result<(), Message> {
    match peer.out.offer(msg) {
        Ok(()) => Ok(()),
        Err(Refused::Full(m) | Refused::Broken(m)) => Err(m),
    }
}

pub(crate) fn send(core: &Core, msg: Message, wait: Wait) -> Result<(), SendFail> {
    if msg.is_empty() {
        return Err(broken(msg, Error::EmptyMessage));
    }
    let st = core.lock();
    if st.closing {
        return Err(broken(msg, Error::SocketClosed));
    }
    crate::engine::out::begin_send();
    match core.kind {
        SocketType::Push | SocketType::Dealer | SocketType::Pair => {
            load_balance(core, st, msg, wait).map(drop)
        }
        SocketType::Req => send_request(core, st, msg, wait),
        SocketType::Rep => send_reply(st, msg),
        SocketType::Router => send_routed(core, st, msg, wait),
        SocketType::Pub | SocketType::XPub => {
            // To every peer subscribed to it, dropped for those at their
            // high-water mark: a slow subscriber never holds up the others.
            let mut guard = st;
            let st = &mut *guard;
            st.fanout.publish(&st.peers, &msg, &core.doorbell, core.id);
            Ok(())
        }
        SocketType::XSub => send_upstream(core, st, msg),
        SocketType::Pull | SocketType::Sub => {
            Err(broken(msg, Misuse::CannotSend(core.kind).into()))
        }
    }
}

/// Round-robin over the peers, skipping those at their high-water mark; waits
/// (as `wait` allows) when all are, or there are none. Returns the peer used.
fn load_balance<'a>(
    core: &'a Core,
    mut st: MutexGuard<'a, State>,
    mut msg: Message,
    wait: Wait,
) -> Result<(MutexGuard<'a, State>, u64), SendFail> {
    loop {
        // Positions wrap by comparison, not `%`: a division per message
        // costs tens of cycles of a 64 B message's few hundred.
        let n = st.peers.len();
        let start = st.send_cursor.min(n);
        for k in 0..n {
            let i = start + k;
            let i = if i < n { i } else { i - n };
            if st.peers[i].gone {
                continue;
            }
            // Borrowed, not cloned: two atomic operations fewer per message, and
            // the lock keeps the slot in place meanwhile.
            let peer = &st.peers[i].peer;
            match offer(peer, msg) {
                Ok(()) => {
                    let id = peer.id;
                    st.send_cursor = if i + 1 < n { i + 1 } else { 0 };
                    return Ok((st, id));
                }
                Err(m) => msg = m,
            }
        }
        st = core
            .wait_app(st, wait)
            .map_err(|(_, g)| gave_up(msg.clone(), g))?;
    }
}

/// To every peer, as it is (XSUB's messages upstream), dropping it for peers
/// at their high-water mark: a slow peer never holds up the others.
fn distribute(st: &State, msg: &Message) {
    for slot in Core::live_peers(st) {
        // Refused (at its high-water mark, or broken): dropped for this peer.
        let _ = slot.peer.out.offer_ref(msg);
    }
}

fn send_request<'a>(
    core: &'a Core,
    mut st: MutexGuard<'a, State>,
    msg: Message,
    wait: Wait,
) -> Result<(), SendFail> {
    if st.req.expecting.is_some() && !core.options.req_relaxed {
        return Err(broken(msg, Misuse::RequestPending.into()));
    }
    let request_id = core.options.req_correlate.then(|| {
        st.req.next_request_id = st.req.next_request_id.wrapping_add(1);
        st.req.next_request_id
    });
    // A relaxed REQ abandons the earlier request: its reply, if it comes, is dropped.
    st.req.expecting = None;
    for slot in &mut st.peers {
        slot.inbound.clear();
    }
    core.unblock_all(&mut st);
    st.sweep();
    let body = msg.clone();
    let (mut st, peer) =
        load_balance(core, st, envelope::request(msg, request_id), wait).map_err(|f| match f {
            SendFail::WouldBlock(_) => SendFail::WouldBlock(body.clone()),
            SendFail::Broken(e) => broken(body.clone(), e.error),
        })?;
    st.req.expecting = Some((peer, request_id));
    Ok(())
}

fn send_reply(mut st: MutexGuard<'_, State>, msg: Message) -> Result<(), SendFail> {
    let Some((peer_id, env)) = st.rep.take() else {
        return Err(broken(msg, Misuse::NoRequestReceived.into()));
    };
    // A requester that left gets no reply; like libzmq, that is not an error.
    if let Some(i) = st.slot(peer_id).filter(|&i| !st.peers[i].gone) {
        let _ = offer(&st.peers[i].peer, envelope::wrap(&env, msg));
    }
    Ok(())
}

fn send_routed<'a>(
    core: &'a Core,
    mut st: MutexGuard<'a, State>,
    mut msg: Message,
    wait: Wait,
) -> Result<(), SendFail> {
    if msg.frame_count() < 2 {
        return Err(broken(msg, Misuse::NoRoutingId.into()));
    }
    let routing_id = msg.pop_front().expect("two frames or more");
    let mandatory = core.options.router_mandatory;
    loop {
        let peer = st
            .routing
            .get(&routing_id)
            .and_then(|id| st.slot(*id))
            .map(|i| st.peers[i].peer.clone());
        let Some(peer) = peer else {
            if mandatory {
                msg.push_front(routing_id.clone());
                return Err(broken(msg, Error::Unroutable(routing_id)));
            }
            return Ok(()); // unroutable: dropped, as libzmq does by default
        };
        match offer(&peer, msg) {
            Ok(()) => return Ok(()),
            Err(m) if mandatory => msg = m,
            Err(_) => return Ok(()), // at its high-water mark: dropped
        }
        st = core.wait_app(st, wait).map_err(|(_, g)| {
            let mut back = msg.clone();
            back.push_front(routing_id.clone());
            gave_up(back, g)
        })?;
    }
}

/// XSUB: subscription messages update our subscriptions and go to every
/// publisher; anything else goes to every publisher as it is.
fn send_upstream(core: &Core, mut st: MutexGuard<'_, State>, msg: Message) -> Result<(), SendFail> {
    let sub = match msg.frames() {
        [frame] => SubscriptionMessage::parse(frame),
        _ => None,
    };
    match sub {
        Some(sub) => {
            change_subscription(core, &mut st, sub);
        }
        None => distribute(&st, &msg),
    }
    Ok(())
}

/// SUB and XSUB: counted locally; publishers hear only of a topic's first
/// subscription and last cancellation, so their counts match ours.
pub(crate) fn change_subscription(core: &Core, st: &mut State, sub: SubscriptionMessage) {
    let changed = match &sub {
        SubscriptionMessage::Subscribe(t) => st.subscriptions.add(t),
        SubscriptionMessage::Cancel(t) => st.subscriptions.remove(t),
    };
    if changed {
        let peers: Vec<Arc<Peer>> = Core::live_peers(st).map(|s| s.peer.clone()).collect();
        for peer in peers {
            send_subscription(&peer, sub.clone());
        }
    }
    // A cancelled topic's messages already queued are no longer wanted.
    if let SubscriptionMessage::Cancel(_) = sub {
        let subs = &st.subscriptions;
        for slot in &mut st.peers {
            slot.inbound
                .retain(|m| subs.matches(m.first().map_or(&[][..], |f| &f[..])));
        }
        core.unblock_all(st);
        st.sweep();
    }
}

pub(crate) fn recv(core: &Core, wait: Wait) -> Result<Message, RecvFail> {
    recv_with(core, wait, None)
}

/// [`recv`], filling `info` with what the peer the message came from said in
/// its handshake (`None` for an XPUB's subscriptions, which are the socket's).
pub(crate) fn recv_with(
    core: &Core,
    wait: Wait,
    info: Option<&mut Option<PeerInfo>>,
) -> Result<Message, RecvFail> {
    recv_or(core, info, |st| core.wait_app(st, wait))
}

/// [`recv`] of a message already queued: never waits, and never steps the
/// reactor as `try_recv` does when an application thread leases it. For the
/// async adapter, whose task watches the reactor's descriptor in tokio and
/// steps the reactor itself when that is readable: a step here would find
/// nothing (an empty `epoll_wait` per message). When it finds nothing, `stuck`
/// says whether messages are queued all the same, ones the socket type does
/// not give (a REQ's from a peer it did not ask), seen under the same lock.
#[cfg(feature = "tokio")]
pub(crate) fn recv_queued(core: &Core, stuck: &mut bool) -> Result<Message, RecvFail> {
    recv_or(core, None, |st| {
        let gave = if st.closing { Gave::Closing } else { Gave::Up };
        *stuck = st.has_queued();
        Err((st, gave))
    })
}

/// A receive that, while nothing is queued, calls `wait` (which hands the
/// state back after a change, or says why it gave up).
fn recv_or<'a>(
    core: &'a Core,
    mut info: Option<&mut Option<PeerInfo>>,
    mut wait: impl FnMut(
        MutexGuard<'a, State>,
    ) -> Result<MutexGuard<'a, State>, (MutexGuard<'a, State>, Gave)>,
) -> Result<Message, RecvFail> {
    let mut st = core.lock();
    match core.kind {
        SocketType::Push | SocketType::Pub => {
            return Err(RecvFail::Broken(Misuse::CannotReceive(core.kind).into()));
        }
        SocketType::Req if st.req.expecting.is_none() => {
            return Err(RecvFail::Broken(Misuse::NoRequestSent.into()));
        }
        SocketType::Rep if st.rep.is_some() => {
            return Err(RecvFail::Broken(Misuse::ReplyPending.into()));
        }
        _ => {}
    }
    loop {
        if let Some(msg) = next_message(core, &mut st, info.as_deref_mut()) {
            crate::reader::note_received_here();
            return Ok(msg);
        }
        st = wait(st).map_err(|(_, g)| match g {
            Gave::Up => RecvFail::WouldBlock,
            Gave::Closing => RecvFail::Closed,
        })?;
    }
}

/// The next message for the application, if one is there.
fn next_message(
    core: &Core,
    st: &mut State,
    mut info: Option<&mut Option<PeerInfo>>,
) -> Option<Message> {
    match core.kind {
        SocketType::XPub => core.pop_xpub(st),
        SocketType::Req => {
            let (peer, request_id) = st.req.expecting?;
            while let Some(reply) = core.pop_from(st, peer, info.as_deref_mut()) {
                if let Some(body) = envelope::reply_body(reply, request_id) {
                    st.req.expecting = None;
                    return Some(body);
                }
                // Not a reply to our request: dropped, as libzmq does.
            }
            None
        }
        SocketType::Rep => loop {
            let (peer, request, _) = core.fair_pop_routed(st, info.as_deref_mut())?;
            // A request without an envelope cannot be answered: dropped.
            if let Some((env, body)) = envelope::split(request) {
                st.rep = Some((peer, env));
                return Some(body);
            }
        },
        SocketType::Router => {
            let (_, mut msg, routing_id) = core.fair_pop_routed(st, info)?;
            msg.push_front(routing_id);
            Some(msg)
        }
        _ => core.fair_pop_routed(st, info).map(|(_, m, _)| m),
    }
}

/// SUB: subscribe to (`true`) or cancel one subscription to `topic`.
pub(crate) fn subscribe(core: &Core, topic: &[u8], on: bool) -> Result<(), Error> {
    if core.kind != SocketType::Sub {
        return Err(Misuse::NotSubscriber(core.kind).into());
    }
    let topic = Bytes::copy_from_slice(topic);
    let mut st = core.lock();
    change_subscription(
        core,
        &mut st,
        if on {
            SubscriptionMessage::Subscribe(topic)
        } else {
            SubscriptionMessage::Cancel(topic)
        },
    );
    Ok(())
}

/// Whether a send would go through (or fail) at once rather than wait: what
/// makes a socket writable for a poller.
pub(crate) fn can_send(core: &Core) -> bool {
    let st = core.lock();
    if st.closing {
        return true;
    }
    match core.kind {
        SocketType::Pull | SocketType::Sub => false,
        // These drop rather than wait, or answer at once.
        SocketType::Pub | SocketType::XPub | SocketType::XSub | SocketType::Rep => true,
        SocketType::Router if !core.options.router_mandatory => true,
        // A REQ that must receive first fails at once.
        SocketType::Req if st.req.expecting.is_some() && !core.options.req_relaxed => true,
        _ => Core::live_peers(&st).any(|s| !s.peer.out.is_full()),
    }
}
