//! CURVE (RFC 25/26, CurveZMQ): the handshake, then every frame in a MESSAGE
//! box.
//!
//! ```text
//! C: HELLO    C', Box[64 zeros](C'->S)
//! S: WELCOME  Box[S' + cookie](S->C'), cookie = SecretBox[C' + s'](k)
//! C: INITIATE cookie, Box[C + vouch + metadata](C'->S'), vouch = Box[C' + S](C->S')
//! S: READY    Box[metadata](S'->C')
//! then MESSAGE Box[flags + frame](C'->S' or S'->C'), each with its own nonce
//! ```
//! C/S are the long-term keys, C'/S' the short-term ones made for this
//! connection. Byte layouts follow libzmq (`curve_client_tools.hpp`,
//! `curve_server.cpp`, `curve_mechanism_base.cpp`), which is what peers speak.
//!
//! The boxes are libsodium's `crypto_box` (X25519, XSalsa20, Poly1305) and
//! `crypto_secretbox` for the cookie. The handshake's come from the
//! `crypto_box` crate's `SalsaBox` (whose ciphertext is MAC then data, as
//! libsodium's `_easy` calls lay it out); the data phase's MESSAGE boxes, where
//! throughput lives, from libsodium itself ([`sodium`](super::sodium)).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use crypto_box::aead::{Aead, OsRng, rand_core::RngCore};
use crypto_box::{PublicKey, SalsaBox, SecretKey};
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::sodium::{MAC_LEN, NONCE_LEN, SessionKey};
use super::{
    Context, Credentials, CurveKeyPair, CurvePublicKey, Done, push_command, split_command,
    unexpected,
};
use crate::assembler::Assembler;
use crate::command::Command;
use crate::decoder::{DEFAULT_MAX_MESSAGE_SIZE, Item};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, MAX_HEADER_LEN};
use crate::message::Message;
use crate::properties::Properties;
use crate::send_buffer::SendBuffer;

/// Tag (MAC) bytes of a box.
const TAG: usize = 16;
/// `\x07MESSAGE`.
const MESSAGE_NAME: &[u8] = b"\x07MESSAGE";
/// Bytes a MESSAGE command adds to the frame it carries: name (8), short nonce
/// (8), MAC (16) and the flags byte (1).
pub const MESSAGE_OVERHEAD: usize = 8 + 8 + TAG + 1;

/// Inside a MESSAGE box, the frame's flags (libzmq's `msg_t` flags).
const BOX_MORE: u8 = 0x01;
const BOX_COMMAND: u8 = 0x02;

fn nonce(prefix: &[u8], tail: &[u8]) -> crypto_box::Nonce {
    let mut n = crypto_box::Nonce::default();
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(tail);
    n
}

fn short_nonce(prefix: &[u8; 16], n: u64) -> crypto_box::Nonce {
    nonce(prefix, &n.to_be_bytes())
}

/// A MESSAGE box's nonce: the direction's 16-byte prefix, then `n` big-endian.
fn message_nonce(prefix: &[u8; 16], n: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0; NONCE_LEN];
    nonce[..16].copy_from_slice(prefix);
    nonce[16..].copy_from_slice(&n.to_be_bytes());
    nonce
}

fn random16() -> [u8; 16] {
    let mut r = [0; 16];
    OsRng.fill_bytes(&mut r);
    r
}

fn crypto(reason: &'static str) -> ProtocolError {
    ProtocolError::Cryptographic(reason)
}

fn malformed(command: &str, reason: &'static str) -> ProtocolError {
    ProtocolError::MalformedCommand {
        command: command.into(),
        reason,
    }
}

fn seal(key: &SalsaBox, nonce: &crypto_box::Nonce, plaintext: &[u8]) -> Vec<u8> {
    key.encrypt(nonce, plaintext)
        .expect("XSalsa20Poly1305 encrypts any length we send")
}

fn open(
    key: &SalsaBox,
    nonce: &crypto_box::Nonce,
    boxed: &[u8],
    why: &'static str,
) -> Result<Zeroizing<Vec<u8>>, ProtocolError> {
    key.decrypt(nonce, boxed)
        .map(Zeroizing::new)
        .map_err(|_| crypto(why))
}

fn read_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

