//! Typed messages: any serde value, as one frame in postcard's format, with
//! descriptors (files, channels, pipe ends) riding along as [`Descriptor`]s.
//!
//! Why postcard: its format is specified and stable since 1.0 (a value sent by
//! one build decodes in another), compact (variable-length integers, no field
//! names), fast, maintained, and small (serde plus one crate). Decoding takes a
//! byte slice, so every length it reads is checked against the bytes that are
//! left, and serde caps what a collection reserves ahead; with the channel's
//! `max_message_size`, a hostile message costs bounded memory and gives
//! [`Error::Decode`], never a panic. postcard itself does not bound how deeply a
//! value nests, and decodes by recursion: `depth` counts the levels and refuses
//! a value nested more than 128 deep, before a hostile one can run the stack
//! out.
//!
//! A [`Descriptor`] serializes as an index into the message's descriptors (kept
//! in a thread-local list while `send_value` encodes, and while `recv_value`
//! decodes), the way ipc-channel does.

use std::cell::{Cell, RefCell};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use bytes::Bytes;
use conduit_proto::{Greeting, Message, PeerInfo, Properties, SocketType};
use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::channel::{Channel, Handover};
use crate::error::{Error, RecvError, RecvTimeoutError, TryRecvError};
use crate::pipe::{PipeReceiver, PipeSender};

mod depth;
use depth::{Bounded, Depth, MAX_DEPTH};

thread_local! {
    /// Descriptors of the value being encoded on this thread, if any.
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    /// Descriptors of the message being decoded on this thread, if any.
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

thread_local! {
    /// The size of the last value this thread encoded, give or take: the
    /// buffer the next encoding starts with.
    static SIZE_HINT: Cell<usize> = const { Cell::new(256) };
}

/// Encodes `value`; returns the frame and the descriptors it refers to.
///
/// Encodes into a slice of the size last seen on this thread, doubling it
/// until the value fits: writing into a slice skips a capacity check per
/// byte, and costs a fraction of growing a vector (a 1 KiB struct encodes
/// in an eighth of the time here).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<(Bytes, Vec<OwnedFd>), Error> {
    let outer = OUTGOING.with(|o| o.borrow_mut().take());
    let mut cap = SIZE_HINT.with(Cell::get);
    let result = loop {
        // Descriptors of a try that ran out of room are dropped (closed).
        OUTGOING.with(|o| *o.borrow_mut() = Some(Vec::new()));
        let mut buf = vec![0u8; cap];
        match postcard::to_slice(value, &mut buf) {
            Ok(used) => {
                let len = used.len();
                buf.truncate(len);
                SIZE_HINT.with(|h| h.set((len + len / 4).max(256)));
                break Ok(buf);
            }
            Err(postcard::Error::SerializeBufferFull) if cap < isize::MAX as usize / 2 => {
                cap *= 2;
            }
            Err(e) => break Err(Error::Encode(e.to_string())),
        }
    };
    let fds = OUTGOING.with(|o| std::mem::replace(&mut *o.borrow_mut(), outer));
    Ok((Bytes::from(result?), fds.unwrap_or_default()))
}

/// Decodes a message of one frame as a `T`, giving it the descriptors that
/// came with the message. Descriptors the value does not take are closed.
pub(crate) fn decode<T: DeserializeOwned>(msg: Message, fds: Vec<OwnedFd>) -> Result<T, Error> {
    let [frame] = msg.frames() else {
        return Err(Error::Decode(format!(
            "a typed message has one frame, this one has {}",
            msg.frame_count()
        )));
    };
    let outer = INCOMING.with(|i| i.borrow_mut().replace(fds.into_iter().map(Some).collect()));
    let depth = Depth::new(MAX_DEPTH);
    let mut de = postcard::Deserializer::from_bytes(frame);
    let decoded =
        T::deserialize(Bounded::new(&mut de, &depth)).and_then(|v| Ok((v, de.finalize()?)));
    INCOMING.with(|i| *i.borrow_mut() = outer);
    match decoded {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(Error::Decode(format!(
            "{} bytes left over after the value",
            rest.len()
        ))),
        Err(_) if depth.exceeded() => Err(Error::Decode(format!(
            "the value nests more than {MAX_DEPTH} levels deep"
        ))),
        Err(e) => Err(Error::Decode(e.to_string())),
    }
}

