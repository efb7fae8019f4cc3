//! ZeroMQ socket types and which of them may talk to each other.

use std::fmt;
use std::str::FromStr;

/// A ZeroMQ socket type, as announced in the READY command's `Socket-Type` property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketType {
    /// Exclusive pair: one peer, both directions.
    Pair,
    /// Publisher: sends to every subscriber whose subscription matches.
    Pub,
    /// Subscriber: receives what it subscribed to.
    Sub,
    /// Requester: strictly alternates send and receive.
    Req,
    /// Replier: strictly alternates receive and send.
    Rep,
    /// Asynchronous requester: round-robins sends, fair-queues receives.
    Dealer,
    /// Asynchronous replier: addresses peers by identity.
    Router,
    /// Pipeline sink: fair-queues from pushers.
    Pull,
    /// Pipeline source: round-robins to pullers.
    Push,
    /// Publisher that hands subscriptions to the application.
    XPub,
    /// Subscriber that sends subscriptions as messages.
    XSub,
}

impl SocketType {
    /// Every socket type, in the order the ZMTP specification lists them.
    pub const ALL: [SocketType; 11] = [
        SocketType::Req,
        SocketType::Rep,
        SocketType::Dealer,
        SocketType::Router,
        SocketType::Pub,
        SocketType::XPub,
        SocketType::Sub,
        SocketType::XSub,
        SocketType::Push,
        SocketType::Pull,
        SocketType::Pair,
    ];

    /// The name ZMTP uses on the wire, e.g. `"DEALER"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SocketType::Pair => "PAIR",
            SocketType::Pub => "PUB",
            SocketType::Sub => "SUB",
            SocketType::Req => "REQ",
            SocketType::Rep => "REP",
            SocketType::Dealer => "DEALER",
            SocketType::Router => "ROUTER",
            SocketType::Pull => "PULL",
            SocketType::Push => "PUSH",
            SocketType::XPub => "XPUB",
            SocketType::XSub => "XSUB",
        }
    }

    /// Parses the wire name exactly (ZMTP socket-type names are upper case).
    pub fn from_wire(name: &[u8]) -> Option<SocketType> {
        SocketType::ALL
            .into_iter()
            .find(|t| t.as_str().as_bytes() == name)
    }

    /// Whether a socket of this type may talk to a peer of type `peer`
    /// (ZMTP 3.1, "The Socket-Type Property").
    ///
    /// ```
    /// use conduit_proto::SocketType::*;
    /// assert!(Req.is_compatible_with(Router));
    /// assert!(!Push.is_compatible_with(Push));
    /// ```
    pub fn is_compatible_with(self, peer: SocketType) -> bool {
        use SocketType::*;
        matches!(
            (self, peer),
            (Req, Rep | Router)
                | (Rep, Req | Dealer)
                | (Dealer, Rep | Dealer | Router)
                | (Router, Req | Dealer | Router)
                | (Pub | XPub, Sub | XSub)
                | (Sub | XSub, Pub | XPub)
                | (Push, Pull)
                | (Pull, Push)
                | (Pair, Pair)
        )
    }
}

impl fmt::Display for SocketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a socket type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown socket type {0:?} (expected one of PAIR, PUB, SUB, REQ, REP, DEALER, ROUTER, PUSH, PULL, XPUB, XSUB)"
)]
pub struct UnknownSocketType(pub String);

impl FromStr for SocketType {
    type Err = UnknownSocketType;

    /// Parses a socket type name, ignoring case (`"dealer"` and `"DEALER"` both work).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SocketType::from_wire(s.to_ascii_uppercase().as_bytes())
            .ok_or_else(|| UnknownSocketType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::SocketType::{self, *};

    #[test]
    fn compatibility_is_symmetric_and_matches_the_spec_table() {
        let valid = [
            (Req, Rep),
            (Req, Router),
            (Dealer, Rep),
            (Dealer, Dealer),
            (Dealer, Router),
            (Router, Router),
            (Pub, Sub),
            (Pub, XSub),
            (XPub, Sub),
            (XPub, XSub),
            (Push, Pull),
            (Pair, Pair),
        ];
        for a in SocketType::ALL {
            for b in SocketType::ALL {
                let expected = valid.contains(&(a, b)) || valid.contains(&(b, a));
                assert_eq!(a.is_compatible_with(b), expected, "{a} - {b}");
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for t in SocketType::ALL {
            assert_eq!(SocketType::from_wire(t.as_str().as_bytes()), Some(t));
            assert_eq!(t.as_str().to_lowercase().parse::<SocketType>(), Ok(t));
        }
        assert_eq!(SocketType::from_wire(b"dealer"), None);
        assert!("CLIENT".parse::<SocketType>().is_err());
    }
}
