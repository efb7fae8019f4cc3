//! The receive path: read big chunks, hand out whole messages.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Instant;

use bytes::{BufMut, BytesMut};
use conduit_proto::{
    Command, Decoder, Handshake, Item, Message, Opener, PeerInfo, ProtocolError, Sealer, SendBuffer,
};

use crate::error::{Error, RecvError, RecvTimeoutError, TryRecvError};
use crate::transport::{Transport, Wait};

/// Bytes asked for per read when the buffer runs low. Large enough that a stream
/// of small messages costs one system call per several hundred of them. A
/// large frame's body is read into a buffer of its own, all that is missing at
/// once (`Decoder::large_body`).
pub(crate) const READ_CHUNK: usize = 64 << 10;

/// Below this much free space, grow the buffer before reading.
const MIN_SPARE: usize = 4 << 10;

/// The least a read into an empty buffer asks for (see `Conn::first_read`):
/// small enough that the allocator serves it from its per-thread cache.
pub(crate) const FIRST_READ_MIN: usize = 1 << 10;

thread_local! {
    /// Messages this thread has taken from conduit: see [`received_here`].
    static RECEIVED_HERE: Cell<u64> = const { Cell::new(0) };
}

/// Counts a message the calling thread just took from conduit.
///
/// The send path compares the count at each send with the count at the
/// previous one: a change means the thread is answering something, so its send
/// is written at once instead of waiting to be batched. [`Reader::recv`] counts
/// every message it returns; code that hands messages to the application
/// through a queue of its own (the socket layer, whose reader threads are not
/// the application's) calls this on the application's thread when it gives one
/// out.
pub(crate) fn note_received_here() {
    RECEIVED_HERE.with(|c| c.set(c.get().wrapping_add(1)));
}

/// How many messages the calling thread has taken from conduit so far.
pub(crate) fn received_here() -> u64 {
    RECEIVED_HERE.with(Cell::get)
}

/// Why no message came back.
#[derive(Debug)]
pub(crate) enum RecvFail {
    /// Nothing whole arrived within the wait.
    WouldBlock,
    /// The stream ended cleanly, at a message boundary.
    Closed,
    /// The stream broke.
    Broken(Error),
}

impl RecvFail {
    pub(crate) fn into_recv(self) -> RecvError {
        match self {
            RecvFail::Closed => RecvError::Closed,
            RecvFail::Broken(e) => RecvError::Failed(e),
            RecvFail::WouldBlock => unreachable!("a receive without a deadline gave up"),
        }
    }

    pub(crate) fn into_try(self) -> TryRecvError {
        match self {
            RecvFail::WouldBlock => TryRecvError::Empty,
            RecvFail::Closed => TryRecvError::Closed,
            RecvFail::Broken(e) => TryRecvError::Failed(e),
        }
    }

    pub(crate) fn into_timeout(self) -> RecvTimeoutError {
        match self {
            RecvFail::WouldBlock => RecvTimeoutError::Timeout,
            RecvFail::Closed => RecvTimeoutError::Closed,
            RecvFail::Broken(e) => RecvTimeoutError::Failed(e),
        }
    }
}

#[derive(Debug)]
enum End {
    Closed,
    Broken(Error),
}

/// Whole one-frame messages split off the read buffer at a time (see
/// [`Decoder::decode_run`]); the rest of a read waits in the buffer.
const RUN_MAX: usize = 256;

#[derive(Debug)]
struct State {
    buf: BytesMut,
    decoder: Decoder,
    /// Messages already decoded, in order, ahead of anything in `buf`.
    ready: VecDeque<Message>,
    /// Set once the stream has ended; every later call reports the same end.
    end: Option<End>,
    /// After a CURVE handshake, opens the MESSAGE boxes everything arrives in;
    /// it then decodes instead of `decoder`.
    opener: Option<Opener>,
}

impl State {
    fn decode(&mut self) -> Result<Option<Item>, ProtocolError> {
        match &mut self.opener {
            Some(opener) => opener.decode(&mut self.buf),
            None => self.decoder.decode(&mut self.buf),
        }
    }

    /// Splits off a run of one-frame messages (none when the traffic is sealed:
    /// every frame must be opened first).
    fn decode_run(&mut self, out: &mut VecDeque<Message>) -> usize {
        match self.opener {
            Some(_) => 0,
            None => self.decoder.decode_run(&mut self.buf, out, RUN_MAX),
        }
    }

    fn between_messages(&self) -> bool {
        match &self.opener {
            Some(opener) => opener.is_between_messages(),
            None => self.decoder.is_between_messages(),
        }
    }
}