/// A descriptor that travels inside a typed message: a file, any `OwnedFd`, a
/// [`Channel`], a [`PipeSender`] or a [`PipeReceiver`]. Put it in a struct you
/// send with [`Channel::send_value`]; it arrives open in the receiving process,
/// close-on-exec, with the message.
///
/// Sending a `Descriptor` sends a duplicate: the one you keep still refers to
/// the same open file (dropping it closes only your copy). A channel or pipe
/// end wrapped in one has been handed over already: it is no longer usable
/// here.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use conduit::{Channel, Descriptor};
///
/// #[derive(Serialize, Deserialize)]
/// struct Job { name: String, reply: Descriptor }
///
/// let (to_worker, worker) = Channel::pair()?;
/// let (mine, theirs) = Channel::pair()?;
/// to_worker.send_value(&Job { name: "sum".into(), reply: Descriptor::from_channel(theirs)? })?;
///
/// let job: Job = worker.recv_value()?;      // in the worker process
/// job.reply.into_channel()?.send_value(&42u64)?;
///
/// assert_eq!(mine.recv_value::<u64>()?, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Descriptor {
    fd: OwnedFd,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Fd,
    Channel {
        peer: PeerInfo,
        buffered: Bytes,
        ledger: Option<OwnedFd>,
    },
    PipeSender,
    PipeReceiver {
        buffered: Bytes,
    },
}

impl From<OwnedFd> for Descriptor {
    fn from(fd: OwnedFd) -> Descriptor {
        Descriptor { fd, kind: Kind::Fd }
    }
}

impl From<File> for Descriptor {
    fn from(file: File) -> Descriptor {
        OwnedFd::from(file).into()
    }
}

impl Descriptor {
    /// Hands `channel` over: everything queued on it is written first, and it
    /// must have no message read but not yet received. It must be over a Unix
    /// socket (a pair, `ipc://`).
    pub fn from_channel(channel: Channel) -> Result<Descriptor, Error> {
        let Handover {
            fd,
            peer,
            buffered,
            ledger,
        } = channel.hand_over()?;
        Ok(Descriptor {
            fd,
            kind: Kind::Channel {
                peer,
                buffered,
                ledger,
            },
        })
    }

    /// Hands a pipe's sending end over, after writing what is queued on it.
    pub fn from_pipe_sender(sender: PipeSender) -> Result<Descriptor, Error> {
        Ok(Descriptor {
            fd: sender.hand_over()?,
            kind: Kind::PipeSender,
        })
    }

    /// Hands a pipe's receiving end over, with anything read but not received.
    pub fn from_pipe_receiver(receiver: PipeReceiver) -> Result<Descriptor, Error> {
        let (fd, buffered) = receiver.hand_over()?;
        Ok(Descriptor {
            fd,
            kind: Kind::PipeReceiver { buffered },
        })
    }

    /// The descriptor itself, whatever it was sent as.
    pub fn into_owned_fd(self) -> OwnedFd {
        self.fd
    }

    /// The descriptor as a `File`.
    pub fn into_file(self) -> File {
        self.fd.into()
    }

    /// The channel that was handed over, open and past its handshake.
    pub fn into_channel(self) -> Result<Channel, Error> {
        match self.kind {
            Kind::Channel {
                peer,
                buffered,
                ledger,
            } => Channel::adopt(Handover {
                fd: self.fd,
                peer,
                buffered,
                ledger,
            }),
            _ => Err(self.not("a channel")),
        }
    }

    /// The pipe's sending end that was handed over.
    pub fn into_pipe_sender(self) -> Result<PipeSender, Error> {
        match self.kind {
            Kind::PipeSender => PipeSender::from_fd(self.fd),
            _ => Err(self.not("a pipe's sending end")),
        }
    }

    /// The pipe's receiving end that was handed over.
    pub fn into_pipe_receiver(self) -> Result<PipeReceiver, Error> {
        match self.kind {
            Kind::PipeReceiver { buffered } => PipeReceiver::adopt(self.fd, &buffered),
            _ => Err(self.not("a pipe's receiving end")),
        }
    }

