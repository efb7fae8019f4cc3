//! Arbitrary sequences of operations on the sans-IO pattern pieces the sockets
//! are built from, each checked against a plain model:
//!
//! - **Subscriptions as a PUB/XPUB keeps them**: up to four subscribers
//!   subscribe, cancel and leave; each has its own counted `Subscriptions`, and
//!   an XPUB-wide one counts a topic once per subscriber (as `socket/core.rs`
//!   does). Model: a counted map per subscriber. Checked: `add` says "first"
//!   and `remove` says "last" exactly when the model does, so an XPUB tells the
//!   application of a topic's first subscriber and last cancellation and
//!   nothing else; `matches` is "some subscribed topic is a prefix"; `iter`,
//!   `len` and `is_empty` agree; a subscriber leaving cancels exactly its own
//!   topics; the ZMTP 3.0 subscription message round-trips. Each subscriber
//!   subscribes within `SubscriptionLimits` (12 topics, 24 bytes), as the
//!   socket does: a new topic past either is refused with the limit it broke,
//!   changes nothing, and the subscriber is dropped (it leaves); `bytes` is the
//!   model's sum of topic lengths.
//! - **REQ/REP envelopes through ROUTER hops**: a request (correlated or not)
//!   goes through 0-3 ROUTERs that prefix a routing id, a REP splits off the
//!   envelope and wraps its reply in it, the ROUTERs pop their ids on the way
//!   back. Checked: the REP sees the body sent, each ROUTER pops its own id, the
//!   REQ gets exactly the reply; a reply to another request id, or one carrying
//!   an id to a REQ that does not correlate, is dropped. Arbitrary messages to a
//!   REP: `split` gives an envelope ending at the first empty frame, and
//!   `wrap(split(m)) == m`.
//! - **Heartbeats on a fake clock**, driven the way a connection thread drives
//!   them (`socket/links.rs`): time passes, traffic arrives, the peer pings with
//!   a TTL, and `handle_timeout` runs. Model: when the next PING is due, which
//!   PING is outstanding since the last traffic, and the peer's TTL deadline.
//!   Checked: PING and Expired come exactly when the model says, with our TTL;
//!   `poll_timeout` is never in the past (a driver would spin) and is the
//!   model's next deadline.
//!
//! Input: 3 bytes of heartbeat configuration (interval, timeout, TTL, each
//! `byte * 10 ms`), then operations: an opcode byte (`% 10`) and its arguments
//! (see `main` below); a missing argument reads as 0.
#![no_main]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conduit_proto::{
    Heartbeat, HeartbeatAction, HeartbeatConfig, Message, ProtocolError, SubscriptionLimits,
    SubscriptionMessage, Subscriptions, envelope,
};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes; past the end every byte is 0.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn done(&self) -> bool {
        self.data.is_empty()
    }

    /// A topic of 0-4 bytes over a three-letter alphabet, so prefixes collide.
    fn topic(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte() % 5);
        (0..len)
            .map(|_| [b'a', b'b', 0][usize::from(self.byte() % 3)])
            .collect()
    }

    /// A frame of 0-5 bytes, empty ones often.
    fn frame(&mut self) -> Bytes {
        let len = usize::from(self.byte() % 6);
        Bytes::from((0..len).map(|_| self.byte()).collect::<Vec<u8>>())
    }

    /// A message of 1-4 frames.
    fn message(&mut self) -> Message {
        let n = 1 + usize::from(self.byte() % 4);
        (0..n).map(|_| self.frame()).collect()
    }
}

const PEERS: usize = 4;
/// What each subscriber may hold: small, so that inputs reach both limits.
const LIMITS: SubscriptionLimits = SubscriptionLimits {
    topics: 12,
    bytes: 24,
};

/// Subscriptions on the publishing side, real and modelled.
#[derive(Default)]
struct Publisher {
    peers: [Subscriptions; PEERS],
    /// XPUB: each topic once per subscriber that has it.
    all: Subscriptions,
    model: [BTreeMap<Vec<u8>, u32>; PEERS],
    model_all: BTreeMap<Vec<u8>, u32>,
}

