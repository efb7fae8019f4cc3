//! A channel's attachments: descriptors and shared-memory frames inside messages
//! (wire form in `fd_passing`), handing a whole channel to another process, and
//! the one-shot named server a child connects to.
//!
//! A child module of `channel`, so the blocking send and receive paths stay in
//! one place and this file only adds to them.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use conduit_proto::{Command, Message, PeerInfo, SendBuffer};

use super::{Channel, ChannelBuilder, HandshakeState, Listener, NotReady};
use crate::error::{AcceptTimeoutError, Error, RecvError, RecvTimeoutError};
use crate::fd_passing::{self, ATTACH_COMMAND, Header, MAX_FDS_PER_MESSAGE};
use crate::options::Options;
use crate::reader::{Reader, RecvFail};
use crate::transport::socket::{Family, SocketStream};
use crate::transport::{Transport, Wait};
use crate::writer::{SendFail, Writer};

/// What a channel from a [`ChannelBuilder`] announces and does by default: it
/// takes attachments, and sends large frames through shared memory.
pub(super) fn announce(options: &mut Options) {
    options
        .local
        .properties
        .insert(fd_passing::PROPERTY, Bytes::from_static(b"1"))
        .expect("a valid property name");
    options.shm_threshold = Some(crate::shm::DEFAULT_SHM_THRESHOLD);
}

impl ChannelBuilder {
    /// Frames of at least `bytes` go to a conduit peer on the same host through
    /// shared memory instead of the socket: copied once into a region the
    /// receiver maps without a copy (or not copied at all from a
    /// [`SharedBytesMut`](crate::SharedBytesMut)). `None` turns this off.
    /// Default: 256 KiB. A channel that sends such frames keeps up to 128 MiB
    /// of regions to reuse until it is dropped, and one that receives them
    /// keeps up to 128 MiB of its peer's reused regions mapped (a mapping per
    /// frame costs as much as the copy). Peers that are not conduit (libzmq),
    /// and TCP, always get the bytes inline.
    pub fn shared_memory_threshold(mut self, bytes: Option<usize>) -> Self {
        self.options.shm_threshold = bytes.map(|b| b.max(1));
        self
    }
}

/// A channel's state when it leaves this process inside a message.
#[derive(Debug)]
pub(crate) struct Handover {
    pub(crate) fd: OwnedFd,
    pub(crate) peer: PeerInfo,
    /// Bytes already read from the peer and not yet decoded.
    pub(crate) buffered: Bytes,
    /// The peer's ledger of shared regions, if it sent one (see `shm_pool`).
    pub(crate) ledger: Option<OwnedFd>,
}

impl Channel {
    /// Whether the peer takes attachments on this stream.
    fn takes_attachments(&self) -> bool {
        self.stream.family() == Family::Unix
            && self
                .peer
                .get()
                .and_then(|p| p.properties.get(fd_passing::PROPERTY))
                .is_some_and(|v| v.first() == Some(&b'1'))
    }

    /// Whether `message` should go through shared memory.
    pub(super) fn goes_shared(&self, message: &Message) -> bool {
        match self.options.shm_threshold {
            Some(t) => message.frames().iter().any(|f| f.len() >= t) && self.takes_attachments(),
            None => false,
        }
    }

    /// Sends `message` with its large frames in shared memory.
    pub(super) fn send_shared(&self, message: Message, wait: Wait) -> Result<(), SendFail> {
        match self.send_attached(&message, Vec::new(), wait) {
            Ok(()) => Ok(()),
            // The peer has not read enough of what we shared yet: like a full
            // queue, nothing was sent.
            Err(e)
                if !self.writer.is_broken()
                    && e.io_error().is_some_and(|io| {
                        matches!(
                            io.kind(),
                            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                        )
                    }) =>
            {
                Err(SendFail::WouldBlock(message))
            }
            Err(error) => Err(SendFail::Broken(crate::error::SendError { message, error })),
        }
    }