    fn not(&self, what: &str) -> Error {
        Error::Attachment(format!("this descriptor was not sent as {what}"))
    }
}

/// A descriptor's form inside the encoded value.
#[derive(Serialize, Deserialize)]
struct Wire {
    index: u32,
    kind: WireKind,
}

#[derive(Serialize, Deserialize)]
enum WireKind {
    Fd,
    Channel {
        socket_type: String,
        identity: Vec<u8>,
        properties: Vec<(String, Vec<u8>)>,
        version: (u8, u8),
        buffered: Vec<u8>,
        /// The index of the peer's ledger of shared regions, if any.
        ledger: Option<u32>,
    },
    PipeSender,
    PipeReceiver {
        buffered: Vec<u8>,
    },
}

impl Serialize for Descriptor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let push = |fd: std::os::fd::BorrowedFd<'_>| -> Result<u32, S::Error> {
            let copy = fd.try_clone_to_owned().map_err(S::Error::custom)?;
            OUTGOING.with(|o| match &mut *o.borrow_mut() {
                Some(fds) => {
                    fds.push(copy);
                    Ok(fds.len() as u32 - 1)
                }
                None => Err(S::Error::custom(
                    "a Descriptor can only be encoded by conduit's send_value",
                )),
            })
        };
        let index = push(self.fd.as_fd())?;
        let kind = match &self.kind {
            Kind::Fd => WireKind::Fd,
            Kind::PipeSender => WireKind::PipeSender,
            Kind::PipeReceiver { buffered } => WireKind::PipeReceiver {
                buffered: buffered.to_vec(),
            },
            Kind::Channel {
                peer,
                buffered,
                ledger,
            } => WireKind::Channel {
                socket_type: peer.socket_type.as_str().to_string(),
                identity: peer.identity.to_vec(),
                properties: peer
                    .properties
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_vec()))
                    .collect(),
                version: (peer.greeting.major, peer.greeting.minor),
                buffered: buffered.to_vec(),
                ledger: ledger.as_ref().map(|l| push(l.as_fd())).transpose()?,
            },
        };
        Wire { index, kind }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Descriptor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Descriptor, D::Error> {
        let wire = Wire::deserialize(deserializer)?;
        let take = |index: u32| -> Result<OwnedFd, D::Error> {
            INCOMING.with(|i| match &mut *i.borrow_mut() {
                Some(fds) => fds
                    .get_mut(index as usize)
                    .and_then(Option::take)
                    .ok_or_else(|| {
                        D::Error::custom(format!(
                            "descriptor {index} is not in the message, or taken twice"
                        ))
                    }),
                None => Err(D::Error::custom(
                    "a Descriptor can only be decoded by conduit's recv_value",
                )),
            })
        };
        let fd = take(wire.index)?;
        let kind = match wire.kind {
            WireKind::Fd => Kind::Fd,
            WireKind::PipeSender => Kind::PipeSender,
            WireKind::PipeReceiver { buffered } => Kind::PipeReceiver {
                buffered: buffered.into(),
            },
            WireKind::Channel {
                socket_type,
                identity,
                properties,
                version,
                buffered,
                ledger,
            } => {
                let socket_type = SocketType::from_wire(socket_type.as_bytes())
                    .ok_or_else(|| D::Error::custom("unknown socket type"))?;
                let mut props = Properties::new();
                for (name, value) in properties {
                    props.insert(&name, value).map_err(D::Error::custom)?;
                }
                Kind::Channel {
                    peer: PeerInfo {
                        socket_type,
                        identity: identity.into(),
                        properties: props,
                        greeting: Greeting {
                            major: version.0,
                            minor: version.1,
                        },
                        // Only NULL channels travel (see `Channel::hand_over`).
                        user_id: None,
                    },
                    buffered: buffered.into(),
                    ledger: ledger.map(take).transpose()?,
                }
            }
        };
        Ok(Descriptor { fd, kind })
    }
}

