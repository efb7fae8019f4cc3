//! The send path: write at once when the stream is idle, batch under load.
//!
//! One write system call per message caps small messages near a million a second
//! on this class of machine, while many messages per `writev` go ten times faster.
//! But batching with a background thread costs a thread wake-up per message when
//! traffic is sparse, and that doubles round-trip latency. So the path picks per
//! message:
//!
//! - **Direct**: nothing is queued and this send does not follow closely on the
//!   previous one (or a message was received in between, as in request-reply):
//!   the caller's thread writes the message itself, one `writev`, no hand-off.
//! - **Batched**: the caller is streaming (sends within [`BURST_WINDOW`] of each
//!   other with no receive in between), or earlier bytes are still queued: the
//!   message is appended to the queue and a flusher thread writes everything queued
//!   with one `writev` per batch. While the flusher is in a system call, the
//!   producer keeps appending, so batches grow with the load by themselves.
//!
//! Order is kept because the caller only writes directly when nothing is queued
//! and the flusher is idle, and only the flusher writes otherwise. The queue holds
//! at most the high-water mark of messages; beyond it, senders wait (or get
//! "full" / "timeout").

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use conduit_proto::{Command, Message, Sealer, SendBuffer};

use crate::error::{Error, SendError, SendTimeoutError, TrySendError};
use crate::transport::{Transport, Wait};

/// Sends closer together than this, with no receive in between, count as a stream.
pub(crate) const BURST_WINDOW: Duration = Duration::from_micros(20);

/// Messages at least this large are always written directly when the stream is
/// idle: their system call is amortized over the payload, and a queued reference
/// would only add a hand-off.
const DIRECT_SIZE: usize = 64 << 10;

/// Slices per `writev`; more pending bytes take another call.
const MAX_IOV: usize = 64;

/// A stream's queue is written by the sending thread itself once it holds this
/// many messages (or the high-water mark, if lower)...
const BATCH_MSGS: usize = 256;

/// ... or this many bytes.
const BATCH_BYTES: usize = 64 << 10;

/// How long the flusher lets a partial batch (the tail of a burst) wait for more
/// messages before writing it; doubled, up to [`TAIL_WAIT_MAX`], while the sender
/// keeps writing full batches itself, so that a steady stream wakes it rarely.
const TAIL_WAIT: Duration = BURST_WINDOW;

/// The longest the flusher waits between looks at the queue.
const TAIL_WAIT_MAX: Duration = Duration::from_micros(160);

/// Why a send did not happen.
#[derive(Debug)]
pub(crate) enum SendFail {
    /// Would have had to wait longer than allowed; the message is handed back.
    WouldBlock(Message),
    /// The stream is broken.
    Broken(SendError),
}

impl SendFail {
    pub(crate) fn into_send(self) -> SendError {
        match self {
            SendFail::Broken(e) => e,
            SendFail::WouldBlock(_) => unreachable!("a send without a deadline gave up"),
        }
    }

    pub(crate) fn into_try(self) -> TrySendError {
        match self {
            SendFail::WouldBlock(m) => TrySendError::Full(m),
            SendFail::Broken(e) => TrySendError::Failed(e),
        }
    }

    pub(crate) fn into_timeout(self) -> SendTimeoutError {
        match self {
            SendFail::WouldBlock(m) => SendTimeoutError::Timeout(m),
            SendFail::Broken(e) => SendTimeoutError::Failed(e),
        }
    }
}

#[derive(Debug)]
struct State {
    /// Messages (and commands) not yet handed to the kernel or to the flusher.
    pending: SendBuffer,
    /// Messages in `pending`: what the high-water mark counts.
    pending_msgs: usize,
    /// Bytes handed to the flusher to write, waiting as long as it takes, before
    /// anything in `pending`: what a non-blocking write left over when the kernel
    /// buffer filled (possibly part of a message).
    handoff: SendBuffer,
    /// The flusher is writing with the lock released: nobody else may write.
    writing: bool,
    /// Bumped whenever `pending` is emptied, so the flusher can tell a partial
    /// batch that has waited from a new one.
    generation: u64,
    /// Messages ever queued in `pending`, so the flusher can tell a quiet queue.
    appended: u64,
    flusher: Flusher,
    /// The sending thread's received-message count at the previous send.
    seen_received: u64,
    /// When a send last found the stream idle, or a sender wrote a full batch.
    last_send: Option<Instant>,
    /// Whether any message has been sent.
    sent_any: bool,
    broken: Option<Error>,
    closing: bool,
    /// A sender found the queue at its high-water mark since the last drain.
    was_full: bool,
    /// Threads waiting on `drained`: it is only signalled when there are some.
    waiters: usize,
    /// After a CURVE handshake, seals every frame queued into a MESSAGE box.
    /// Frames are sealed as they enter `pending`, under this lock, so nonces
    /// follow the order of the stream.
    sealer: Option<Sealer>,
}

