//! The connection handshake: greeting exchange, then READY both ways
//! (ZMTP 3.1, "The NULL Security Mechanism").

use bytes::{Buf, Bytes, BytesMut};

use crate::command::Command;
use crate::decoder::MAX_COMMAND_SIZE;
use crate::error::ProtocolError;
use crate::frame::FrameHeader;
use crate::greeting::{GREETING_LEN, Greeting};
use crate::mechanism::curve::{CurveClient, CurveServer};
use crate::mechanism::plain::{PlainClient, PlainServer};
use crate::mechanism::{Cipher, Context, Credentials, Done, Mechanism, PeerAddress, Security};
use crate::properties::{IDENTITY, IMPLEMENTATION, Properties, SOCKET_TYPE};
use crate::send_buffer::SendBuffer;
use crate::socket_type::SocketType;

/// What we announce about ourselves in READY.
#[derive(Debug, Clone)]
pub struct LocalInfo {
    /// Our socket type.
    pub socket_type: SocketType,
    /// Our identity, sent to ROUTER peers by REQ, DEALER and ROUTER sockets.
    pub identity: Bytes,
    /// Extra properties, such as application `X-` ones.
    pub properties: Properties,
}

impl LocalInfo {
    /// A socket of this type with no identity and no extra properties.
    pub fn new(socket_type: SocketType) -> LocalInfo {
        LocalInfo {
            socket_type,
            identity: Bytes::new(),
            properties: Properties::new(),
        }
    }

    /// Our metadata: what NULL sends in READY, PLAIN and CURVE in INITIATE or
    /// READY.
    pub fn metadata(&self) -> Properties {
        let mut props = Properties::new();
        props
            .insert(SOCKET_TYPE, self.socket_type.as_str())
            .expect("valid name");
        // libzmq sends Identity only from the types a ROUTER addresses.
        if matches!(
            self.socket_type,
            SocketType::Req | SocketType::Dealer | SocketType::Router
        ) {
            props
                .insert(IDENTITY, self.identity.clone())
                .expect("valid name");
        }
        props.insert(IMPLEMENTATION, "conduit").expect("valid name");
        for (name, value) in self.properties.iter() {
            props
                .insert(name, value.clone())
                .expect("validated on insert");
        }
        props
    }
}

/// What the peer told us in its greeting and READY.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's socket type.
    pub socket_type: SocketType,
    /// The peer's identity (empty if it sent none).
    pub identity: Bytes,
    /// Every property of its READY.
    pub properties: Properties,
    /// Its greeting's version.
    pub greeting: Greeting,
    /// What our [`Authenticator`](crate::Authenticator) called the peer, if it
    /// gave a name (a PLAIN user name, the owner of a CURVE key).
    pub user_id: Option<String>,
}

impl PeerInfo {
    /// Whether the peer is conduit (it said so in READY).
    pub fn is_conduit(&self) -> bool {
        self.properties
            .get(IMPLEMENTATION)
            .is_some_and(|v| v == "conduit")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Commands(Greeting),
    Done,
}

/// The mechanism's own state.
#[derive(Debug)]
enum MechState {
    Null,
    PlainClient(PlainClient),
    PlainServer(PlainServer),
    CurveClient(Box<CurveClient>),
    CurveServer(Box<CurveServer>),
}

/// The handshake of one connection, as a state machine that does no I/O.
///
/// [`start`](Self::start) queues our greeting and first command; feed what the
/// peer sends to [`handle_input`](Self::handle_input) until it returns the
/// peer's [`PeerInfo`], and after every call write out what
/// [`poll_output`](Self::poll_output) gives (PLAIN and CURVE answer the peer's
/// commands; NULL never has anything there). Bytes after the peer's last
/// handshake command stay in the input buffer: they are the first traffic,
/// which after a CURVE handshake goes through the [`Cipher`] that
/// [`take_cipher`](Self::take_cipher) hands over.
///
/// With NULL we send the whole greeting and READY at once rather than waiting
/// for the peer's signature: conduit speaks no older ZMTP to downgrade to, and
/// one write saves a round trip.
///
/// ```
/// use bytes::BytesMut;
/// use conduit_proto::{Handshake, LocalInfo, SendBuffer, SocketType};
///
/// let (mut a, mut b) = (Handshake::new(LocalInfo::new(SocketType::Push)),
///                       Handshake::new(LocalInfo::new(SocketType::Pull)));
/// let (mut a_out, mut b_out) = (SendBuffer::new(), SendBuffer::new());
/// a.start(&mut a_out);
/// b.start(&mut b_out);
/// let mut to_b = BytesMut::from(&a_out.to_vec()[..]);
/// let peer = b.handle_input(&mut to_b).unwrap().unwrap();
/// assert_eq!(peer.socket_type, SocketType::Push);
/// ```
#[derive(Debug)]
pub struct Handshake {
    local: LocalInfo,
    security: Security,
    peer_address: PeerAddress,
    state: State,
    mech: MechState,
    output: SendBuffer,
    cipher: Option<Cipher>,
}

impl Handshake {
    /// A NULL handshake announcing `local`.
    pub fn new(local: LocalInfo) -> Handshake {
        Handshake::with_security(local, Security::default(), PeerAddress::default())
    }