    /// Writes `message` with `fds` attached, and its frames at or above the
    /// threshold in shared memory, after everything queued before it.
    fn send_attached(&self, message: &Message, fds: Vec<OwnedFd>, wait: Wait) -> Result<(), Error> {
        if fds.len() > MAX_FDS_PER_MESSAGE {
            return Err(Error::Attachment(format!(
                "{} descriptors in one message; at most {MAX_FDS_PER_MESSAGE}",
                fds.len()
            )));
        }
        self.ensure_ready(wait)
            .map_err(|f| f.into_error(self.options.handshake_timeout))?;
        if !self.takes_attachments() {
            return Err(Error::Attachment(
                "the peer cannot receive descriptors (it is not conduit, or not on a Unix socket)"
                    .into(),
            ));
        }
        let threshold = self.options.shm_threshold.unwrap_or(usize::MAX);
        let mut header = Header {
            user_fds: fds.len(),
            ledger: false,
            shared: Vec::new(),
        };
        let mut ledger = None;
        let mut regions = Vec::new();
        let mut wire = Message::new();
        // Held until the message is written: a ledger must reach the peer before
        // any frame that counts on it, whichever thread sends what.
        let inbox = self.stream.inbox();
        let mut pool = inbox.pool.lock().unwrap_or_else(|e| e.into_inner());
        let mut pooled_slots = Vec::new();
        // Bytes of new regions: pooled ones and SharedBytesMut ones exist anyway.
        let mut fresh = 0;
        // Whether the peer has messages to read yet (see `Pool::place`).
        let behind = || fd_passing::unread_bytes(self.stream.as_fd()).is_ok_and(|n| n > 0);
        let deadline = match wait {
            Wait::Forever => None,
            Wait::Never => Some(std::time::Instant::now()),
            Wait::Until(d) => Some(d),
        };
        for (i, frame) in message.frames().iter().enumerate() {
            if frame.len() >= threshold && header.shared.len() < fd_passing::MAX_SHARED_FRAMES {
                let placed = match crate::shm::find(frame) {
                    Some((fd, offset)) => Ok((fd, offset, crate::shm_pool::NO_SLOT)),
                    None => match pool.place(frame, behind, deadline) {
                        Ok(Some(placed)) => {
                            if placed.ledger.is_some() {
                                ledger = placed.ledger;
                                header.ledger = true;
                            }
                            pooled_slots.push(placed.slot);
                            Ok((placed.fd, 0, placed.slot))
                        }
                        Ok(None) => {
                            fresh += frame.len();
                            crate::shm::region_with(frame)
                                .map(|fd| (fd, 0, crate::shm_pool::NO_SLOT))
                        }
                        Err(e) => Err(e),
                    },
                };
                let (region, offset, slot) = match placed {
                    Ok(placed) => placed,
                    Err(e) => {
                        // Earlier frames' regions will not be sent either.
                        pool.undo(&pooled_slots, header.ledger);
                        return Err(e);
                    }
                };
                regions.push(region);
                header.shared.push((i, offset, frame.len(), slot));
                wire.push_back(Bytes::new());
            } else {
                wire.push_back(frame.clone());
            }
        }
        wire.push_front(header.encode());
        let undo = |pool: &mut crate::shm_pool::Pool| pool.undo(&pooled_slots, header.ledger);
        if fresh > 0 {
            if let Err(e) = inbox.before_shared_send(self.stream.as_fd(), fresh, wait) {
                undo(&mut pool);
                return Err(e);
            }
        }
        let mut out = SendBuffer::new();
        out.push_command(&Command::Unknown {
            name: Bytes::from_static(ATTACH_COMMAND),
        });
        out.push_message(&wire);
        let all: Vec<BorrowedFd<'_>> = fds
            .iter()
            .map(|f| f.as_fd())
            .chain(ledger.iter().map(|f| f.as_fd()))
            .chain(regions.iter().map(|f| f.as_fd()))
            .collect();
        let stream = &self.stream;
        let sent = self.writer.send_exclusive(wait, |wait| {
            let mut slices = vec![std::io::IoSlice::new(&[]); 1 + 2 * wire.frame_count() + 4];
            let n = out.io_slices(&mut slices);
            stream.write_all_with_fds(&slices[..n], &all, wait)
        });
        if sent.is_err() && !self.writer.is_broken() {
            // Nothing was written: the regions were not sent after all.
            undo(&mut pool);
        }
        sent
        // Our copies of the descriptors close here; the peer has its own.
    }