/// What the flusher thread is doing, so that it is only woken when it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flusher {
    NotStarted,
    /// Working, or about to look at the state again: needs no signal.
    Running,
    /// Waiting for a partial batch to fill, with a timeout.
    Watching,
    /// Waiting for work without a timeout: must be signalled.
    Idle,
    /// Gone (the writer closed).
    Exited,
}

impl State {
    fn push_message(&mut self, msg: &Message) {
        self.pending.push_message_via(self.sealer.as_mut(), msg);
    }

    fn push_command(&mut self, cmd: &Command) {
        self.pending.push_command_via(self.sealer.as_mut(), cmd);
    }

    /// Whether a sender may write `pending` now: the flusher is not writing, and
    /// nothing handed to it has to go first.
    fn can_write(&self) -> bool {
        !self.writing && self.handoff.is_empty()
    }
}

struct Shared {
    transport: Arc<dyn Transport>,
    state: Mutex<State>,
    /// Signalled when there is work for the flusher (or it should exit).
    work: Condvar,
    /// Signalled when the queue shrinks or the flusher goes idle, if anyone waits.
    drained: Condvar,
    /// Set by a channel's receive path (in whatever thread): the next send answers
    /// something, so it should not wait for a batch. The per-thread count in
    /// [`crate::reader::received_here`] is the other such signal.
    received: AtomicBool,
    hwm: usize,
    /// A sender writes the queue itself once it holds this many messages.
    batch_msgs: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("transport", &self.transport)
            .field("hwm", &self.hwm)
            .finish_non_exhaustive()
    }
}

/// The sending half of a stream. Dropping it does not close the stream: call
/// [`close`](Writer::close).
#[derive(Debug)]
pub(crate) struct Writer {
    shared: Arc<Shared>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // No code panics while holding this lock; recover the state if one ever did.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes all of `buf` out, as `wait` allows.
fn write_out(transport: &dyn Transport, buf: &mut SendBuffer, wait: Wait) -> io::Result<()> {
    while !buf.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = buf.io_slices(&mut slices);
            transport.write(&slices[..n], wait)?
        };
        buf.advance(written);
    }
    Ok(())
}