impl Channel {
    /// Sends any serde value as one message (postcard's format); descriptors
    /// inside it ([`Descriptor`]) travel with it.
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    /// struct Point { x: i32, y: i32 }
    ///
    /// let (a, b) = conduit::Channel::pair()?;
    /// a.send_value(&Point { x: 1, y: -2 })?;
    /// assert_eq!(b.recv_value::<Point>()?, Point { x: 1, y: -2 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_value<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let (frame, fds) = encode(value)?;
        if fds.is_empty() {
            self.send(frame).map_err(|e| e.error)
        } else {
            self.send_fds(frame, fds)
        }
    }

    /// Receives the next message as a `T`. A message that is not a valid `T`
    /// gives [`Error::Decode`] (inside [`RecvError::Failed`]) and is dropped;
    /// the channel stays usable.
    pub fn recv_value<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        let (msg, fds) = self.recv_fds()?;
        decode(msg, fds).map_err(RecvError::Failed)
    }

    /// [`recv_value`](Self::recv_value), waiting at most `timeout`.
    pub fn recv_value_timeout<T: DeserializeOwned>(
        &self,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        let (msg, fds) = self.recv_fds_timeout(timeout)?;
        decode(msg, fds).map_err(RecvTimeoutError::Failed)
    }
}

impl PipeSender {
    /// Sends any serde value as one message. Descriptors cannot travel through
    /// a pipe: a value holding a [`Descriptor`] gives [`Error::Attachment`].
    pub fn send_value<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let (frame, fds) = encode(value)?;
        if !fds.is_empty() {
            return Err(Error::Attachment(
                "descriptors cannot travel through a pipe; use a channel".into(),
            ));
        }
        self.send(frame).map_err(|e| e.error)
    }
}

impl PipeReceiver {
    /// Receives the next message as a `T` (see [`Channel::recv_value`]).
    pub fn recv_value<T: DeserializeOwned>(&self) -> Result<T, RecvError> {
        decode(self.recv()?, Vec::new()).map_err(RecvError::Failed)
    }

    /// Receives a message as a `T` only if one has arrived whole already.
    pub fn try_recv_value<T: DeserializeOwned>(&self) -> Result<T, TryRecvError> {
        decode(self.try_recv()?, Vec::new()).map_err(TryRecvError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_round_trips_with_its_descriptors() {
        let file = tempfile::tempfile().unwrap();
        let (frame, fds) = encode(&("x", Descriptor::from(file), 7u8)).unwrap();
        assert_eq!(fds.len(), 1);
        let msg = Message::from_frames([frame]);
        let (s, d, n): (String, Descriptor, u8) = decode(msg, fds).unwrap();
        assert_eq!((s.as_str(), n), ("x", 7));
        assert!(d.into_file().metadata().unwrap().is_file());
    }

    #[test]
    fn values_larger_than_the_last_one_still_encode_whole() {
        for len in [0usize, 10, 100_000, 3, 1 << 20] {
            let value = vec![7u32; len];
            let (frame, _) = encode(&value).unwrap();
            let back: Vec<u32> = decode(Message::from_frames([frame]), Vec::new()).unwrap();
            assert_eq!(back, value);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_to_a_value_or_an_error(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        ) {
            type Value = (String, Vec<u64>, Option<(bool, f32)>, Vec<Vec<u8>>);
            let msg = Message::from_frames([Bytes::from(bytes)]);
            if let Err(e) = decode::<Value>(msg, Vec::new()) {
                proptest::prop_assert!(matches!(e, Error::Decode(_)));
            }
        }
    }

    #[test]
    fn descriptors_outside_conduit_are_refused() {
        let file = tempfile::tempfile().unwrap();
        assert!(postcard::to_stdvec(&Descriptor::from(file)).is_err());
    }

    #[test]
    fn a_hostile_index_or_count_is_an_error() {
        // A descriptor index with no descriptor behind it.
        let (frame, _fds) = encode(&Descriptor::from(tempfile::tempfile().unwrap())).unwrap();
        let err = decode::<Descriptor>(Message::from_frames([frame]), Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
        // A vector claiming 2^60 elements in a few bytes.
        let frame = Bytes::from_static(b"\xff\xff\xff\xff\xff\xff\xff\xff\x0f\x01");
        let err = decode::<Vec<u64>>(Message::from_frames([frame]), Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
        // Trailing bytes, two frames.
        let err = decode::<u8>(Message::from_frames([&b"\x01\x02"[..]]), Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
        let err = decode::<u8>(Message::from_frames(["\x01", "\x01"]), Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err}");
    }
}
