//! One connection, as its I/O thread drives it: connecting, the handshake,
//! reading whole messages into the socket's queues, commands, heartbeats.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use conduit_proto::{
    Command, Decoder, Handshake, Heartbeat, HeartbeatAction, Item, Message, Opener, PeerInfo,
    ProtocolError, Security, SendBuffer, SocketType, SubscriptionMessage,
};
use std::os::fd::AsFd;

use super::out::{ConnId, PeerOut, Unbounded};
use crate::error::Error;
use crate::reader::{FIRST_READ_MIN, READ_CHUNK, read_once};
use crate::socket::core::Core;
use crate::transport::socket::SocketStream;
use crate::transport::{Transport, Wait};

/// Reads per readiness event before other connections get a turn.
pub(crate) const READ_BUDGET: usize = 16;

/// Whole one-frame messages split off the read buffer at once.
const RUN_MAX: usize = 256;

/// Where a connection came from, for what happens when it ends.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin {
    /// Accepted on a listener (by token).
    Accepted(usize),
    /// Made by a connector (by id), which reconnects when it ends.
    Connected(usize),
}

#[derive(Debug)]
pub(crate) enum Phase {
    /// A connect in progress: waiting for writability.
    Connecting,
    /// Greeting and READY under way.
    Handshaking(Box<Handshake>),
    /// In service as peer `peer_id`.
    Active { peer_id: u64, info: Box<PeerInfo> },
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) struct Ended {
    /// None: the peer closed cleanly (or we closed it).
    pub(crate) error: Option<Error>,
}

/// What reading came to, short of the end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// The kernel has nothing more: wait for the next readiness event.
    Drained,
    /// The budget ran out with input left: read again after the others.
    More,
    /// The socket's queue for this peer is full: read again when it has room.
    Paused,
}

#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: ConnId,
    pub(crate) core: Arc<Core>,
    pub(crate) stream: Arc<SocketStream>,
    pub(crate) link: String,
    pub(crate) origin: Origin,
    pub(crate) phase: Phase,
    pub(crate) out: Arc<PeerOut>,
    inbuf: BytesMut,
    /// What a read into an empty `inbuf` asks for: about what the last
    /// wake-up brought, at least `FIRST_READ_MIN`, at most `READ_CHUNK`. The
    /// messages read share the buffer, which goes back to the allocator
    /// with the last of them; a peer that sends one message at a time (a
    /// request, a reply) so costs a small allocation per message from the
    /// allocator's thread cache, where 64 KiB each cost a sixth of a 64 B
    /// round trip's instructions in `malloc`, `realloc` and `free`.
    first_read: usize,
    decoder: Decoder,
    /// CURVE: opens every frame after the handshake (then `decoder` is unused).
    opener: Option<Opener>,
    /// Messages read but not taken by the socket (its queue was full).
    held: VecDeque<Message>,
    pub(crate) paused: bool,
    pub(crate) heartbeat: Heartbeat,
    /// The socket is closing: write what is queued, then shut down.
    pub(crate) closing: bool,
    /// Registered for writability (what is queued waits for the kernel).
    pub(crate) want_write: bool,
    /// An ERROR went to the peer already.
    told: bool,
    /// The peer shut down its side or the connection broke (epoll said so):
    /// a short read no longer means there is nothing more, since the end of
    /// the stream that follows the data brings no new event.
    pub(crate) read_closed: bool,
}

impl Conn {
    pub(crate) fn new(
        id: ConnId,
        core: Arc<Core>,
        stream: Arc<SocketStream>,
        link: String,
        origin: Origin,
        out: Arc<PeerOut>,
        now: Instant,
    ) -> Conn {
        let max = core.options.channel.max_message_size;
        let heartbeat = Heartbeat::new(core.options.heartbeat, now);
        Conn {
            id,
            core,
            stream,
            link,
            origin,
            phase: Phase::Connecting,
            out,
            inbuf: BytesMut::new(),
            first_read: FIRST_READ_MIN,
            decoder: Decoder::new(max),
            opener: None,
            held: VecDeque::new(),
            paused: false,
            heartbeat,
            closing: false,
            want_write: false,
            told: false,
            read_closed: false,
        }
    }

    /// The connection is up: queue our greeting (and READY, or the security
    /// mechanism's first command).
    pub(crate) fn start_handshake(&mut self) {
        let options = &self.core.options.channel;
        // Only an authenticator looks at the peer's address: spare the system
        // calls otherwise.
        let peer_address = match options.security.authenticator {
            Some(_) => crate::security::peer_address(self.stream.as_fd()),
            None => Default::default(),
        };
        let handshake = Handshake::with_security(
            options.local.clone(),
            Security::clone(&options.security),
            peer_address,
        );
        let mut opening = SendBuffer::new();
        handshake.start(&mut opening);
        self.out.push_unbounded(Unbounded::Bytes(&opening.to_vec()));
        self.phase = Phase::Handshaking(Box::new(handshake));
    }