fn is_wait_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Writer {
    /// A writer that queues at most `hwm` messages while the peer is not keeping up.
    pub(crate) fn new(transport: Arc<dyn Transport>, hwm: usize) -> Writer {
        let hwm = hwm.max(1);
        Writer {
            shared: Arc::new(Shared {
                transport,
                state: Mutex::new(State {
                    pending: SendBuffer::new(),
                    pending_msgs: 0,
                    handoff: SendBuffer::new(),
                    writing: false,
                    generation: 0,
                    appended: 0,
                    flusher: Flusher::NotStarted,
                    seen_received: crate::reader::received_here(),
                    last_send: None,
                    sent_any: false,
                    broken: None,
                    closing: false,
                    was_full: false,
                    waiters: 0,
                    sealer: None,
                }),
                work: Condvar::new(),
                drained: Condvar::new(),
                received: AtomicBool::new(false),
                hwm,
                batch_msgs: BATCH_MSGS.min(hwm),
            }),
        }
    }

    /// Tells the send path a message was just received on this stream (by any
    /// thread): the next send answers it.
    pub(crate) fn note_received(&self) {
        if !self.shared.received.load(Ordering::Relaxed) {
            self.shared.received.store(true, Ordering::Relaxed);
        }
    }

    /// Whether any message has been sent (not counting the greeting or commands).
    pub(crate) fn has_sent(&self) -> bool {
        lock(&self.shared.state).sent_any
    }

    /// The stream's descriptor, for a poller.
    pub(crate) fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.shared.transport.as_fd()
    }

    /// Whether the stream is broken for writing.
    pub(crate) fn is_broken(&self) -> bool {
        lock(&self.shared.state).broken.is_some()
    }

    /// Sends one message, waiting as `wait` allows when the queue is full.
    pub(crate) fn send(&self, msg: Message, wait: Wait) -> Result<(), SendFail> {
        if msg.is_empty() {
            return Err(SendFail::Broken(SendError {
                message: msg,
                error: Error::EmptyMessage,
            }));
        }
        let shared = &*self.shared;
        let mut st = lock(&shared.state);
        if let Some(error) = st.broken.clone() {
            return Err(SendFail::Broken(SendError {
                message: msg,
                error,
            }));
        }
        let received = crate::reader::received_here();
        let mut answering = received != st.seen_received;
        st.seen_received = received;
        if shared.received.load(Ordering::Relaxed) {
            answering |= shared.received.swap(false, Ordering::Relaxed);
        }
        st.sent_any = true;
        if st.pending.is_empty() && st.can_write() {
            // The stream is idle: the only case that needs the clock.
            let now = Instant::now();
            let streaming = !answering
                && st
                    .last_send
                    .is_some_and(|t| now.saturating_duration_since(t) < BURST_WINDOW);
            st.last_send = Some(now);
            if !streaming || msg.byte_len() >= DIRECT_SIZE {
                return self.send_direct(st, msg, wait);
            }
        }
        let (st, result) = self.send_queued(st, msg, wait, answering);
        drop(st);
        result
    }

    /// Writes `msg` from the caller's thread. Holds the lock throughout, so that
    /// nothing can be queued ahead of it.
    fn send_direct(
        &self,
        mut st: MutexGuard<'_, State>,
        msg: Message,
        wait: Wait,
    ) -> Result<(), SendFail> {
        st.push_message(&msg);
        match write_out(&*self.shared.transport, &mut st.pending, wait) {
            Ok(()) => Ok(()),
            Err(e) if is_wait_error(&e) => {
                // The kernel buffer is full. The message is accepted all the same
                // (as libzmq does up to its high-water mark: "full" means that,
                // nothing else), and what is left of it goes to the flusher, which
                // waits for room; once part of it is on the wire, the rest must
                // follow whatever the deadline.
                self.hand_off(&mut st);
                Ok(())
            }
            Err(e) => {
                let error = Error::from_stream(e, "cannot write to the stream");
                st.pending.clear();
                st.broken = Some(error.clone());
                if st.waiters > 0 {
                    self.shared.drained.notify_all();
                }
                Err(SendFail::Broken(SendError {
                    message: msg,
                    error,
                }))
            }
        }
    }

    /// Queues `msg`, waiting while the queue is at its high-water mark, and writes
    /// the queue from this thread when it holds a full batch (or `now`).
    #[allow(clippy::type_complexity)]
    fn send_queued<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        msg: Message,
        wait: Wait,
        now: bool,
    ) -> (MutexGuard<'a, State>, Result<(), SendFail>) {
        let shared = &*self.shared;
        while st.pending_msgs >= shared.hwm && st.broken.is_none() {
            if st.can_write() {
                // Make room ourselves, as far as `wait` allows.
                st = self.write_batch(st, wait);
                continue;
            }
            st.was_full = true;
            st = match wait {
                Wait::Never => return (st, Err(SendFail::WouldBlock(msg))),
                Wait::Forever => {
                    st.waiters += 1;
                    let mut st = shared.drained.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.waiters -= 1;
                    st
                }
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return (st, Err(SendFail::WouldBlock(msg)));
                    }
                    st.waiters += 1;
                    let mut st = shared
                        .drained
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    st.waiters -= 1;
                    st
                }
            };
        }
        if let Some(error) = st.broken.clone() {
            let fail = SendFail::Broken(SendError {
                message: msg,
                error,
            });
            return (st, Err(fail));
        }
        st.push_message(&msg);
        st.pending_msgs += 1;
        st.appended += 1;
        if st.can_write() {
            let full = st.pending_msgs >= shared.batch_msgs || st.pending.len() >= BATCH_BYTES;
            if now || full {
                let mut st = self.write_batch(st, wait);
                if full {
                    st.last_send = Some(Instant::now());
                }
                return (st, Ok(()));
            }
        }
        self.wake_flusher(&mut st, false);
        (st, Ok(()))
    }

    /// Writes `pending` from this thread. When the kernel buffer fills, a sender
    /// that may wait writes the rest itself with the lock released (others queue
    /// meanwhile, as while the flusher writes): one thread sleeps until the peer
    /// makes room, not two. What `wait` does not allow to wait for is handed to
    /// the flusher.
    fn write_batch<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        wait: Wait,
    ) -> MutexGuard<'a, State> {
        if wait == Wait::Never {
            self.write_now(&mut st);
            return st;
        }
        debug_assert!(st.can_write());
        st.was_full = false;
        match write_out(&*self.shared.transport, &mut st.pending, Wait::Never) {
            Ok(()) => {
                st.pending_msgs = 0;
                st.generation += 1;
                return st;
            }
            Err(e) if is_wait_error(&e) => {}
            Err(e) => {
                self.fail(&mut st, e);
                return st;
            }
        }
        // `handoff` is empty (we may write), so its buffer serves as the batch.
        let mut batch = std::mem::take(&mut st.handoff);
        std::mem::swap(&mut st.pending, &mut batch);
        st.pending_msgs = 0;
        st.generation += 1;
        st.writing = true;
        if st.waiters > 0 {
            self.shared.drained.notify_all();
        }
        drop(st);
        let result = write_out(&*self.shared.transport, &mut batch, wait);
        let mut st = lock(&self.shared.state);
        st.writing = false;
        match result {
            Ok(()) => st.handoff = batch,
            Err(e) if is_wait_error(&e) => {
                // Out of time, part of it written: the flusher finishes it.
                st.handoff = batch;
                self.wake_flusher(&mut st, true);
            }
            Err(e) => self.fail(&mut st, e),
        }
        if !st.pending.is_empty() || st.closing {
            // Queued meanwhile, or closing: make sure the flusher looks again (it
            // went idle while we wrote, and must exit once the writer closes).
            self.wake_flusher(&mut st, false);
        }
        if st.waiters > 0 {
            self.shared.drained.notify_all();
        }
        st
    }

    /// Writes `pending` from this thread without waiting; what the kernel does
    /// not take is handed to the flusher.
    fn write_now(&self, st: &mut State) {
        debug_assert!(st.can_write());
        st.was_full = false;
        match write_out(&*self.shared.transport, &mut st.pending, Wait::Never) {
            Ok(()) => {
                st.pending_msgs = 0;
                st.generation += 1;
            }
            Err(e) if is_wait_error(&e) => self.hand_off(st),
            Err(e) => self.fail(st, e),
        }
    }

    /// Gives the rest of `pending` to the flusher, to write as soon as the kernel
    /// has room, before anything queued later.
    fn hand_off(&self, st: &mut State) {
        debug_assert!(st.can_write());
        std::mem::swap(&mut st.pending, &mut st.handoff);
        st.pending_msgs = 0;
        st.generation += 1;
        self.wake_flusher(st, true);
    }

    /// Marks the stream broken by a failed write and drops what is queued.
    fn fail(&self, st: &mut State, e: io::Error) {
        st.broken = Some(Error::from_stream(e, "cannot write to the stream"));
        st.pending.clear();
        st.pending_msgs = 0;
        st.handoff.clear();
        if st.waiters > 0 {
            self.shared.drained.notify_all();
        }
    }

    /// Queues a command (PONG, ERROR) ahead of nothing: it goes out after what is
    /// already queued, and it is not counted against the high-water mark.
    pub(crate) fn send_command(&self, cmd: &Command) -> Result<(), Error> {
        let mut st = lock(&self.shared.state);
        if let Some(error) = st.broken.clone() {
            return Err(error);
        }
        st.push_command(cmd);
        self.write_soon(st);
        Ok(())
    }

    /// Writes what is queued now if nobody else is writing (else it follows what
    /// is being written).
    fn write_soon(&self, mut st: MutexGuard<'_, State>) {
        if st.can_write() {
            self.write_now(&mut st);
        } else {
            self.wake_flusher(&mut st, false);
        }
    }

    /// From now on, seals every message and command in a CURVE MESSAGE box.
    /// Called when the handshake completes, before anything else is queued.
    pub(crate) fn set_sealer(&self, sealer: Sealer) {
        lock(&self.shared.state).sealer = Some(sealer);
    }

    /// Writes raw bytes (a greeting) now, from the caller's thread.
    pub(crate) fn send_raw(&self, bytes: &mut SendBuffer, wait: Wait) -> Result<(), Error> {
        let mut st = lock(&self.shared.state);
        if let Some(error) = st.broken.clone() {
            return Err(error);
        }
        debug_assert!(st.pending.is_empty() && st.can_write());
        write_out(&*self.shared.transport, bytes, wait).map_err(|e| {
            let error = Error::from_stream(e, "cannot write to the stream");
            st.broken = Some(error.clone());
            error
        })
    }

    /// Makes sure the flusher will look at the queue: starts it, or signals it if
    /// it waits without a timeout (or, for a hand-off, `urgent`, at all).
    #[inline]
    fn wake_flusher(&self, st: &mut State, urgent: bool) {
        match st.flusher {
            Flusher::Running | Flusher::Exited => {}
            Flusher::Watching if !urgent => {}
            _ => self.start_flusher(st, urgent),
        }
    }

    #[cold]
    fn start_flusher(&self, st: &mut State, urgent: bool) {
        match st.flusher {
            Flusher::Running | Flusher::Exited => {}
            Flusher::Watching if !urgent => {}
            Flusher::Watching | Flusher::Idle => {
                st.flusher = Flusher::Running;
                self.shared.work.notify_one();
            }
            Flusher::NotStarted => {
                let shared = Arc::clone(&self.shared);
                let spawned = std::thread::Builder::new()
                    .name("conduit-flusher".into())
                    .spawn(move || flusher(shared));
                match spawned {
                    Ok(_) => st.flusher = Flusher::Running,
                    Err(e) => {
                        // No thread: fail the stream rather than leave bytes stranded.
                        st.pending.clear();
                        st.pending_msgs = 0;
                        st.handoff.clear();
                        st.broken = Some(Error::io("cannot start the flusher thread", e));
                        if st.waiters > 0 {
                            self.shared.drained.notify_all();
                        }
                    }
                }
            }
        }
    }

    /// Waits until everything queued has been handed to the kernel.
    pub(crate) fn flush(&self, wait: Wait) -> Result<(), Error> {
        let shared = &*self.shared;
        let mut st = lock(&shared.state);
        loop {
            if st.broken.is_some() {
                break;
            }
            if st.can_write() {
                if st.pending.is_empty() {
                    break;
                }
                st = self.write_batch(st, wait);
                continue;
            }
            st = match wait {
                Wait::Never => break,
                Wait::Forever => {
                    st.waiters += 1;
                    let mut st = shared.drained.wait(st).unwrap_or_else(|e| e.into_inner());
                    st.waiters -= 1;
                    st
                }
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    st.waiters += 1;
                    let mut st = shared
                        .drained
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    st.waiters -= 1;
                    st
                }
            };
        }
        let result = if let Some(error) = st.broken.clone() {
            Err(error)
        } else if !st.can_write() || !st.pending.is_empty() {
            Err(Error::io(
                "cannot flush: the peer is not reading",
                io::ErrorKind::TimedOut.into(),
            ))
        } else {
            Ok(())
        };
        drop(st);
        result
    }

    /// Flushes everything queued (within `linger`), then half-closes the stream so
    /// the peer reads the end of it after the last message. Stops the flusher.
    pub(crate) fn close(&self, linger: Wait) -> Result<(), Error> {
        let flushed = self.stop(linger);
        let shutdown = self.shared.transport.shutdown_write();
        flushed?;
        shutdown.map_err(|e| Error::from_stream(e, "cannot shut down the stream"))
    }

    /// A duplicate of the stream's descriptor (to hand it to another process).
    pub(crate) fn dup_fd(&self) -> Result<std::os::fd::OwnedFd, Error> {
        use std::os::fd::AsFd;
        self.shared
            .transport
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("cannot duplicate a descriptor", e))
    }

    /// [`close`](Self::close) without the half-close: the stream stays open, for
    /// handing it to another process.
    pub(crate) fn stop(&self, linger: Wait) -> Result<(), Error> {
        let flushed = self.flush(linger);
        {
            let mut st = lock(&self.shared.state);
            st.closing = true;
            if flushed.is_err() && st.broken.is_none() {
                // Linger ran out: what is still queued is given up on.
                st.broken = Some(Error::Disconnected);
            }
            if matches!(st.flusher, Flusher::Idle | Flusher::Watching) {
                st.flusher = Flusher::Running;
                self.shared.work.notify_one();
            }
        }
        flushed
    }

    /// Writes with `write` from the caller's thread once everything queued
    /// before is written, holding off other senders meanwhile: for a write that
    /// must be one system call of its own (descriptors attached to its bytes).
    ///
    /// `write` must fail with `WouldBlock` or `TimedOut` only when it wrote
    /// nothing; any other failure breaks the stream.
    pub(crate) fn send_exclusive(
        &self,
        wait: Wait,
        write: impl FnOnce(Wait) -> io::Result<()>,
    ) -> Result<(), Error> {
        loop {
            self.flush(wait)?;
            let mut st = lock(&self.shared.state);
            if let Some(error) = st.broken.clone() {
                return Err(error);
            }
            if !(st.pending.is_empty() && st.can_write()) {
                continue;
            }
            return write(wait).map_err(|e| {
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    return Error::io("cannot write to the stream now", e);
                }
                // Part of a message may be written: the stream is broken.
                let error = Error::from_stream(e, "cannot write to the stream");
                st.broken = Some(error.clone());
                error
            });
        }
    }
}

