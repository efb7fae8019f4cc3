//! Counted prefix subscriptions, as a PUB filters for each subscriber
//! (ZMTP 3.1, "The Publish-Subscribe Pattern").
//!
//! A subscription to `A` matches every message whose first frame starts with `A`;
//! the empty subscription matches everything. Subscriptions are counted, not a
//! set: subscribing to `A` twice needs two cancellations.
//!
//! A publisher keeps every distinct topic of every subscriber, so a subscriber
//! sending SUBSCRIBE with a new topic each time would grow it without end:
//! [`SubscriptionLimits`] bound what one subscriber may hold.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use crate::error::ProtocolError;

/// Default for [`SubscriptionLimits::topics`]: distinct topics per subscriber.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 1 << 16;
/// Default for [`SubscriptionLimits::bytes`]: bytes of distinct topics per
/// subscriber, summed.
pub const DEFAULT_MAX_SUBSCRIPTION_BYTES: usize = 4 << 20;

/// How much one subscriber may subscribe to: distinct topics, and their bytes
/// summed. Subscribing again to a topic already held only counts it, and costs
/// nothing, so only new topics are limited.
///
/// ```
/// use conduit_proto::{SubscriptionLimits, Subscriptions};
/// let limits = SubscriptionLimits { topics: 2, bytes: 1024 };
/// let mut subs = Subscriptions::new();
/// assert_eq!(subs.add_within(b"a", limits), Ok(true));
/// assert_eq!(subs.add_within(b"b", limits), Ok(true));
/// assert_eq!(subs.add_within(b"a", limits), Ok(false)); // counted, not new
/// assert!(subs.add_within(b"c", limits).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionLimits {
    /// Distinct topics at most.
    pub topics: usize,
    /// Bytes of distinct topics at most, summed.
    pub bytes: usize,
}

impl Default for SubscriptionLimits {
    fn default() -> SubscriptionLimits {
        SubscriptionLimits {
            topics: DEFAULT_MAX_SUBSCRIPTIONS,
            bytes: DEFAULT_MAX_SUBSCRIPTION_BYTES,
        }
    }
}

/// A counted set of prefixes.
///
/// Topics are kept whole in a hash map, with a count of how many distinct topics
/// have each length, so matching a message is one lookup per distinct topic
/// length no longer than the message. Nothing here recurses or allocates per byte
/// of a topic: a subscriber sending a 64 KiB topic costs 64 KiB.
///
/// ```
/// use conduit_proto::Subscriptions;
/// let mut subs = Subscriptions::new();
/// assert!(subs.add(b"weather."));          // first subscription to the topic
/// assert!(!subs.add(b"weather."));         // counted: now twice
/// assert!(subs.matches(b"weather.paris 12C"));
/// assert!(!subs.matches(b"sport"));
/// assert!(!subs.remove(b"weather."));      // one left
/// assert!(subs.remove(b"weather."));       // last one gone
/// assert!(!subs.matches(b"weather.paris 12C"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Subscriptions {
    counts: HashMap<Bytes, u32>,
    /// For each topic length, how many distinct topics have it.
    lengths: BTreeMap<usize, usize>,
    /// Bytes of the distinct topics, summed.
    bytes: usize,
    /// The empty topic is subscribed: everything matches, with no lookup (a
    /// PUB asks once per subscriber per message, and most subscribe to all).
    all: bool,
}

impl Subscriptions {
    /// No subscriptions: matches nothing.
    pub fn new() -> Subscriptions {
        Subscriptions::default()
    }

    /// Adds one subscription to `prefix`; true if it was not subscribed before.
    pub fn add(&mut self, prefix: &[u8]) -> bool {
        if let Some(count) = self.counts.get_mut(prefix) {
            *count = count.saturating_add(1);
            return false;
        }
        self.counts.insert(Bytes::copy_from_slice(prefix), 1);
        self.all |= prefix.is_empty();
        *self.lengths.entry(prefix.len()).or_default() += 1;
        self.bytes += prefix.len();
        true
    }