    pub(crate) fn peer_id(&self) -> Option<u64> {
        match &self.phase {
            Phase::Active { peer_id, .. } => Some(*peer_id),
            _ => None,
        }
    }

    pub(crate) fn peer_is_conduit(&self) -> bool {
        match &self.phase {
            Phase::Active { info, .. } => info.is_conduit(),
            _ => false,
        }
    }

    /// Reads once into the buffer; `Ok(0)` is the end of the stream. Also
    /// says whether the read took less than it asked for: then the kernel had
    /// no more, and (the epoll set being edge-triggered) more will come with
    /// a new event, so asking again only to hear "would block" is a system
    /// call wasted per message.
    fn fill(&mut self) -> io::Result<(usize, bool)> {
        let stream = &self.stream;
        read_once(
            &mut self.decoder,
            &mut self.inbuf,
            self.first_read,
            |spare| stream.read(spare, Wait::Never),
        )
    }

    /// Nothing more to read for now, after `got` bytes: sizes the next
    /// first read, and trims.
    fn drained(&mut self, got: usize) {
        if got > 0 {
            self.first_read = got.next_power_of_two().clamp(FIRST_READ_MIN, READ_CHUNK);
        }
        self.trim();
    }

    /// Gives the read buffer's memory back when nothing is in it, so that an
    /// idle peer costs little.
    fn trim(&mut self) {
        if self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
            self.inbuf = BytesMut::new();
        }
    }

    /// The end of the stream, or a read error, as the reason the connection ended.
    fn read_end(&self, result: io::Result<usize>) -> Ended {
        let between = match &self.opener {
            Some(opener) => opener.is_between_messages(),
            None => self.decoder.is_between_messages(),
        };
        let mid_message = !self.inbuf.is_empty() || !between;
        match result {
            Ok(_) if matches!(self.phase, Phase::Handshaking(_)) => Ended {
                error: Some(Error::ClosedDuringHandshake),
            },
            Ok(_) if mid_message => Ended {
                error: Some(Error::Truncated),
            },
            Ok(_) => Ended { error: None },
            Err(e) => {
                let error = match Error::from_stream(e, "cannot read from the stream") {
                    Error::Disconnected if mid_message => Error::Truncated,
                    other => other,
                };
                Ended { error: Some(error) }
            }
        }
    }

    /// Reads the handshake; returns the peer's info once it is complete (what
    /// followed it stays buffered for [`read_active`](Self::read_active)).
    pub(crate) fn read_handshake(&mut self) -> Result<Option<PeerInfo>, Ended> {
        loop {
            let Phase::Handshaking(handshake) = &mut self.phase else {
                return Ok(None);
            };
            let result = handshake.handle_input(&mut self.inbuf);
            if handshake.has_output() {
                // The mechanism's answers (WELCOME, INITIATE, READY...).
                let mut out = SendBuffer::new();
                handshake.poll_output(&mut out);
                self.out.push_unbounded(Unbounded::Bytes(&out.to_vec()));
            }
            match result {
                Ok(Some(info)) => {
                    if let Some(cipher) = handshake.take_cipher() {
                        // CURVE: every frame from now on travels in a box.
                        let (sealer, mut opener) = cipher.split();
                        opener.set_max_message_size(self.core.options.channel.max_message_size);
                        self.opener = Some(opener);
                        self.out.set_sealer(sealer);
                    }
                    return Ok(Some(info));
                }
                Ok(None) => {}
                Err(e) => {
                    let greeted = handshake.peer_greeting().is_some();
                    if greeted {
                        self.tell_peer(&e);
                    }
                    return Err(Ended {
                        error: Some(Error::Protocol(e)),
                    });
                }
            }
            match self.fill() {
                Ok((0, _)) => return Err(self.read_end(Ok(0))),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(self.read_end(Err(e))),
            }
        }
    }

    /// Tells the peer why we drop it, if the error is one to report, once.
    pub(crate) fn tell_peer(&mut self, error: &ProtocolError) {
        if self.told {
            return;
        }
        if let Some(reason) = error.error_reason() {
            self.told = true;
            self.out
                .push_unbounded(Unbounded::Command(&Command::Error(reason)));
        }
    }

    /// Hands the socket what was held back for want of room; true if it took
    /// it all.
    pub(crate) fn deliver_held(&mut self) -> Result<bool, Ended> {
        let Some(peer_id) = self.peer_id() else {
            return Ok(true);
        };
        if self.held.is_empty() {
            return Ok(true);
        }
        let mut held = std::mem::take(&mut self.held);
        let taken = self.deliver(peer_id, &mut held);
        self.held = held;
        taken
    }

    fn deliver(&mut self, peer_id: u64, batch: &mut VecDeque<Message>) -> Result<bool, Ended> {
        match self.core.deliver(peer_id, batch) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.paused = true;
                Ok(false)
            }
            Err(e) => {
                if let Error::Protocol(p) = &e {
                    self.tell_peer(p);
                }
                Err(Ended { error: Some(e) })
            }
        }
    }

    /// Reads and delivers whole messages, at most `budget` reads.
    pub(crate) fn read_active(&mut self, now: Instant, budget: usize) -> Result<Read, Ended> {
        let Some(peer_id) = self.peer_id() else {
            return Ok(Read::Drained);
        };
        if self.paused {
            return Ok(Read::Paused);
        }
        let mut batch = VecDeque::new();
        let mut reads = 0;
        let mut got = 0;
        let mut drained = false;
        loop {
            self.decode(&mut batch, now)?;
            if !batch.is_empty() && !self.deliver(peer_id, &mut batch)? {
                self.held = batch;
                // Not drained: read again on resuming, not on an edge.
                return Ok(Read::Paused);
            }
            if drained {
                self.drained(got);
                return Ok(Read::Drained);
            }
            if reads == budget {
                return Ok(Read::More);
            }
            reads += 1;
            match self.fill() {
                Ok((0, _)) => return Err(self.read_end(Ok(0))),
                Ok((n, short)) => {
                    self.heartbeat.on_traffic(now);
                    got += n;
                    drained = short && !self.read_closed;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.drained(got);
                    return Ok(Read::Drained);
                }
                Err(e) => return Err(self.read_end(Err(e))),
            }
        }
    }

    /// Splits what is buffered into messages for `batch`, handling commands
    /// on the way.
    fn decode(&mut self, batch: &mut VecDeque<Message>, now: Instant) -> Result<(), Ended> {
        loop {
            let item = match &mut self.opener {
                Some(opener) => opener.decode(&mut self.inbuf),
                None => {
                    self.decoder.decode_run(&mut self.inbuf, batch, RUN_MAX);
                    self.decoder.decode(&mut self.inbuf)
                }
            };
            match item {
                Ok(Some(Item::Message(msg))) => batch.push_back(msg),
                Ok(Some(Item::Command(cmd))) => self.on_command(cmd, batch, now)?,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.tell_peer(&e);
                    return Err(Ended {
                        error: Some(Error::Protocol(e)),
                    });
                }
            }
        }
    }

    fn on_command(
        &mut self,
        cmd: Command,
        batch: &mut VecDeque<Message>,
        now: Instant,
    ) -> Result<(), Ended> {
        match cmd {
            Command::Ping { ttl, context } => {
                self.heartbeat.on_ping(ttl, now);
                // Answer only when nothing is queued: what is queued is a sign of
                // life too (ZMTP 3.1, "Connection Heartbeating"), and a peer that
                // pings without reading would otherwise grow our queue unbounded.
                if self.out.lock().is_empty() {
                    self.out
                        .push_unbounded(Unbounded::Command(&Command::Pong { context }));
                }
                Ok(())
            }
            Command::Error(reason) => Err(Ended {
                error: Some(Error::Protocol(ProtocolError::PeerError(reason))),
            }),
            // Subscriptions reach a publisher's rules in their ZMTP 3.0 message
            // form, which it accepts anyway, in order with messages.
            Command::Subscribe(topic)
                if matches!(self.core.kind, SocketType::Pub | SocketType::XPub) =>
            {
                batch.push_back(Message::from(
                    SubscriptionMessage::Subscribe(topic).to_frame(),
                ));
                Ok(())
            }
            Command::Cancel(topic)
                if matches!(self.core.kind, SocketType::Pub | SocketType::XPub) =>
            {
                batch.push_back(Message::from(SubscriptionMessage::Cancel(topic).to_frame()));
                Ok(())
            }
            // PONG is only a sign of life; others have no use for
            // subscriptions, and ZMTP says to ignore commands we do not know.
            _ => Ok(()),
        }
    }

    /// A heartbeat timer fired: PING, or judge the peer silent.
    pub(crate) fn on_heartbeat(&mut self, now: Instant) -> Result<(), Ended> {
        match self.heartbeat.handle_timeout(now) {
            Some(HeartbeatAction::Ping { ttl_deciseconds }) => {
                let ping = Command::Ping {
                    ttl: ttl_deciseconds,
                    context: Default::default(),
                };
                self.out.push_unbounded(Unbounded::Command(&ping));
                Ok(())
            }
            Some(HeartbeatAction::Expired) => Err(Ended {
                error: Some(Error::PeerSilent),
            }),
            None => Ok(()),
        }
    }

    /// Reads and throws away whatever has arrived: a socket closed with unread
    /// input sends a reset, which can destroy what we sent last.
    pub(crate) fn discard_input(&mut self) {
        self.inbuf = BytesMut::new();
        let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        while let Ok(n) = self.stream.read(&mut scratch, Wait::Never) {
            if n == 0 {
                break;
            }
        }
    }
}