    /// A handshake with `security`'s mechanism and role, for a peer at
    /// `peer_address` (what the authenticator is told).
    pub fn with_security(
        local: LocalInfo,
        security: Security,
        peer_address: PeerAddress,
    ) -> Handshake {
        let mech = match &security.mechanism {
            Mechanism::Null => MechState::Null,
            Mechanism::PlainClient { .. } => MechState::PlainClient(PlainClient::ExpectWelcome),
            Mechanism::PlainServer => MechState::PlainServer(PlainServer::ExpectHello),
            Mechanism::CurveClient { server_key, keys } => {
                MechState::CurveClient(Box::new(CurveClient::new(*server_key, keys.clone())))
            }
            Mechanism::CurveServer { keys } => {
                MechState::CurveServer(Box::new(CurveServer::new(keys.clone())))
            }
        };
        Handshake {
            local,
            security,
            peer_address,
            state: State::Greeting,
            mech,
            output: SendBuffer::new(),
            cipher: None,
        }
    }

    /// Our side of the handshake.
    pub fn local(&self) -> &LocalInfo {
        &self.local
    }

    /// Our mechanism and role.
    pub fn mechanism(&self) -> &Mechanism {
        &self.security.mechanism
    }

    /// Whether the peer's greeting has arrived; after that, failures are reported to
    /// the peer with ERROR.
    pub fn peer_greeting(&self) -> Option<Greeting> {
        match self.state {
            State::Commands(g) => Some(g),
            _ => None,
        }
    }

    /// Queues our greeting and, when we speak first, our first command (READY
    /// for NULL, HELLO for a PLAIN or CURVE client).
    pub fn start(&self, out: &mut SendBuffer) {
        let mechanism = &self.security.mechanism;
        out.push_bytes(&Greeting::ours_for(mechanism.name(), mechanism.as_server()));
        match (&self.mech, mechanism) {
            (MechState::Null, _) => out.push_command(&Command::Ready(self.local.metadata())),
            (MechState::PlainClient(_), Mechanism::PlainClient { username, password }) => {
                PlainClient::start(username, password, out)
            }
            (MechState::CurveClient(client), _) => client.start(out),
            _ => {}
        }
    }

    /// Moves what the mechanism has to send the peer (its answers to the
    /// commands [`handle_input`](Self::handle_input) consumed) to `out`.
    pub fn poll_output(&mut self, out: &mut SendBuffer) {
        if !self.output.is_empty() {
            out.push_bytes(&self.output.to_vec());
            self.output.clear();
        }
    }

    /// Whether [`poll_output`](Self::poll_output) has bytes to give.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// After a CURVE handshake, the data-phase transform every later frame goes
    /// through, both ways (see [`Cipher`]); `None` for NULL and PLAIN, and
    /// before the handshake completes. Gives it once.
    pub fn take_cipher(&mut self) -> Option<Cipher> {
        self.cipher.take()
    }