    /// [`add`](Self::add), unless `prefix` is a new topic that would take this
    /// set past `limits`: then nothing changes, and the error says which limit.
    pub fn add_within(
        &mut self,
        prefix: &[u8],
        limits: SubscriptionLimits,
    ) -> Result<bool, ProtocolError> {
        if !self.counts.contains_key(prefix) {
            if self.counts.len() >= limits.topics {
                return Err(ProtocolError::TooManySubscriptions {
                    limit: limits.topics,
                    unit: "topics",
                });
            }
            if self.bytes.saturating_add(prefix.len()) > limits.bytes {
                return Err(ProtocolError::TooManySubscriptions {
                    limit: limits.bytes,
                    unit: "bytes of topics",
                });
            }
        }
        Ok(self.add(prefix))
    }

    /// Removes one subscription to `prefix`; true if that was the last one.
    /// Cancelling what was never subscribed does nothing and returns false.
    pub fn remove(&mut self, prefix: &[u8]) -> bool {
        let Some(count) = self.counts.get_mut(prefix) else {
            return false;
        };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        self.counts.remove(prefix);
        self.all &= !prefix.is_empty();
        self.bytes -= prefix.len();
        if let Some(n) = self.lengths.get_mut(&prefix.len()) {
            *n -= 1;
            if *n == 0 {
                self.lengths.remove(&prefix.len());
            }
        }
        true
    }

    /// Whether some subscription is a prefix of `data`.
    pub fn matches(&self, data: &[u8]) -> bool {
        self.all
            || self
                .lengths
                .range(..=data.len())
                .any(|(&len, _)| self.counts.contains_key(&data[..len]))
    }

    /// Whether every message matches (the empty prefix is subscribed).
    pub fn matches_all(&self) -> bool {
        self.all
    }

    /// Number of distinct prefixes subscribed.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Bytes of the distinct prefixes, summed.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Every distinct prefix with its count, in byte order.
    pub fn iter(&self) -> Vec<(Bytes, u32)> {
        let mut out: Vec<(Bytes, u32)> = self.counts.iter().map(|(t, &c)| (t.clone(), c)).collect();
        out.sort();
        out
    }
}

/// What a message from a subscriber means in the ZMTP 3.0 form, where a
/// subscription travels as a message whose first byte is 1 (subscribe) or 0
/// (cancel), followed by the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionMessage {
    /// Subscribe to the topic.
    Subscribe(Bytes),
    /// Cancel one subscription to the topic.
    Cancel(Bytes),
}

impl SubscriptionMessage {
    /// Reads a single-frame message in the 3.0 subscription form; None for any
    /// other message.
    pub fn parse(frame: &Bytes) -> Option<SubscriptionMessage> {
        match frame.first() {
            Some(1) => Some(SubscriptionMessage::Subscribe(frame.slice(1..))),
            Some(0) => Some(SubscriptionMessage::Cancel(frame.slice(1..))),
            _ => None,
        }
    }