/// How the flusher decides that a partial batch has waited long enough.
#[derive(Debug)]
struct TailWatch {
    /// Whether `generation` and `appended` were noted at the last look.
    watching: bool,
    generation: u64,
    appended: u64,
    /// How long the partial batch has been watched.
    age: Duration,
    /// The next wait.
    wait: Duration,
}

impl TailWatch {
    fn new() -> TailWatch {
        TailWatch {
            watching: false,
            generation: 0,
            appended: 0,
            age: Duration::ZERO,
            wait: TAIL_WAIT,
        }
    }

    /// Whether to write `pending` now: nothing was added during the last wait,
    /// or it has waited [`TAIL_WAIT_MAX`]. A batch the sender wrote itself meanwhile
    /// starts the watch again, with a longer wait.
    fn ready(&mut self, st: &State) -> bool {
        if !self.watching || st.generation != self.generation {
            if self.watching {
                self.wait = (self.wait * 2).min(TAIL_WAIT_MAX);
            }
            self.watching = true;
            self.generation = st.generation;
            self.appended = st.appended;
            self.age = Duration::ZERO;
            return false;
        }
        if st.appended == self.appended {
            return true;
        }
        self.age += self.wait;
        self.appended = st.appended;
        self.age >= TAIL_WAIT_MAX
    }
}