/// Reads once with `read`: into the body of a large frame the decoder has
/// under way, no further than its end (`Decoder::large_body`), else into
/// `buf`'s spare capacity, grown first when little is left: by `first` when
/// `buf` has no memory yet, by [`READ_CHUNK`] otherwise. Says how much was
/// read and whether that was less than asked for (the kernel had no more).
pub(crate) fn read_once(
    decoder: &mut Decoder,
    buf: &mut BytesMut,
    first: usize,
    read: impl FnOnce(&mut [MaybeUninit<u8>]) -> io::Result<usize>,
) -> io::Result<(usize, bool)> {
    let (buf, most) = match decoder.large_body() {
        Some(large) => large,
        None => {
            if buf.capacity() == 0 {
                buf.reserve(first);
            } else if buf.capacity() - buf.len() < MIN_SPARE {
                buf.reserve(READ_CHUNK);
            }
            (buf, usize::MAX)
        }
    };
    let spare = buf.spare_capacity_mut();
    let asked = spare.len().min(most);
    let n = read(&mut spare[..asked])?;
    // SAFETY: `read` initialized the first `n` bytes of the spare capacity.
    unsafe { buf.advance_mut(n) };
    Ok((n, n < asked))
}

/// The receiving half of a stream.
///
/// The state is behind a mutex that a blocked receive holds while it waits, so
/// what other threads ask for while someone may be receiving (is it broken, when
/// did bytes last arrive) is kept in atomics beside it.
#[derive(Debug)]
pub(crate) struct Reader {
    transport: Arc<dyn Transport>,
    state: Mutex<State>,
    broken: AtomicBool,
    /// Nanoseconds from `created` to the last arrival of bytes.
    last_input: AtomicU64,
    created: Instant,
    max_message_size: usize,
}