    /// The 3.0 message form: the flag byte, then the topic.
    pub fn to_frame(&self) -> Bytes {
        let (flag, topic) = match self {
            SubscriptionMessage::Subscribe(t) => (1u8, t),
            SubscriptionMessage::Cancel(t) => (0u8, t),
        };
        let mut frame = Vec::with_capacity(1 + topic.len());
        frame.push(flag);
        frame.extend_from_slice(topic);
        frame.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_subscription_matches_everything() {
        let mut s = Subscriptions::new();
        assert!(!s.matches(b""));
        s.add(b"");
        assert!(s.matches(b""));
        assert!(s.matches(b"anything"));
    }

    #[test]
    fn the_empty_subscription_is_counted_like_any_other() {
        let mut s = Subscriptions::new();
        s.add(b"");
        s.add(b"");
        s.add(b"x");
        assert!(s.matches_all());
        assert!(!s.remove(b""));
        assert!(
            s.matches(b"still"),
            "one subscription to everything is left"
        );
        assert!(s.matches_all());
        assert!(s.remove(b""));
        assert!(!s.matches(b"still"));
        assert!(!s.matches_all(), "only x is left");
    }

    #[test]
    fn subscribing_to_a_and_empty_is_the_same_as_empty() {
        let mut s = Subscriptions::new();
        s.add(b"A");
        s.add(b"");
        assert!(s.matches(b"B"));
        s.remove(b"");
        assert!(!s.matches(b"B"));
        assert!(s.matches(b"AB"));
    }

    #[test]
    fn cancelling_the_unsubscribed_does_nothing() {
        let mut s = Subscriptions::new();
        s.add(b"abc");
        assert!(!s.remove(b"ab"));
        assert!(!s.remove(b"abcd"));
        assert!(!s.remove(b"x"));
        assert!(s.matches(b"abc"));
        assert!(s.remove(b"abc"));
        assert!(s.is_empty());
        assert!(s.lengths.is_empty(), "no length is left counted");
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn limits_hold_new_topics_by_count_and_bytes() {
        let limits = SubscriptionLimits {
            topics: 3,
            bytes: 10,
        };
        let mut s = Subscriptions::new();
        assert_eq!(s.add_within(b"", limits), Ok(true));
        assert_eq!(s.add_within(b"abcd", limits), Ok(true));
        // Six more bytes would make 10: allowed; seven would not.
        assert_eq!(
            s.add_within(b"1234567", limits),
            Err(ProtocolError::TooManySubscriptions {
                limit: 10,
                unit: "bytes of topics"
            })
        );
        assert_eq!(s.add_within(b"123456", limits), Ok(true));
        assert_eq!(s.bytes(), 10);
        // At three topics a fourth is refused; more of a topic held is only
        // counted.
        assert_eq!(
            s.add_within(b"x", limits),
            Err(ProtocolError::TooManySubscriptions {
                limit: 3,
                unit: "topics"
            })
        );
        for _ in 0..1000 {
            assert_eq!(s.add_within(b"abcd", limits), Ok(false));
        }
        assert_eq!((s.len(), s.bytes()), (3, 10));
        // A refused topic was not added; a cancelled one makes room.
        assert!(!s.remove(b"x"));
        assert!(s.remove(b"123456"));
        assert_eq!(s.bytes(), 4);
        assert_eq!(s.add_within(b"x", limits), Ok(true));
        assert_eq!(
            ProtocolError::TooManySubscriptions {
                limit: 3,
                unit: "topics"
            }
            .to_string(),
            "subscriber went over its limit of 3 topics"
        );
    }

    #[test]
    fn iter_lists_topics_with_counts() {
        let mut s = Subscriptions::new();
        s.add(b"b");
        s.add(b"a");
        s.add(b"a");
        s.add(b"ab");
        assert_eq!(
            s.iter(),
            vec![
                (Bytes::from_static(b"a"), 2),
                (Bytes::from_static(b"ab"), 1),
                (Bytes::from_static(b"b"), 1)
            ]
        );
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn zmtp_3_0_subscription_messages() {
        let sub = SubscriptionMessage::parse(&Bytes::from_static(b"\x01topic")).unwrap();
        assert_eq!(
            sub,
            SubscriptionMessage::Subscribe(Bytes::from_static(b"topic"))
        );
        assert_eq!(sub.to_frame(), Bytes::from_static(b"\x01topic"));
        assert_eq!(
            SubscriptionMessage::parse(&Bytes::from_static(b"\x00")),
            Some(SubscriptionMessage::Cancel(Bytes::new()))
        );
        assert_eq!(
            SubscriptionMessage::parse(&Bytes::from_static(b"\x02x")),
            None
        );
        assert_eq!(SubscriptionMessage::parse(&Bytes::new()), None);
    }
}