/// The flusher thread: writes what a sender handed over (waiting for room as long
/// as it takes), and the tail of a burst once the sender has paused, until the
/// writer closes.
fn flusher(shared: Arc<Shared>) {
    let mut batch = SendBuffer::new();
    let mut tail = TailWatch::new();
    let mut st = lock(&shared.state);
    loop {
        st.flusher = Flusher::Running;
        if st.writing {
            // A sender is writing; it wakes us if it leaves anything behind.
            st.flusher = Flusher::Idle;
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        if st.broken.is_some() {
            st.pending.clear();
            st.pending_msgs = 0;
            st.handoff.clear();
        }
        if !st.handoff.is_empty() {
            std::mem::swap(&mut st.handoff, &mut batch);
        } else if st.pending.is_empty() {
            // Nothing to do.
            tail = TailWatch::new();
            if st.waiters > 0 {
                shared.drained.notify_all();
            }
            if st.closing {
                st.flusher = Flusher::Exited;
                return;
            }
            st.flusher = Flusher::Idle;
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        } else if st.waiters > 0 || st.was_full || st.closing || tail.ready(&st) {
            std::mem::swap(&mut st.pending, &mut batch);
            st.pending_msgs = 0;
            st.generation += 1;
            st.was_full = false;
            tail = TailWatch::new();
        } else {
            st.flusher = Flusher::Watching;
            st = shared
                .work
                .wait_timeout(st, tail.wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        st.writing = true;
        if st.waiters > 0 {
            shared.drained.notify_all();
        }
        drop(st);
        let result = write_out(&*shared.transport, &mut batch, Wait::Forever);
        st = lock(&shared.state);
        st.writing = false;
        if let Err(e) = result {
            batch.clear();
            st.broken = Some(Error::from_stream(e, "cannot write to the stream"));
            st.pending.clear();
            st.pending_msgs = 0;
            st.handoff.clear();
        }
        if st.waiters > 0 {
            shared.drained.notify_all();
        }
    }
}