impl Reader {
    pub(crate) fn new(transport: Arc<dyn Transport>, max_message_size: usize) -> Reader {
        Reader {
            transport,
            state: Mutex::new(State {
                buf: BytesMut::new(),
                decoder: Decoder::new(max_message_size),
                ready: VecDeque::new(),
                end: None,
                opener: None,
            }),
            broken: AtomicBool::new(false),
            last_input: AtomicU64::new(0),
            created: Instant::now(),
            max_message_size,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads once into the spare capacity of the buffer (or of a large body
    /// under way); `Ok(0)` is the end of stream.
    fn fill(&self, st: &mut State, wait: Wait) -> io::Result<usize> {
        let (n, _) = read_once(&mut st.decoder, &mut st.buf, READ_CHUNK, |spare| {
            self.transport.read(spare, wait)
        })?;
        if n > 0 {
            let since = self.created.elapsed().as_nanos() as u64;
            self.last_input.store(since, Ordering::Relaxed);
        }
        Ok(n)
    }

    /// Records how the stream ended.
    fn end(&self, st: &mut State, end: End) {
        if let End::Broken(_) = end {
            self.broken.store(true, Ordering::Release);
        }
        st.end = Some(end);
    }

    /// Receives the next whole message, handing commands to `on_command` on the way.
    ///
    /// An error from `on_command` breaks the stream.
    pub(crate) fn recv(
        &self,
        wait: Wait,
        on_command: impl FnMut(Command) -> Result<(), Error>,
    ) -> Result<Message, RecvFail> {
        let mut st = self.lock();
        let msg = self.next(&mut st, wait, on_command)?;
        note_received_here();
        Ok(msg)
    }

    /// As [`recv`](Self::recv), with `then` applied to the message before the
    /// next receive can start: what `then` pairs with the message (descriptors
    /// that came with it) cannot go to another thread's message. An error from
    /// `then` breaks the stream.
    pub(crate) fn recv_map<R>(
        &self,
        wait: Wait,
        on_command: impl FnMut(Command) -> Result<(), Error>,
        then: impl FnOnce(Message) -> Result<R, Error>,
    ) -> Result<R, RecvFail> {
        let mut st = self.lock();
        let msg = self.next(&mut st, wait, on_command)?;
        note_received_here();
        then(msg).map_err(|e| {
            self.end(&mut st, End::Broken(e.clone()));
            RecvFail::Broken(e)
        })
    }

    /// The bytes read but not yet decoded, for handing the stream to another
    /// process; `None` if a message is decoded but not taken, or half-decoded.
    pub(crate) fn take_buffered(&self) -> Option<BytesMut> {
        let mut st = self.lock();
        if !st.ready.is_empty() || st.end.is_some() || !st.decoder.is_between_messages() {
            return None;
        }
        Some(std::mem::take(&mut st.buf))
    }

    /// A duplicate of the stream's descriptor (to hand it to another process).
    pub(crate) fn dup_fd(&self) -> Result<std::os::fd::OwnedFd, Error> {
        use std::os::fd::AsFd;
        self.transport
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("cannot duplicate a descriptor", e))
    }

    /// Puts bytes read by another process's reader ahead of anything read here.
    pub(crate) fn preload(&self, bytes: &[u8]) {
        self.lock().buf.extend_from_slice(bytes);
    }

    /// The next whole message, reading as `wait` allows.
    fn next(
        &self,
        st: &mut State,
        wait: Wait,
        mut on_command: impl FnMut(Command) -> Result<(), Error>,
    ) -> Result<Message, RecvFail> {
        loop {
            if let Some(msg) = st.ready.pop_front() {
                return Ok(msg);
            }
            match &st.end {
                Some(End::Closed) => return Err(RecvFail::Closed),
                Some(End::Broken(e)) => return Err(RecvFail::Broken(e.clone())),
                None => {}
            }
            let mut ready = std::mem::take(&mut st.ready);
            let run = st.decode_run(&mut ready);
            st.ready = ready;
            if run > 0 {
                continue;
            }
            match st.decode() {
                Ok(Some(Item::Message(msg))) => return Ok(msg),
                Ok(Some(Item::Command(cmd))) => {
                    if let Err(e) = on_command(cmd) {
                        self.end(st, End::Broken(e));
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    self.end(st, End::Broken(Error::Protocol(e)));
                    continue;
                }
            }
            match self.fill(st, wait) {
                Ok(0) => {
                    let end = if st.buf.is_empty() && st.between_messages() {
                        End::Closed
                    } else {
                        End::Broken(Error::Truncated)
                    };
                    self.end(st, end);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(RecvFail::WouldBlock);
                }
                Err(e) => {
                    let error = Error::from_stream(e, "cannot read from the stream");
                    // A reset partway through a message loses the rest of it, just as
                    // an end of stream there would.
                    let mid_message = !st.buf.is_empty() || !st.between_messages();
                    let error = match error {
                        Error::Disconnected if mid_message => Error::Truncated,
                        other => other,
                    };
                    self.end(st, End::Broken(error));
                }
            }
        }
    }

    /// Reads until `handshake` completes, within `wait`, handing what the
    /// mechanism answers to `send`. What the peer sent after its last handshake
    /// command stays buffered for [`recv`](Self::recv); after CURVE it is opened
    /// from then on, and the sealing half is returned for the writer.
    ///
    /// `Closed` here means the peer hung up before completing the handshake.
    pub(crate) fn handshake(
        &self,
        handshake: &mut Handshake,
        wait: Wait,
        send: &mut dyn FnMut(&mut SendBuffer) -> Result<(), Error>,
    ) -> Result<(PeerInfo, Option<Sealer>), RecvFail> {
        let mut st = self.lock();
        let st = &mut *st;
        loop {
            let result = handshake.handle_input(&mut st.buf);
            if handshake.has_output() {
                let mut out = SendBuffer::new();
                handshake.poll_output(&mut out);
                send(&mut out).map_err(RecvFail::Broken)?;
            }
            match result {
                Ok(Some(peer)) => {
                    let sealer = handshake.take_cipher().map(|cipher| {
                        let (sealer, mut opener) = cipher.split();
                        opener.set_max_message_size(self.max_message_size);
                        st.opener = Some(opener);
                        sealer
                    });
                    return Ok((peer, sealer));
                }
                Ok(None) => {}
                Err(e) => return Err(RecvFail::Broken(Error::Protocol(e))),
            }
            match self.fill(st, wait) {
                Ok(0) => return Err(RecvFail::Closed),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(RecvFail::WouldBlock);
                }
                Err(e) => {
                    return Err(RecvFail::Broken(Error::from_stream(
                        e,
                        "cannot read from the stream",
                    )));
                }
            }
        }
    }

    /// Whether a receive may find something without reading the stream: bytes
    /// are buffered (perhaps a whole message), or its end. Someone else
    /// receiving counts as yes.
    pub(crate) fn buffered(&self) -> bool {
        match self.state.try_lock() {
            Ok(st) => !st.buf.is_empty() || !st.ready.is_empty() || st.end.is_some(),
            Err(_) => true,
        }
    }

    /// The stream's descriptor, for a poller.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.transport.as_fd()
    }

    /// Whether the stream broke (an error, not a clean end).
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Reads and discards whatever has already arrived, without waiting. Used before
    /// closing a socket: a socket closed with unread input resets the connection,
    /// and a reset can destroy what we sent last.
    ///
    /// If another thread is receiving, it is reading the input anyway; this does
    /// nothing rather than wait for it.
    pub(crate) fn discard_pending(&self) {
        let mut st = match self.state.try_lock() {
            Ok(st) => st,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let mut scratch = [MaybeUninit::<u8>::uninit(); 4096];
        st.buf.clear();
        st.ready.clear();
        while let Ok(n) = self.transport.read(&mut scratch, Wait::Never) {
            if n == 0 {
                break;
            }
        }
    }
}