fn key32(b: &[u8]) -> [u8; 32] {
    b[..32].try_into().expect("32 bytes")
}

/// A client's side of the handshake.
pub(crate) struct CurveClient {
    server_key: PublicKey,
    keys: CurveKeyPair,
    /// Short-term key pair (c', C'), this connection's alone.
    short: SecretKey,
    state: ClientState,
}

enum ClientState {
    ExpectWelcome,
    ExpectReady {
        session: SalsaBox,
        server_short: PublicKey,
    },
}

impl std::fmt::Debug for CurveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveClient")
            .field("public", &self.keys.public)
            .finish_non_exhaustive()
    }
}

/// Nonces of the client's HELLO and INITIATE; its MESSAGEs start after them.
const HELLO_NONCE: u64 = 1;
const INITIATE_NONCE: u64 = 2;
/// Nonce of the server's READY; its MESSAGEs start after it.
const READY_NONCE: u64 = 1;

impl CurveClient {
    pub(crate) fn new(server_key: CurvePublicKey, keys: Option<CurveKeyPair>) -> CurveClient {
        CurveClient {
            server_key: PublicKey::from(server_key.0),
            keys: keys.unwrap_or_else(CurveKeyPair::generate),
            short: SecretKey::generate(&mut OsRng),
            state: ClientState::ExpectWelcome,
        }
    }

    /// A client whose short-term secret key is `short`: for known-answer tests
    /// against recorded bytes, which need the key that opens them.
    #[cfg(test)]
    pub(crate) fn with_short_secret(
        server_key: CurvePublicKey,
        keys: CurveKeyPair,
        short: [u8; 32],
    ) -> CurveClient {
        CurveClient {
            server_key: PublicKey::from(server_key.0),
            keys,
            short: SecretKey::from(short),
            state: ClientState::ExpectWelcome,
        }
    }

    /// Queues HELLO: version 1.0, 72 bytes of anti-amplification padding, C',
    /// the short nonce, and Box[64 zeros](C'->S).
    pub(crate) fn start(&self, out: &mut SendBuffer) {
        let hello_box = SalsaBox::new(&self.server_key, &self.short);
        let signature = seal(
            &hello_box,
            &short_nonce(b"CurveZMQHELLO---", HELLO_NONCE),
            &[0; 64],
        );
        push_command(
            out,
            b"HELLO",
            &[
                &[1, 0],
                &[0; 72],
                self.short.public_key().as_bytes(),
                &HELLO_NONCE.to_be_bytes(),
                &signature,
            ],
        );
    }

    pub(crate) fn handle(
        &mut self,
        body: Bytes,
        ctx: &Context<'_>,
        out: &mut SendBuffer,
    ) -> Result<Option<Done>, ProtocolError> {
        let (name, data) = split_command(&body)?;
        match (&self.state, &name[..]) {
            (ClientState::ExpectWelcome, b"WELCOME") => {
                self.welcome(&data, ctx, out)?;
                Ok(None)
            }
            (
                ClientState::ExpectReady {
                    session,
                    server_short,
                },
                b"READY",
            ) => {
                if data.len() < 8 + TAG {
                    return Err(malformed("READY", "shorter than a nonce and a box"));
                }
                let n = read_u64(&data);
                let metadata = open(
                    session,
                    &short_nonce(b"CurveZMQREADY---", n),
                    &data[8..],
                    "cannot open the server's READY box",
                )?;
                let properties = Properties::parse(Bytes::copy_from_slice(&metadata))?;
                Ok(Some(Done {
                    properties,
                    user_id: None,
                    cipher: Some(Cipher::new(
                        server_short,
                        &self.short,
                        *b"CurveZMQMESSAGEC",
                        INITIATE_NONCE + 1,
                        *b"CurveZMQMESSAGES",
                        n,
                    )?),
                }))
            }
            (ClientState::ExpectWelcome, _) => Err(unexpected("WELCOME", &name, &data)),
            (ClientState::ExpectReady { .. }, _) => Err(unexpected("READY", &name, &data)),
        }
    }