impl Publisher {
    fn subscribe(&mut self, p: usize, topic: &[u8]) {
        let held: usize = self.model[p].keys().map(Vec::len).sum();
        if !self.model[p].contains_key(topic) {
            let over = if self.model[p].len() >= LIMITS.topics {
                Some((LIMITS.topics, "topics"))
            } else if held + topic.len() > LIMITS.bytes {
                Some((LIMITS.bytes, "bytes of topics"))
            } else {
                None
            };
            if let Some((limit, unit)) = over {
                let refused = ProtocolError::TooManySubscriptions { limit, unit };
                assert_eq!(self.peers[p].add_within(topic, LIMITS), Err(refused));
                // The socket drops that subscriber.
                self.leave(p);
                return;
            }
        }
        let count = self.model[p].entry(topic.to_vec()).or_default();
        *count += 1;
        let first = *count == 1;
        assert_eq!(
            self.peers[p].add_within(topic, LIMITS),
            Ok(first),
            "add_within({topic:?}) for peer {p}"
        );
        if first {
            let n = self.model_all.entry(topic.to_vec()).or_default();
            *n += 1;
            assert_eq!(self.all.add(topic), *n == 1, "XPUB's first subscriber");
        }
    }

    fn cancel(&mut self, p: usize, topic: &[u8]) {
        let last = match self.model[p].get_mut(topic) {
            Some(count) => {
                *count -= 1;
                *count == 0
            }
            None => false,
        };
        if last {
            self.model[p].remove(topic);
        }
        assert_eq!(
            self.peers[p].remove(topic),
            last,
            "remove({topic:?}) for peer {p}"
        );
        if last {
            self.drop_from_all(topic);
        }
    }

    fn drop_from_all(&mut self, topic: &[u8]) {
        let n = self.model_all.get_mut(topic).expect("a subscriber had it");
        *n -= 1;
        let last = *n == 0;
        if last {
            self.model_all.remove(topic);
        }
        assert_eq!(self.all.remove(topic), last, "XPUB's last cancellation");
    }

    fn leave(&mut self, p: usize) {
        // As `Core::remove_peer` does: each of its topics once, whatever its count.
        let topics = std::mem::take(&mut self.peers[p]);
        let listed: Vec<(Vec<u8>, u32)> = topics
            .iter()
            .into_iter()
            .map(|(t, n)| (t.to_vec(), n))
            .collect();
        let model: Vec<(Vec<u8>, u32)> = std::mem::take(&mut self.model[p]).into_iter().collect();
        assert_eq!(listed, model, "iter() of peer {p}");
        for (topic, _) in &model {
            self.drop_from_all(topic);
        }
    }

    fn check(&self, data: &[u8]) {
        let prefix_of = |m: &BTreeMap<Vec<u8>, u32>| m.keys().any(|t| data.starts_with(t));
        for p in 0..PEERS {
            assert_eq!(
                self.peers[p].matches(data),
                prefix_of(&self.model[p]),
                "peer {p}"
            );
            assert_eq!(self.peers[p].len(), self.model[p].len());
            let held: usize = self.model[p].keys().map(Vec::len).sum();
            assert_eq!(self.peers[p].bytes(), held, "bytes() of peer {p}");
            assert_eq!(self.peers[p].is_empty(), self.model[p].is_empty());
        }
        assert_eq!(self.all.matches(data), prefix_of(&self.model_all));
        assert_eq!(self.all.len(), self.model_all.len());
        let listed: Vec<(Vec<u8>, u32)> = self
            .all
            .iter()
            .into_iter()
            .map(|(t, n)| (t.to_vec(), n))
            .collect();
        let model: Vec<(Vec<u8>, u32)> = self.model_all.clone().into_iter().collect();
        assert_eq!(listed, model, "XPUB-wide iter()");
    }
}