    /// Consumes handshake bytes from `src`; returns the peer's info once its
    /// last handshake command has arrived, its socket type is one we can talk
    /// to and our authenticator let it in.
    pub fn handle_input(&mut self, src: &mut BytesMut) -> Result<Option<PeerInfo>, ProtocolError> {
        if self.state == State::Greeting {
            let mechanism = &self.security.mechanism;
            // The peer's as-server flag is not checked: libzmq always sends 0
            // there (zmtp_engine.cpp), whatever its role. Two clients find out
            // at the first command; two servers wait for the handshake timeout.
            let Some((greeting, _as_server)) = Greeting::parse_for(src, mechanism.name())? else {
                return Ok(None);
            };
            src.advance(GREETING_LEN);
            self.state = State::Commands(greeting);
        }
        let State::Commands(greeting) = self.state else {
            panic!("handle_input called after the handshake completed");
        };
        loop {
            let Some((header, header_len)) = FrameHeader::parse(src)? else {
                return Ok(None);
            };
            if !header.command {
                return Err(ProtocolError::MessageBeforeReady);
            }
            if header.len > MAX_COMMAND_SIZE as u64 {
                return Err(ProtocolError::CommandTooLarge {
                    size: header.len,
                    max: MAX_COMMAND_SIZE,
                });
            }
            let frame_len = header_len + header.len as usize;
            if src.len() < frame_len {
                src.reserve(frame_len - src.len());
                return Ok(None);
            }
            src.advance(header_len);
            let body = src.split_to(header.len as usize).freeze();
            let metadata = self.local.metadata();
            let ctx = Context {
                security: &self.security,
                peer: &self.peer_address,
                metadata: &metadata,
            };
            let out = &mut self.output;
            let done = match &mut self.mech {
                MechState::Null => {
                    let properties = match Command::parse(body)? {
                        Command::Ready(props) => props,
                        Command::Error(reason) => return Err(ProtocolError::PeerError(reason)),
                        other => {
                            return Err(ProtocolError::UnexpectedCommand(other.name().to_owned()));
                        }
                    };
                    let user_id = self
                        .security
                        .authenticate(&self.peer_address, Credentials::Null)?;
                    Some(Done {
                        properties,
                        user_id,
                        cipher: None,
                    })
                }
                MechState::PlainClient(m) => m.handle(body, &ctx, out)?,
                MechState::PlainServer(m) => m.handle(body, &ctx, out)?,
                MechState::CurveClient(m) => m.handle(body, &ctx, out)?,
                MechState::CurveServer(m) => m.handle(body, &ctx, out)?,
            };
            let Some(done) = done else {
                continue;
            };
            let mut peer = self.validate(done.properties, greeting)?;
            peer.user_id = done.user_id;
            self.cipher = done.cipher;
            self.state = State::Done;
            return Ok(Some(peer));
        }
    }