    /// Opens WELCOME (nonce 16, Box[S' + cookie](S->C') 144), queues INITIATE.
    fn welcome(
        &mut self,
        data: &[u8],
        ctx: &Context<'_>,
        out: &mut SendBuffer,
    ) -> Result<(), ProtocolError> {
        if data.len() != 16 + 144 {
            return Err(malformed("WELCOME", "not 168 bytes"));
        }
        let welcome_key = SalsaBox::new(&self.server_key, &self.short);
        let plain = open(
            &welcome_key,
            &nonce(b"WELCOME-", &data[..16]),
            &data[16..],
            "cannot open the server's WELCOME box: wrong server key?",
        )?;
        let server_short = PublicKey::from(key32(&plain));
        let cookie = &plain[32..128];
        let session = SalsaBox::new(&server_short, &self.short);

        // The vouch: Box[C' + S](C->S'), proving we hold C's secret key.
        let vouch_nonce = random16();
        let mut vouch_plain = [0u8; 64];
        vouch_plain[..32].copy_from_slice(self.short.public_key().as_bytes());
        vouch_plain[32..].copy_from_slice(self.server_key.as_bytes());
        let vouch_key = SalsaBox::new(&server_short, &self.keys.secret.to_box_key());
        let vouch = seal(&vouch_key, &nonce(b"VOUCH---", &vouch_nonce), &vouch_plain);

        let mut initiate_plain = Zeroizing::new(Vec::with_capacity(128 + 64));
        initiate_plain.extend_from_slice(self.keys.public.as_bytes());
        initiate_plain.extend_from_slice(&vouch_nonce);
        initiate_plain.extend_from_slice(&vouch);
        let mut metadata = BytesMut::new();
        ctx.metadata.encode(&mut metadata);
        initiate_plain.extend_from_slice(&metadata);
        let boxed = seal(
            &session,
            &short_nonce(b"CurveZMQINITIATE", INITIATE_NONCE),
            &initiate_plain,
        );
        push_command(
            out,
            b"INITIATE",
            &[cookie, &INITIATE_NONCE.to_be_bytes(), &boxed],
        );
        self.state = ClientState::ExpectReady {
            session,
            server_short,
        };
        Ok(())
    }
}

/// A server's side of the handshake.
pub(crate) struct CurveServer {
    keys: CurveKeyPair,
    state: ServerState,
}

enum ServerState {
    ExpectHello,
    ExpectInitiate {
        client_short: PublicKey,
        short: SecretKey,
        cookie_key: Zeroizing<[u8; 32]>,
    },
    Finished,
}

impl std::fmt::Debug for CurveServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveServer")
            .field("public", &self.keys.public)
            .finish_non_exhaustive()
    }
}

impl CurveServer {
    pub(crate) fn new(keys: CurveKeyPair) -> CurveServer {
        CurveServer {
            keys,
            state: ServerState::ExpectHello,
        }
    }

    pub(crate) fn handle(
        &mut self,
        body: Bytes,
        ctx: &Context<'_>,
        out: &mut SendBuffer,
    ) -> Result<Option<Done>, ProtocolError> {
        let (name, data) = split_command(&body)?;
        match (&self.state, &name[..]) {
            (ServerState::ExpectHello, b"HELLO") => {
                self.hello(&data, out)?;
                Ok(None)
            }
            (ServerState::ExpectInitiate { .. }, b"INITIATE") => {
                self.initiate(&data, ctx, out).map(Some)
            }
            (ServerState::ExpectHello, _) => Err(unexpected("HELLO", &name, &data)),
            (_, _) => Err(unexpected("INITIATE", &name, &data)),
        }
    }