/// A request from a REQ through `hops` ROUTERs to a REP, and its reply back.
fn request_reply(input: &mut Input) {
    let hops = usize::from(input.byte() % 4);
    let correlate = input.byte() & 1 == 1;
    let request_id = correlate.then(|| u32::from(input.byte()) * 0x0101_0101);
    let body = input.message();
    let reply = input.message();

    let mut msg = envelope::request(body.clone(), request_id);
    let ids: Vec<Bytes> = (0..hops)
        .map(|h| Bytes::from(vec![b'r', h as u8]))
        .collect();
    for id in &ids {
        msg.push_front(id.clone()); // a ROUTER prefixes where it came from
    }
    let (env, got) = envelope::split(msg).expect("a request has a delimiter");
    assert_eq!(got, body, "the REP got another body");
    assert_eq!(env.len(), hops + usize::from(correlate) + 1);
    assert!(env.last().unwrap().is_empty());

    let mut back = envelope::wrap(&env, reply.clone());
    for id in ids.iter().rev() {
        assert_eq!(
            back.pop_front().as_ref(),
            Some(id),
            "a ROUTER popped another id"
        );
    }
    assert_eq!(
        envelope::reply_body(back.clone(), request_id),
        Some(reply),
        "the REQ did not get its reply"
    );
    if let Some(id) = request_id {
        assert_eq!(
            envelope::reply_body(back.clone(), Some(id.wrapping_add(1))),
            None
        );
        assert_eq!(
            envelope::reply_body(back, None),
            None,
            "an id to a plain REQ"
        );
    }
}

/// An arbitrary message arriving at a REP (or at a REQ as a "reply").
fn stray(input: &mut Input) {
    let msg = input.message();
    let first_empty = msg.frames().iter().position(|f| f.is_empty());
    match envelope::split(msg.clone()) {
        Some((env, body)) => {
            assert_eq!(Some(env.len() - 1), first_empty);
            assert_eq!(envelope::wrap(&env, body), msg);
        }
        None => assert_eq!(first_empty, None),
    }
    let as_reply = envelope::reply_body(msg.clone(), None);
    if msg.frames()[0].is_empty() {
        assert_eq!(as_reply, Some(msg.frames()[1..].iter().cloned().collect()));
    } else {
        assert_eq!(as_reply, None);
    }
}

/// A heartbeat and its model, on a clock that only the input moves.
struct Clock {
    config: HeartbeatConfig,
    hb: Heartbeat,
    t0: Instant,
    now: Duration,
    last_traffic: Duration,
    next_ping: Option<Duration>,
    /// Our first PING since the last traffic.
    outstanding: Option<Duration>,
    /// The peer's TTL and the time it counts from.
    peer_ttl: Option<(Duration, Duration)>,
    expired: bool,
}

impl Clock {
    fn new(config: HeartbeatConfig) -> Clock {
        let t0 = Instant::now();
        Clock {
            config,
            hb: Heartbeat::new(config, t0),
            t0,
            now: Duration::ZERO,
            last_traffic: Duration::ZERO,
            next_ping: (!config.interval.is_zero()).then_some(config.interval),
            outstanding: None,
            peer_ttl: None,
            expired: false,
        }
    }

    fn timeout(&self) -> Duration {
        if self.config.timeout.is_zero() {
            self.config.interval
        } else {
            self.config.timeout
        }
    }

    fn traffic(&mut self) {
        self.hb.on_traffic(self.t0 + self.now);
        if self.now > self.last_traffic {
            self.last_traffic = self.now;
            if let Some(next) = &mut self.next_ping {
                *next = self.now + self.config.interval;
            }
            self.outstanding = None;
            if let Some((_, since)) = &mut self.peer_ttl {
                *since = self.now;
            }
        }
    }

    fn peer_ping(&mut self, ttl_deciseconds: u8) {
        self.traffic();
        self.hb
            .on_ping(u16::from(ttl_deciseconds), self.t0 + self.now);
        if ttl_deciseconds > 0 {
            let ttl = Duration::from_millis(u64::from(ttl_deciseconds) * 100);
            self.peer_ttl = Some((ttl, self.now));
        }
    }