    fn validate(
        &self,
        properties: Properties,
        greeting: Greeting,
    ) -> Result<PeerInfo, ProtocolError> {
        let name = properties
            .get(SOCKET_TYPE)
            .ok_or(ProtocolError::MissingSocketType)?;
        let socket_type = SocketType::from_wire(name).ok_or_else(|| {
            ProtocolError::UnknownSocketType(String::from_utf8_lossy(name).into_owned())
        })?;
        if !self.local.socket_type.is_compatible_with(socket_type) {
            return Err(ProtocolError::IncompatibleSocketType {
                ours: self.local.socket_type,
                peer: socket_type,
            });
        }
        Ok(PeerInfo {
            socket_type,
            identity: properties.get(IDENTITY).cloned().unwrap_or_default(),
            properties,
            greeting,
            user_id: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(local: LocalInfo) -> (Handshake, Vec<u8>) {
        let hs = Handshake::new(local);
        let mut out = SendBuffer::new();
        hs.start(&mut out);
        let bytes = out.to_vec();
        (hs, bytes)
    }

    /// Feeds `input` to `hs` in pieces of `step` bytes.
    fn feed(
        hs: &mut Handshake,
        input: &[u8],
        step: usize,
    ) -> Result<Option<PeerInfo>, ProtocolError> {
        let mut src = BytesMut::new();
        for piece in input.chunks(step.max(1)) {
            src.extend_from_slice(piece);
            if let Some(peer) = hs.handle_input(&mut src)? {
                return Ok(Some(peer));
            }
        }
        Ok(None)
    }

    #[test]
    fn our_opening_bytes() {
        let (_, bytes) = started(LocalInfo::new(SocketType::Pair));
        assert_eq!(&bytes[..64], &Greeting::ours());
        assert_eq!(
            &bytes[64..],
            b"\x04\x34\x05READY\x0bSocket-Type\x00\x00\x00\x04PAIR\x0eImplementation\x00\x00\x00\x07conduit"
        );
    }

    #[test]
    fn dealer_sends_its_identity_and_extra_properties() {
        let mut local = LocalInfo::new(SocketType::Dealer);
        local.identity = Bytes::from_static(b"me");
        local.properties.insert("X-App", "demo").unwrap();
        let (_, bytes) = started(local);
        let (mut router, _) = started(LocalInfo::new(SocketType::Router));
        let peer = feed(&mut router, &bytes, 64).unwrap().unwrap();
        assert_eq!(peer.socket_type, SocketType::Dealer);
        assert_eq!(peer.identity, "me");
        assert_eq!(peer.properties.get("x-app").unwrap(), "demo");
        assert!(peer.greeting.is_3_1());
    }

    #[test]
    fn completes_whatever_the_piece_size() {
        let (_, from_a) = started(LocalInfo::new(SocketType::Req));
        for step in 1..=from_a.len() {
            let (mut b, _) = started(LocalInfo::new(SocketType::Rep));
            let peer = feed(&mut b, &from_a, step).unwrap();
            assert_eq!(
                peer.map(|p| p.socket_type),
                Some(SocketType::Req),
                "step {step}"
            );
        }
    }

    #[test]
    fn traffic_after_ready_is_left_for_the_decoder() {
        let (_, mut from_a) = started(LocalInfo::new(SocketType::Pair));
        from_a.extend_from_slice(b"\x00\x02hi");
        let (mut b, _) = started(LocalInfo::new(SocketType::Pair));
        let mut src = BytesMut::from(&from_a[..]);
        assert!(b.handle_input(&mut src).unwrap().is_some());
        assert_eq!(&src[..], b"\x00\x02hi");
    }

    #[test]
    fn incompatible_socket_type_is_refused_with_a_reason_for_the_peer() {
        let (_, from_push) = started(LocalInfo::new(SocketType::Push));
        let (mut other_push, _) = started(LocalInfo::new(SocketType::Push));
        let err = feed(&mut other_push, &from_push, 200).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::IncompatibleSocketType {
                ours: SocketType::Push,
                peer: SocketType::Push
            }
        );
        assert_eq!(
            err.error_reason().unwrap(),
            "a PUSH socket cannot talk to a PUSH peer"
        );
    }

    #[test]
    fn handshake_violations() {
        let greeting = Greeting::ours();
        let with = |tail: &[u8]| [&greeting[..], tail].concat();
        let cases: Vec<(Vec<u8>, ProtocolError)> = vec![
            (with(b"\x00\x02hi"), ProtocolError::MessageBeforeReady),
            (
                with(b"\x04\x07\x04PING\x00\x00"),
                ProtocolError::UnexpectedCommand("PING".into()),
            ),
            (
                with(b"\x04\x09\x05ERROR\x02no"),
                ProtocolError::PeerError("no".into()),
            ),
            (with(b"\x04\x06\x05READY"), ProtocolError::MissingSocketType),
            (
                with(b"\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x04PEER"),
                ProtocolError::UnknownSocketType("PEER".into()),
            ),
            (
                with(&[0x06, 0, 0, 0, 0, 0, 0x01, 0, 1]),
                ProtocolError::CommandTooLarge {
                    size: (1 << 16) + 1,
                    max: MAX_COMMAND_SIZE,
                },
            ),
        ];
        for (input, expected) in cases {
            let (mut hs, _) = started(LocalInfo::new(SocketType::Pair));
            assert_eq!(feed(&mut hs, &input, 1000), Err(expected));
        }
    }

    #[test]
    fn truncated_ready_property_is_malformed() {
        let input = [&Greeting::ours()[..], b"\x04\x10\x05READY\x0bSocket-Ty"].concat();
        let (mut hs, _) = started(LocalInfo::new(SocketType::Pair));
        assert!(matches!(
            feed(&mut hs, &input, 1000),
            Err(ProtocolError::MalformedCommand { .. })
        ));
    }
}
