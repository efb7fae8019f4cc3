//! Connection heartbeats (ZMTP 3.1, "Connection Heartbeating"), as a timer that
//! is told the time rather than reading a clock.
//!
//! When nothing has arrived for `interval`, send a PING; if still nothing has
//! arrived `timeout` later, the peer is gone. A PING from the peer may carry a
//! TTL: if nothing at all arrives from it within the TTL, it is gone too. Any
//! traffic, not just PONG, counts as a sign of life.

use std::time::{Duration, Instant};

/// Heartbeat settings (libzmq's `ZMQ_HEARTBEAT_IVL`, `_TIMEOUT`, `_TTL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatConfig {
    /// Ping after this long without traffic; zero turns heartbeats off.
    pub interval: Duration,
    /// After a ping, how long to wait for any traffic before giving up.
    pub timeout: Duration,
    /// The TTL we ask the peer to apply to us (sent in our PINGs); zero for none.
    pub ttl: Duration,
}

/// What the heartbeat wants done now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Send a PING carrying this TTL, in tenths of a second.
    Ping {
        /// TTL field of the PING.
        ttl_deciseconds: u16,
    },
    /// The peer has been silent too long: drop the connection.
    Expired,
}

/// The heartbeat state of one connection.
///
/// ```
/// use std::time::{Duration, Instant};
/// use conduit_proto::{Heartbeat, HeartbeatAction, HeartbeatConfig};
///
/// let t0 = Instant::now();
/// let s = Duration::from_secs;
/// let mut hb = Heartbeat::new(HeartbeatConfig { interval: s(1), timeout: s(2), ttl: s(0) }, t0);
/// assert_eq!(hb.poll_timeout(), Some(t0 + s(1)));
/// assert!(matches!(hb.handle_timeout(t0 + s(1)), Some(HeartbeatAction::Ping { .. })));
/// assert_eq!(hb.handle_timeout(t0 + s(3)), Some(HeartbeatAction::Expired));
/// ```
#[derive(Debug, Clone)]
pub struct Heartbeat {
    config: HeartbeatConfig,
    /// When to ping, if the peer stays silent.
    ping_at: Option<Instant>,
    /// After our ping: when to give up if the peer stays silent.
    expire_at: Option<Instant>,
    /// The TTL the peer asked us to apply, and when it runs out.
    peer_ttl: Option<Duration>,
    peer_expire_at: Option<Instant>,
    /// The latest traffic seen, so that being told of it again changes nothing.
    last_traffic: Instant,
}

impl Heartbeat {
    /// A heartbeat for a connection that was last heard from at `now`.
    pub fn new(config: HeartbeatConfig, now: Instant) -> Heartbeat {
        Heartbeat {
            config,
            ping_at: (!config.interval.is_zero()).then(|| now + config.interval),
            expire_at: None,
            peer_ttl: None,
            peer_expire_at: None,
            last_traffic: now,
        }
    }

    /// Something arrived from the peer at `at`. Telling it of traffic it already
    /// knew of (or older) changes nothing, so a caller may report the time of the
    /// last arrival as often as it likes.
    pub fn on_traffic(&mut self, at: Instant) {
        if at <= self.last_traffic {
            return;
        }
        self.last_traffic = at;
        if !self.config.interval.is_zero() {
            self.ping_at = Some(at + self.config.interval);
            self.expire_at = None;
        }
        if let Some(ttl) = self.peer_ttl {
            self.peer_expire_at = Some(at + ttl);
        }
    }