    /// HELLO: version (2), padding (72), C' (32), nonce (8), Box[64 zeros](C'->S) (80).
    fn hello(&mut self, data: &[u8], out: &mut SendBuffer) -> Result<(), ProtocolError> {
        if data.len() != 194 {
            return Err(malformed("HELLO", "not 200 bytes"));
        }
        if data[..2] != [1, 0] {
            return Err(malformed("HELLO", "not CurveZMQ version 1.0"));
        }
        let client_short = PublicKey::from(key32(&data[74..106]));
        let n = read_u64(&data[106..114]);
        let hello_key = SalsaBox::new(&client_short, &self.keys.secret.to_box_key());
        let zeros = open(
            &hello_key,
            &short_nonce(b"CurveZMQHELLO---", n),
            &data[114..],
            "cannot open the client's HELLO box: the client has another server key",
        )?;
        if !bool::from(zeros.ct_eq(&[0u8; 64][..])) {
            return Err(malformed("HELLO", "signature box is not 64 zeros"));
        }

        // This connection's short-term key pair, and the cookie: C' and s'
        // sealed under a key only this connection knows. RFC 26 designs the
        // cookie so that a server may forget everything between WELCOME and
        // INITIATE; like libzmq we keep the connection's state anyway (it
        // has a socket and a handshake timeout already) and check the cookie
        // against it, so a cookie from another connection is refused.
        let short = SecretKey::generate(&mut OsRng);
        let cookie_key = Zeroizing::new({
            let mut k = [0u8; 32];
            OsRng.fill_bytes(&mut k);
            k
        });
        let cookie_nonce = random16();
        let mut cookie_plain = Zeroizing::new([0u8; 64]);
        cookie_plain[..32].copy_from_slice(client_short.as_bytes());
        cookie_plain[32..].copy_from_slice(&short.to_bytes());
        let cookie = XSalsa20Poly1305::new((&*cookie_key).into())
            .encrypt(&nonce(b"COOKIE--", &cookie_nonce), &cookie_plain[..])
            .expect("64 bytes encrypt");

        let mut welcome_plain = Zeroizing::new(Vec::with_capacity(128));
        welcome_plain.extend_from_slice(short.public_key().as_bytes());
        welcome_plain.extend_from_slice(&cookie_nonce);
        welcome_plain.extend_from_slice(&cookie);
        let welcome_nonce = random16();
        let boxed = seal(
            &hello_key,
            &nonce(b"WELCOME-", &welcome_nonce),
            &welcome_plain,
        );
        push_command(out, b"WELCOME", &[&welcome_nonce, &boxed]);
        self.state = ServerState::ExpectInitiate {
            client_short,
            short,
            cookie_key,
        };
        Ok(())
    }

    /// INITIATE: cookie (96), nonce (8), Box[C + vouch nonce + vouch + metadata](C'->S').
    fn initiate(
        &mut self,
        data: &[u8],
        ctx: &Context<'_>,
        out: &mut SendBuffer,
    ) -> Result<Done, ProtocolError> {
        let ServerState::ExpectInitiate {
            client_short,
            short,
            cookie_key,
        } = &self.state
        else {
            unreachable!("checked by handle");
        };
        if data.len() < 96 + 8 + TAG + 128 {
            return Err(malformed("INITIATE", "shorter than 257 bytes"));
        }
        let cookie = XSalsa20Poly1305::new((&**cookie_key).into())
            .decrypt(&nonce(b"COOKIE--", &data[..16]), &data[16..96])
            .map(Zeroizing::new)
            .map_err(|_| crypto("the INITIATE cookie is not this connection's"))?;
        let mut expected = Zeroizing::new([0u8; 64]);
        expected[..32].copy_from_slice(client_short.as_bytes());
        expected[32..].copy_from_slice(&short.to_bytes());
        if !bool::from(cookie.ct_eq(&expected[..])) {
            return Err(crypto("the INITIATE cookie is not this connection's"));
        }
        let n = read_u64(&data[96..104]);
        let session = SalsaBox::new(client_short, short);
        let plain = open(
            &session,
            &short_nonce(b"CurveZMQINITIATE", n),
            &data[104..],
            "cannot open the client's INITIATE box",
        )?;
        let client_key = CurvePublicKey(key32(&plain));
        let vouch_key = SalsaBox::new(&PublicKey::from(client_key.0), short);
        let vouch = open(
            &vouch_key,
            &nonce(b"VOUCH---", &plain[32..48]),
            &plain[48..128],
            "cannot open the client's vouch",
        )?;
        let mut vouched = [0u8; 64];
        vouched[..32].copy_from_slice(client_short.as_bytes());
        vouched[32..].copy_from_slice(self.keys.public.as_bytes());
        if !bool::from(vouch.ct_eq(&vouched[..])) {
            return Err(crypto("the client's vouch is for other keys"));
        }
        let properties = Properties::parse(Bytes::copy_from_slice(&plain[128..]))?;
        let user_id = ctx
            .security
            .authenticate(ctx.peer, Credentials::Curve { client_key })?;

        let cipher = Cipher::new(
            client_short,
            short,
            *b"CurveZMQMESSAGES",
            READY_NONCE + 1,
            *b"CurveZMQMESSAGEC",
            n,
        )?;
        let mut metadata = BytesMut::new();
        ctx.metadata.encode(&mut metadata);
        let boxed = seal(
            &session,
            &short_nonce(b"CurveZMQREADY---", READY_NONCE),
            &metadata,
        );
        push_command(out, b"READY", &[&READY_NONCE.to_be_bytes(), &boxed]);
        self.state = ServerState::Finished;
        Ok(Done {
            properties,
            user_id,
            cipher: Some(cipher),
        })
    }
}