    /// Receives the next message with the descriptors that came with it (the
    /// blocking path of every `recv` on a channel).
    /// Commands are shown to `hook` first, as in `recv_hooked`.
    pub(super) fn recv_attached(
        &self,
        wait: Wait,
        mut hook: impl FnMut(&Command) -> Result<(), Error>,
    ) -> Result<(Message, Vec<OwnedFd>), RecvFail> {
        match self.ensure_ready(wait) {
            Ok(_) => {}
            Err(NotReady::WouldBlock) => return Err(RecvFail::WouldBlock),
            Err(NotReady::Failed(e)) => return Err(RecvFail::Broken(e)),
        }
        let inbox = self.stream.inbox();
        let max = self.options.max_message_size;
        let result = self.reader.recv_map(
            wait,
            |cmd| {
                hook(&cmd)?;
                match cmd {
                    Command::Unknown { name } if name == ATTACH_COMMAND => inbox.claim(),
                    other => self.on_command(other),
                }
            },
            |msg| match inbox.take_claimed() {
                None => Ok((msg, Vec::new())),
                Some(group) => fd_passing::unpack(msg, group, max, inbox),
            },
        );
        match &result {
            Ok(_) => self.writer.note_received(),
            Err(RecvFail::Broken(Error::Protocol(p))) => self.tell_peer(p),
            Err(_) => {}
        }
        result
    }

    /// Sends a message with descriptors attached: each arrives open (and
    /// close-on-exec) in the peer's process, with this message. Our copies are
    /// closed once sent.
    ///
    /// Only to a conduit peer over a Unix socket or socket pair; at most
    /// [`MAX_FDS_PER_MESSAGE`](crate::MAX_FDS_PER_MESSAGE) descriptors.
    ///
    /// ```
    /// use std::io::{Read, Seek, Write};
    /// let (a, b) = conduit::Channel::pair()?;
    /// let mut file = tempfile::tempfile()?;
    /// file.write_all(b"shared")?;
    /// a.send_fds("a file", vec![file.into()])?;
    /// let (msg, fds) = b.recv_fds()?;
    /// let mut file = std::fs::File::from(fds.into_iter().next().unwrap());
    /// file.rewind()?;
    /// let mut text = String::new();
    /// file.read_to_string(&mut text)?;
    /// assert_eq!((msg.concat(), text.as_str()), ("a file".into(), "shared"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn send_fds(&self, message: impl Into<Message>, fds: Vec<OwnedFd>) -> Result<(), Error> {
        self.send_attached(&message.into(), fds, Wait::Forever)
    }

    /// Receives the next message and the descriptors that came with it (none
    /// for a message sent without). Dropping them closes them.
    pub fn recv_fds(&self) -> Result<(Message, Vec<OwnedFd>), RecvError> {
        self.recv_attached(Wait::Forever, |_| Ok(()))
            .map_err(RecvFail::into_recv)
    }

    /// [`recv_fds`](Self::recv_fds), waiting at most `timeout`.
    pub fn recv_fds_timeout(
        &self,
        timeout: Duration,
    ) -> Result<(Message, Vec<OwnedFd>), RecvTimeoutError> {
        self.recv_attached(Wait::timeout(timeout), |_| Ok(()))
            .map_err(RecvFail::into_timeout)
    }

    /// Ends this channel here so that another process can take it over: the
    /// handshake completes, everything queued is written, and the descriptor
    /// comes out with what was read but not yet received. The stream is not
    /// shut down.
    pub(crate) fn hand_over(&self) -> Result<Handover, Error> {
        let timeout = self.options.handshake_timeout;
        let peer = self
            .ensure_ready(Wait::timeout(timeout))
            .map_err(|f| f.into_error(timeout))?
            .clone();
        if self.stream.family() != Family::Unix {
            return Err(Error::Attachment(
                "only a channel over a Unix socket can travel in a message".into(),
            ));
        }
        if !matches!(
            self.options.security.mechanism,
            conduit_proto::Mechanism::Null
        ) {
            // Its keys and nonces stay in this process: the other could not
            // open or seal a single box.
            return Err(Error::Attachment(
                "a channel with a security mechanism (CURVE, PLAIN) cannot travel in a message"
                    .into(),
            ));
        }
        if self.closed.swap(true, Ordering::AcqRel) {
            return Err(Error::Attachment(
                "the channel was closed or handed over already".into(),
            ));
        }
        self.writer.stop(self.options.linger_wait())?;
        let refuse = || {
            Error::Attachment(
                "a channel with a message received but not taken cannot travel".into(),
            )
        };
        if !self.stream.inbox().is_empty() {
            return Err(refuse());
        }
        let buffered = self.reader.take_buffered().ok_or_else(refuse)?;
        let fd = self
            .stream
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("cannot duplicate a channel's descriptor", e))?;
        Ok(Handover {
            fd,
            peer,
            buffered: buffered.freeze(),
            ledger: self.stream.inbox().ledger_fd(),
        })
    }

    /// Opens a channel another process handed over: the handshake is done
    /// already, so nothing is sent.
    pub(crate) fn adopt(handover: Handover) -> Result<Channel, Error> {
        let options = ChannelBuilder::new().options().clone();
        let stream = Arc::new(SocketStream::new(handover.fd, Family::Unix));
        if let Some(ledger) = handover.ledger {
            stream.inbox().adopt_ledger(ledger)?;
        }
        let transport: Arc<dyn Transport> = stream.clone();
        let reader = Reader::new(transport.clone(), options.max_message_size);
        reader.preload(&handover.buffered);
        let peer = OnceLock::new();
        let _ = peer.set(handover.peer);
        Ok(Channel {
            reader,
            writer: Writer::new(transport, options.sndhwm),
            stream,
            peer,
            handshake: Mutex::new(HandshakeState::Failed(Error::Attachment(
                "handed-over channel".into(),
            ))),
            options,
            closed: Default::default(),
            told: Default::default(),
        })
    }
}