    /// The peer sent a PING with this TTL field, at `now`.
    pub fn on_ping(&mut self, ttl_deciseconds: u16, now: Instant) {
        if ttl_deciseconds > 0 {
            let ttl = Duration::from_millis(u64::from(ttl_deciseconds) * 100);
            self.peer_ttl = Some(ttl);
            self.peer_expire_at = Some(now + ttl);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.ping_at, self.expire_at, self.peer_expire_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advances to `now`: what to do, if anything.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<HeartbeatAction> {
        let passed = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if passed(self.expire_at) || passed(self.peer_expire_at) {
            return Some(HeartbeatAction::Expired);
        }
        if passed(self.ping_at) {
            self.ping_at = Some(now + self.config.interval);
            if self.expire_at.is_none() {
                let timeout = if self.config.timeout.is_zero() {
                    self.config.interval
                } else {
                    self.config.timeout
                };
                self.expire_at = Some(now + timeout);
            }
            let ttl_deciseconds =
                (self.config.ttl.as_millis() / 100).min(u128::from(u16::MAX)) as u16;
            return Some(HeartbeatAction::Ping { ttl_deciseconds });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn off_by_default() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(HeartbeatConfig::default(), t0);
        assert_eq!(hb.poll_timeout(), None);
        assert_eq!(hb.handle_timeout(t0 + s(1000)), None);
    }

    #[test]
    fn traffic_postpones_the_ping_and_cancels_the_expiry() {
        let t0 = Instant::now();
        let cfg = HeartbeatConfig {
            interval: s(1),
            timeout: s(3),
            ttl: s(0),
        };
        let mut hb = Heartbeat::new(cfg, t0);
        hb.on_traffic(t0 + Duration::from_millis(900));
        assert_eq!(hb.handle_timeout(t0 + s(1)), None);
        assert_eq!(
            hb.handle_timeout(t0 + Duration::from_millis(1900)),
            Some(HeartbeatAction::Ping { ttl_deciseconds: 0 })
        );
        // Pinged at 1.9 s; traffic at 2.5 s saves it.
        hb.on_traffic(t0 + Duration::from_millis(2500));
        assert_eq!(hb.poll_timeout(), Some(t0 + Duration::from_millis(3500)));
        assert!(matches!(
            hb.handle_timeout(t0 + s(4)),
            Some(HeartbeatAction::Ping { .. })
        ));
        // Silent from 2.5 s: the ping at 3.5 s expires at 6.5 s; the pings between do not extend it.
        assert!(matches!(
            hb.handle_timeout(t0 + s(5)),
            Some(HeartbeatAction::Ping { .. })
        ));
        assert_eq!(
            hb.handle_timeout(t0 + Duration::from_millis(7100)),
            Some(HeartbeatAction::Expired)
        );
    }

    #[test]
    fn hearing_of_the_same_traffic_again_does_not_postpone_the_expiry() {
        let t0 = Instant::now();
        let cfg = HeartbeatConfig {
            interval: s(1),
            timeout: s(1),
            ttl: s(0),
        };
        let mut hb = Heartbeat::new(cfg, t0);
        hb.on_traffic(t0 + Duration::from_millis(10));
        assert!(matches!(
            hb.handle_timeout(t0 + s(2)),
            Some(HeartbeatAction::Ping { .. })
        ));
        hb.on_traffic(t0 + Duration::from_millis(10)); // the same arrival, reported again
        hb.on_traffic(t0); // or an older one
        assert_eq!(hb.handle_timeout(t0 + s(3)), Some(HeartbeatAction::Expired));
    }

    #[test]
    fn our_ttl_goes_in_our_pings() {
        let t0 = Instant::now();
        let cfg = HeartbeatConfig {
            interval: s(1),
            timeout: s(1),
            ttl: Duration::from_millis(2500),
        };
        let mut hb = Heartbeat::new(cfg, t0);
        assert_eq!(
            hb.handle_timeout(t0 + s(1)),
            Some(HeartbeatAction::Ping {
                ttl_deciseconds: 25
            })
        );
    }

    #[test]
    fn the_peers_ttl_expires_a_silent_peer_even_without_our_heartbeat() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(HeartbeatConfig::default(), t0);
        hb.on_ping(20, t0); // 2 s
        assert_eq!(hb.poll_timeout(), Some(t0 + s(2)));
        hb.on_traffic(t0 + s(1));
        assert_eq!(hb.handle_timeout(t0 + s(2)), None);
        assert_eq!(hb.handle_timeout(t0 + s(3)), Some(HeartbeatAction::Expired));
    }
}