/// The data phase of a CURVE connection: what a connection driver does to
/// every frame once the handshake is over. NULL and PLAIN have none.
///
/// [`Handshake::take_cipher`](crate::Handshake::take_cipher) hands it over when
/// the handshake completes. [`split`](Self::split) it into a [`Sealer`] for the
/// sending path and an [`Opener`] for the receiving path, which may then live
/// behind different locks or on different threads.
///
/// ```
/// use bytes::BytesMut;
/// use conduit_proto::*;
///
/// // A CURVE handshake in memory (see `Handshake::with_security`).
/// let server_keys = CurveKeyPair::generate();
/// let sec = |mechanism| Security { mechanism, authenticator: None };
/// let mut client = Handshake::with_security(
///     LocalInfo::new(SocketType::Push),
///     sec(Mechanism::CurveClient { server_key: server_keys.public, keys: None }),
///     PeerAddress::default(),
/// );
/// let mut server = Handshake::with_security(
///     LocalInfo::new(SocketType::Pull),
///     sec(Mechanism::CurveServer { keys: server_keys }),
///     PeerAddress::default(),
/// );
/// let (mut to_server, mut to_client) = (BytesMut::new(), BytesMut::new());
/// let mut out = SendBuffer::new();
/// client.start(&mut out);
/// to_server.extend_from_slice(&out.to_vec());
/// out.clear();
/// server.start(&mut out);
/// to_client.extend_from_slice(&out.to_vec());
/// let (mut c_done, mut s_done) = (false, false);
/// while !(c_done && s_done) {
///     let mut out = SendBuffer::new();
///     s_done |= server.handle_input(&mut to_server).unwrap().is_some();
///     server.poll_output(&mut out);
///     to_client.extend_from_slice(&out.to_vec());
///     let mut out = SendBuffer::new();
///     c_done |= client.handle_input(&mut to_client).unwrap().is_some();
///     client.poll_output(&mut out);
///     to_server.extend_from_slice(&out.to_vec());
/// }
/// let (mut seal, _) = client.take_cipher().unwrap().split();
/// let (_, mut open) = server.take_cipher().unwrap().split();
///
/// // The data phase: seal on one side, open on the other.
/// let mut wire = SendBuffer::new();
/// seal.seal_message(&Message::from_frames(["two", "frames"]), &mut wire);
/// let mut input = BytesMut::from(&wire.to_vec()[..]);
/// let item = open.decode(&mut input).unwrap();
/// assert_eq!(item, Some(Item::Message(Message::from_frames(["two", "frames"]))));
/// ```
#[derive(Debug)]
pub struct Cipher {
    sealer: Sealer,
    opener: Opener,
}

impl Cipher {
    /// Both halves use the session key precomputed from (peer's C' or S',
    /// our short-term secret), each holding its own copy, zeroized on drop.
    /// A peer key that makes a weak shared secret is refused, as libsodium
    /// refuses it for libzmq.
    fn new(
        peer_short: &PublicKey,
        our_short: &SecretKey,
        send_prefix: [u8; 16],
        send_next: u64,
        recv_prefix: [u8; 16],
        recv_last: u64,
    ) -> Result<Cipher, ProtocolError> {
        let our_secret = Zeroizing::new(our_short.to_bytes());
        let key = SessionKey::new(peer_short.as_bytes(), &our_secret)
            .ok_or_else(|| crypto("the peer's short-term key makes a weak shared secret"))?;
        Ok(Cipher {
            sealer: Sealer {
                key: key.clone(),
                prefix: send_prefix,
                next: send_next,
            },
            opener: Opener {
                key,
                prefix: recv_prefix,
                last: recv_last,
                assembler: Assembler::new(DEFAULT_MAX_MESSAGE_SIZE),
            },
        })
    }