    fn deadlines(&self) -> impl Iterator<Item = Duration> {
        [
            self.next_ping,
            self.outstanding.map(|p| p + self.timeout()),
            self.peer_ttl.map(|(ttl, since)| since + ttl),
        ]
        .into_iter()
        .flatten()
    }

    /// What the connection thread does when it wakes: handle the timeout.
    fn wake(&mut self) {
        let now = self.t0 + self.now;
        let action = self.hb.handle_timeout(now);
        let ours_expired = self
            .outstanding
            .is_some_and(|p| self.now >= p + self.timeout());
        let ttl_expired = self
            .peer_ttl
            .is_some_and(|(ttl, since)| self.now >= since + ttl);
        let expected = if ours_expired || ttl_expired {
            Some(HeartbeatAction::Expired)
        } else if self.next_ping.is_some_and(|t| self.now >= t) {
            self.next_ping = Some(self.now + self.config.interval);
            self.outstanding.get_or_insert(self.now);
            let ttl = (self.config.ttl.as_millis() / 100).min(u128::from(u16::MAX)) as u16;
            Some(HeartbeatAction::Ping {
                ttl_deciseconds: ttl,
            })
        } else {
            None
        };
        assert_eq!(action, expected, "at {:?}", self.now);
        if action == Some(HeartbeatAction::Expired) {
            self.expired = true; // the connection is dropped
            return;
        }
        let next = self.hb.poll_timeout();
        if let Some(t) = next {
            assert!(t > now, "poll_timeout is {:?}, not after now", t - self.t0);
        }
        assert_eq!(next.map(|t| t - self.t0), self.deadlines().min());
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
    }

    /// Sleeps until the next deadline, as a thread in `poll` would.
    fn sleep_until_due(&mut self) {
        if let Some(t) = self.hb.poll_timeout() {
            self.now = t - self.t0;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let ms = |b: u8| Duration::from_millis(u64::from(b) * 10);
    let config = HeartbeatConfig {
        interval: ms(input.byte()),
        timeout: ms(input.byte()),
        ttl: ms(input.byte()),
    };
    let mut publisher = Publisher::default();
    let mut clock = Clock::new(config);
    let mut steps = 0;
    while !input.done() && steps < 2000 {
        steps += 1;
        match input.byte() % 10 {
            0 => {
                let p = usize::from(input.byte()) % PEERS;
                let topic = input.topic();
                publisher.subscribe(p, &topic);
            }
            1 => {
                let p = usize::from(input.byte()) % PEERS;
                let topic = input.topic();
                publisher.cancel(p, &topic);
            }
            2 => publisher.leave(usize::from(input.byte()) % PEERS),
            3 => {
                let mut data = input.topic();
                data.extend(input.topic());
                publisher.check(&data);
            }
            4 => request_reply(&mut input),
            5 => stray(&mut input),
            6 if !clock.expired => {
                clock.advance(u64::from(input.byte()) * 5);
                clock.wake();
            }
            7 if !clock.expired => {
                clock.traffic();
                clock.wake();
            }
            8 if !clock.expired => {
                let ttl = input.byte();
                clock.peer_ping(ttl);
                clock.wake();
            }
            9 if !clock.expired => {
                clock.sleep_until_due();
                clock.wake();
            }
            _ => {
                // Heartbeat operations after expiry: the connection is gone.
                // Use the argument byte for a subscription message instead.
                let topic = Bytes::from(input.topic());
                for sub in [
                    SubscriptionMessage::Subscribe(topic.clone()),
                    SubscriptionMessage::Cancel(topic),
                ] {
                    assert_eq!(SubscriptionMessage::parse(&sub.to_frame()), Some(sub));
                }
            }
        }
    }
    publisher.check(b"");
    publisher.check(b"ab\0");
});