/// A server with a fresh, unguessable name that accepts exactly one channel:
/// how a process started some other way (not by
/// [`spawn_with_channel`](crate::process::spawn_with_channel)) finds its way back.
/// Give the name to the child (an argument, an environment variable); the child
/// calls [`Channel::connect`] with it.
///
/// The name is an `ipc://` socket in a new directory only this user can enter
/// (mode 0700, in the temporary directory), so another user on the host can
/// neither see nor take it, unlike an abstract socket, whose names any user can
/// list and connect to. Socket and directory are removed once the peer is
/// accepted, or when the server is dropped.
///
/// ```
/// let (server, name) = conduit::OneShotServer::new()?;
/// let child = std::thread::spawn(move || -> Result<(), conduit::Error> {
///     let ch = conduit::Channel::connect(&name)?; // in the child process
///     ch.send_value(&("ready", 42u32))?;
///     Ok(())
/// });
/// let (channel, hello): (_, (String, u32)) = server.accept_value()?;
/// assert_eq!(hello, ("ready".to_string(), 42));
/// # drop(channel);
/// # child.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct OneShotServer {
    /// `None` once accepted.
    listener: Option<Listener>,
    dir: std::path::PathBuf,
}

impl OneShotServer {
    /// Listens on a new name; returns the server and the name to connect to.
    pub fn new() -> Result<(OneShotServer, String), Error> {
        OneShotServer::with_builder(&ChannelBuilder::new())
    }

    /// [`new`](Self::new) with channel options from `builder`.
    pub fn with_builder(builder: &ChannelBuilder) -> Result<(OneShotServer, String), Error> {
        use std::os::unix::fs::DirBuilderExt;
        let mut random = [0u8; 16];
        // SAFETY: getrandom writes at most `random.len()` bytes into it.
        let n = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
        if n != random.len() as isize {
            return Err(Error::io(
                "cannot pick a name for a one-shot server",
                std::io::Error::last_os_error(),
            ));
        }
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = std::env::temp_dir().join(format!("conduit-{}-{hex}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let name = format!("ipc://{}/s", dir.display());
        let listener = match builder.listen(&name) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        Ok((
            OneShotServer {
                listener: Some(listener),
                dir,
            },
            name,
        ))
    }

    fn take(&mut self) -> Listener {
        self.listener
            .take()
            .expect("a server accepts once: accept takes self")
    }

    /// Waits for the one peer and completes the handshake.
    pub fn accept(mut self) -> Result<Channel, Error> {
        self.take().accept()
    }

    /// Like [`accept`](Self::accept), giving up after `timeout` with
    /// [`AcceptTimeoutError::Timeout`].
    pub fn accept_timeout(mut self, timeout: Duration) -> Result<Channel, AcceptTimeoutError> {
        self.take().accept_timeout(timeout)
    }

    /// Accepts the peer and receives its first message as a `T`.
    pub fn accept_value<T: serde::de::DeserializeOwned>(self) -> Result<(Channel, T), Error> {
        let channel = self.accept()?;
        let value = channel.recv_value().map_err(|e| match e {
            RecvError::Closed => Error::ClosedDuringHandshake,
            RecvError::Failed(e) => e,
        })?;
        Ok((channel, value))
    }
}

impl Drop for OneShotServer {
    fn drop(&mut self) {
        // The listener removes its socket file when dropped; then the directory.
        drop(self.listener.take());
        let _ = std::fs::remove_dir(&self.dir);
    }
}