    /// The sending half and the receiving half.
    pub fn split(self) -> (Sealer, Opener) {
        (self.sealer, self.opener)
    }
}

/// Seals outgoing frames into MESSAGE commands, each with the next nonce.
///
/// Call it for every message and every command (PING, PONG, SUBSCRIBE, ERROR...)
/// sent after the handshake, in the order they go on the wire, and append
/// nothing else to that stream: the peer opens boxes in nonce order, so what
/// is sealed must be written in the order it was sealed. Taking `&mut self`
/// for each frame is what keeps a nonce from ever being used twice.
pub struct Sealer {
    key: SessionKey,
    prefix: [u8; 16],
    next: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("next_nonce", &self.next)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Appends every frame of `msg`, each sealed in a MESSAGE command, to `out`.
    pub fn seal_message(&mut self, msg: &Message, out: &mut SendBuffer) {
        let frames = msg.frames();
        for (i, frame) in frames.iter().enumerate() {
            let flags = if i + 1 < frames.len() { BOX_MORE } else { 0 };
            self.seal_frame(flags, frame, out);
        }
    }

    /// Appends `cmd`, sealed in a MESSAGE command with the COMMAND flag, to `out`.
    pub fn seal_command(&mut self, cmd: &Command, out: &mut SendBuffer) {
        let mut encoded = BytesMut::new();
        cmd.encode(&mut encoded);
        let Ok(Some((_, header_len))) = FrameHeader::parse(&encoded) else {
            unreachable!("Command::encode writes a whole frame");
        };
        self.seal_frame(BOX_COMMAND, &encoded[header_len..], out);
    }

    /// Writes the MESSAGE frame (header, name, nonce, MAC, then flags and
    /// `body` sealed in place) straight into the send buffer's tail, where it
    /// is written from: no buffer of its own, and no copy but the one that
    /// sealing needs anyway. A large frame too: the tail's memory is reused
    /// from one message to the next, where a buffer per message would cost a
    /// page fault per 4 KiB.
    fn seal_frame(&mut self, flags: u8, body: &[u8], out: &mut SendBuffer) {
        let n = self.next;
        // 2^64 frames will not be sent; if they were, stopping beats reusing a nonce.
        self.next = n.checked_add(1).expect("CURVE nonce space exhausted");
        let frame_len = MESSAGE_OVERHEAD + body.len();
        let header = FrameHeader {
            more: false,
            command: false,
            len: frame_len as u64,
        };
        let mut encoded_header = [0; MAX_HEADER_LEN];
        let header_len = header.encode(&mut encoded_header);
        let nonce = message_nonce(&self.prefix, n);
        out.push_in_tail(|buf| {
            buf.reserve(header_len + frame_len);
            buf.put_slice(&encoded_header[..header_len]);
            buf.put_slice(MESSAGE_NAME);
            buf.put_u64(n);
            let mac_at = buf.len();
            buf.put_bytes(0, MAC_LEN);
            buf.put_u8(flags);
            buf.put_slice(body);
            let (mac, plain) = buf[mac_at..].split_at_mut(MAC_LEN);
            mac.copy_from_slice(&self.key.seal_in_place(&nonce, plain));
        });
    }
}

/// Opens incoming MESSAGE commands and assembles their frames into
/// [`Item`]s, as [`Decoder`](crate::Decoder) does for clear traffic.
///
/// Every frame after a CURVE handshake must be a MESSAGE whose nonce is
/// greater than the last one's (a replayed or reordered box is refused) and
/// whose box opens with this connection's keys. Sizes are checked against the
/// maximum message size before any memory is reserved.
pub struct Opener {
    key: SessionKey,
    prefix: [u8; 16],
    last: u64,
    assembler: Assembler,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opener")
            .field("last_nonce", &self.last)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// Refuses messages larger than `bytes` in total (default 64 MiB).
    pub fn set_max_message_size(&mut self, bytes: usize) {
        self.assembler.set_max_message_size(bytes);
    }

