//! Socket options, with libzmq's defaults unless a comment says otherwise.

use std::sync::Arc;
use std::time::Duration;

use conduit_proto::{HeartbeatConfig, SocketType, SubscriptionLimits};

use super::events::SocketEvent;
use crate::options::{DEFAULT_HWM, Options};

pub(crate) type Monitor = Arc<dyn Fn(&SocketEvent) + Send + Sync>;

#[derive(Clone)]
pub(crate) struct SocketOptions {
    /// What every connection of the socket is opened with: socket type, identity,
    /// properties, maximum message size, handshake timeout, linger, send HWM.
    pub(crate) channel: Options,
    /// Messages queued per peer on the receiving side (`ZMQ_RCVHWM`).
    pub(crate) rcvhwm: usize,
    /// First wait before reconnecting (`ZMQ_RECONNECT_IVL`, 100 ms).
    pub(crate) reconnect_ivl: Duration,
    /// Longest wait between reconnects as the wait doubles. libzmq's default of 0
    /// means no doubling; ours is 1 s, so a peer that stays away costs one attempt
    /// a second rather than ten.
    pub(crate) reconnect_ivl_max: Duration,
    pub(crate) heartbeat: HeartbeatConfig,
    pub(crate) router_mandatory: bool,
    pub(crate) router_handover: bool,
    pub(crate) req_relaxed: bool,
    pub(crate) req_correlate: bool,
    pub(crate) xpub_verbose: bool,
    /// PUB and XPUB: what one subscriber may subscribe to (not in libzmq,
    /// which keeps whatever a subscriber sends).
    pub(crate) subscription_limits: SubscriptionLimits,
    /// Listen backlog of bound endpoints (`ZMQ_BACKLOG`).
    pub(crate) backlog: u32,
    /// How long a thread about to wait on the socket busy-polls it first
    /// (zero: never).
    pub(crate) busy_poll: Duration,
    pub(crate) monitor: Option<Monitor>,
}

impl std::fmt::Debug for SocketOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SocketOptions")
            .field("channel", &self.channel)
            .field("rcvhwm", &self.rcvhwm)
            .field("reconnect_ivl", &self.reconnect_ivl)
            .field("reconnect_ivl_max", &self.reconnect_ivl_max)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

impl SocketOptions {
    pub(crate) fn new(socket_type: SocketType) -> SocketOptions {
        SocketOptions {
            channel: Options::new(socket_type),
            rcvhwm: DEFAULT_HWM,
            reconnect_ivl: Duration::from_millis(100),
            reconnect_ivl_max: Duration::from_secs(1),
            heartbeat: HeartbeatConfig::default(),
            router_mandatory: false,
            router_handover: false,
            req_relaxed: false,
            req_correlate: false,
            xpub_verbose: false,
            subscription_limits: SubscriptionLimits::default(),
            backlog: crate::options::DEFAULT_BACKLOG,
            busy_poll: Duration::ZERO,
            monitor: None,
        }
    }
}