    /// Whether no frames of a multipart message are held: a stream that ends
    /// while this is false was truncated.
    pub fn is_between_messages(&self) -> bool {
        self.assembler.is_between_messages()
    }

    /// Decodes the next item from the front of `src`, consuming its bytes:
    /// `Ok(None)` when more bytes are needed (room for them reserved in
    /// `src`), an error when the stream is corrupt, forged or replayed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Item>, ProtocolError> {
        loop {
            let Some((header, header_len)) = FrameHeader::parse(src)? else {
                // Room for the rest of a header begun; none for one not begun:
                // the messages just split off still share this buffer, so a
                // reservation here would allocate a whole new one per read, which
                // the reader (`read_once`) then drops unused when the peer is idle.
                if !src.is_empty() {
                    src.reserve(MAX_HEADER_LEN);
                }
                return Ok(None);
            };
            // Commands too: a MESSAGE's box hides what it carries until
            // it is opened, and no box is buffered past the limit.
            let payload = header.len.saturating_sub(MESSAGE_OVERHEAD as u64);
            self.assembler.check_size(payload)?;
            // Within the limit checked above, so it fits in usize.
            let frame_len = header_len + header.len as usize;
            if src.len() < frame_len {
                src.reserve(frame_len - src.len());
                return Ok(None);
            }
            src.advance(header_len);
            let mut body = src.split_to(header.len as usize);
            if !body.starts_with(MESSAGE_NAME) {
                return Err(malformed(
                    "MESSAGE",
                    "a frame after the CURVE handshake is not a MESSAGE command",
                ));
            }
            if body.len() < MESSAGE_OVERHEAD {
                return Err(malformed("MESSAGE", "shorter than a nonce and a box"));
            }
            let n = read_u64(&body[8..16]);
            if n <= self.last {
                return Err(ProtocolError::ReplayedNonce {
                    nonce: n,
                    last: self.last,
                });
            }
            let mac: [u8; MAC_LEN] = body[16..32].try_into().expect("16 bytes");
            self.key
                .open_in_place(&message_nonce(&self.prefix, n), &mut body[32..], &mac)
                .map_err(|()| crypto("a MESSAGE box does not open with this connection's keys"))?;
            self.last = n;
            let flags = body[32];
            let frame = body.split_off(33).freeze();
            if flags & BOX_COMMAND != 0 {
                self.assembler.check_command()?;
                if flags & BOX_MORE != 0 {
                    return Err(ProtocolError::CommandWithMore);
                }
                return Command::parse(frame).map(|c| Some(Item::Command(c)));
            }
            // Its size passed with the header; the count is judged only now
            // that the box is known to hold a data frame.
            self.assembler.check_frame_count()?;
            if let Some(item) = self.assembler.push(flags & BOX_MORE != 0, frame) {
                return Ok(Some(item));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::MAX_FRAMES;

    /// A sealer and the opener of its boxes, keyed as after a handshake.
    fn pair() -> (Sealer, Opener) {
        let (ours, theirs) = (
            SecretKey::generate(&mut OsRng),
            SecretKey::generate(&mut OsRng),
        );
        let prefix = *b"CurveZMQMESSAGEC";
        let (seal, _) = Cipher::new(&theirs.public_key(), &ours, prefix, 1, prefix, 0)
            .unwrap()
            .split();
        let (_, open) = Cipher::new(&ours.public_key(), &theirs, prefix, 1, prefix, 0)
            .unwrap()
            .split();
        (seal, open)
    }

    /// PING's body as `seal_command` seals it.
    fn ping() -> Vec<u8> {
        let mut encoded = BytesMut::new();
        Command::Ping {
            ttl: 0,
            context: Bytes::new(),
        }
        .encode(&mut encoded);
        let Ok(Some((_, header_len))) = FrameHeader::parse(&encoded) else {
            unreachable!("Command::encode writes a whole frame");
        };
        encoded[header_len..].to_vec()
    }

    /// Opens everything in `wire`: the items, then the error or `None` if
    /// every byte was used.
    fn open_all(open: &mut Opener, wire: &[u8]) -> (Vec<Item>, Option<ProtocolError>) {
        let mut src = BytesMut::from(wire);
        let mut items = Vec::new();
        loop {
            match open.decode(&mut src) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return (items, None),
                Err(e) => return (items, Some(e)),
            }
        }
    }

    #[test]
    fn frames_with_more_make_one_message_and_truncation_shows() {
        let (mut seal, mut open) = pair();
        let mut wire = SendBuffer::new();
        seal.seal_frame(BOX_MORE, b"a", &mut wire);
        assert_eq!(open_all(&mut open, &wire.to_vec()), (vec![], None));
        assert!(!open.is_between_messages());
        let mut wire = SendBuffer::new();
        seal.seal_frame(0, b"b", &mut wire);
        seal.seal_frame(0, b"c", &mut wire);
        let items = vec![
            Item::Message(Message::from_frames(["a", "b"])),
            Item::Message(Message::from("c")),
        ];
        assert_eq!(open_all(&mut open, &wire.to_vec()), (items, None));
        assert!(open.is_between_messages());
    }

    #[test]
    fn a_command_inside_a_message_or_with_more_is_refused() {
        let (mut seal, mut open) = pair();
        let mut wire = SendBuffer::new();
        seal.seal_frame(BOX_COMMAND, &ping(), &mut wire);
        seal.seal_frame(BOX_MORE, b"a", &mut wire);
        seal.seal_frame(BOX_COMMAND, &ping(), &mut wire);
        let (items, err) = open_all(&mut open, &wire.to_vec());
        assert!(matches!(items[..], [Item::Command(Command::Ping { .. })]));
        assert_eq!(err, Some(ProtocolError::CommandInsideMessage));

        let (mut seal, mut open) = pair();
        let mut wire = SendBuffer::new();
        seal.seal_frame(BOX_COMMAND | BOX_MORE, &ping(), &mut wire);
        assert_eq!(
            open_all(&mut open, &wire.to_vec()),
            (vec![], Some(ProtocolError::CommandWithMore))
        );
    }

    #[test]
    fn the_size_limit_counts_every_frame_and_the_announced_box() {
        let (mut seal, mut open) = pair();
        open.set_max_message_size(10);
        let mut wire = SendBuffer::new();
        seal.seal_frame(BOX_MORE, b"123456", &mut wire);
        seal.seal_frame(0, b"7890", &mut wire);
        seal.seal_frame(BOX_MORE, b"123456", &mut wire);
        seal.seal_frame(0, b"78901", &mut wire);
        let (items, err) = open_all(&mut open, &wire.to_vec());
        assert_eq!(
            items,
            [Item::Message(Message::from_frames(["123456", "7890"]))]
        );
        assert_eq!(
            err,
            Some(ProtocolError::MessageTooLarge { size: 11, max: 10 })
        );
    }

    #[test]
    fn frames_per_message_are_bounded_even_when_empty() {
        let (mut seal, mut open) = pair();
        let mut wire = SendBuffer::new();
        for _ in 0..MAX_FRAMES - 1 {
            seal.seal_frame(BOX_MORE, b"", &mut wire);
        }
        seal.seal_frame(0, b"", &mut wire);
        let (items, err) = open_all(&mut open, &wire.to_vec());
        assert!(matches!(&items[..], [Item::Message(m)] if m.frame_count() == MAX_FRAMES));
        assert_eq!(err, None);

        let mut wire = SendBuffer::new();
        for _ in 0..MAX_FRAMES {
            seal.seal_frame(BOX_MORE, b"", &mut wire);
        }
        assert_eq!(open_all(&mut open, &wire.to_vec()), (vec![], None));
        let mut extra = SendBuffer::new();
        seal.seal_frame(BOX_MORE, b"", &mut extra);
        let extra = extra.to_vec();
        // The frame count is judged once a box has opened: a forged one
        // there is refused as forged.
        let mut forged = extra.clone();
        forged[extra.len() - 1] ^= 1;
        assert!(matches!(
            open_all(&mut open, &forged),
            (_, Some(ProtocolError::Cryptographic(_)))
        ));
        assert_eq!(
            open_all(&mut open, &extra),
            (
                vec![],
                Some(ProtocolError::TooManyFrames { max: MAX_FRAMES })
            )
        );
        assert!(!open.is_between_messages());
    }
}
