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
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use conduit_proto::{Command, Message, SendBuffer};

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
    pending: SendBuffer,
    pending_msgs: usize,
    /// The flusher owns writing until `pending` is empty.
    flushing: bool,
    flusher_started: bool,
    last_send: Option<Instant>,
    broken: Option<Error>,
    closing: bool,
    /// A sender found the queue at its high-water mark since the last drain.
    was_full: bool,
}

struct Shared {
    transport: Arc<dyn Transport>,
    state: Mutex<State>,
    /// Signalled when there is work for the flusher (or it should exit).
    work: Condvar,
    /// Signalled when the queue shrinks or the flusher goes idle.
    drained: Condvar,
    /// Set by the receive path: the next send answers something, so it should not
    /// wait for a batch.
    received: AtomicBool,
    hwm: usize,
    /// Called (without any lock held) when a full queue drains or the stream
    /// breaks, so that a socket waiting on many peers can retry.
    on_drain: OnceLock<Arc<dyn Fn() + Send + Sync>>,
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
        Writer {
            shared: Arc::new(Shared {
                transport,
                state: Mutex::new(State {
                    pending: SendBuffer::new(),
                    pending_msgs: 0,
                    flushing: false,
                    flusher_started: false,
                    last_send: None,
                    broken: None,
                    closing: false,
                    was_full: false,
                }),
                work: Condvar::new(),
                drained: Condvar::new(),
                received: AtomicBool::new(false),
                hwm: hwm.max(1),
                on_drain: OnceLock::new(),
            }),
        }
    }

    /// Tells the send path a message was just received.
    pub(crate) fn note_received(&self) {
        self.shared.received.store(true, Ordering::Relaxed);
    }

    /// Sets the function called when a full queue drains or the stream breaks.
    pub(crate) fn on_drain(&self, notify: Arc<dyn Fn() + Send + Sync>) {
        let _ = self.shared.on_drain.set(notify);
    }

    /// Whether any message has been sent (not counting the greeting or commands).
    pub(crate) fn has_sent(&self) -> bool {
        lock(&self.shared.state).last_send.is_some()
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
        let now = Instant::now();
        let answering = shared.received.swap(false, Ordering::Relaxed);
        let streaming = !answering
            && st
                .last_send
                .is_some_and(|t| now.saturating_duration_since(t) < BURST_WINDOW);
        let idle = !st.flushing && st.pending.is_empty();
        if idle && (!streaming || msg.size() >= DIRECT_SIZE) {
            st = self.send_direct(st, msg, wait)?;
        } else {
            st = self.send_queued(st, msg, wait)?;
        }
        st.last_send = Some(Instant::now());
        Ok(())
    }

    /// Writes `msg` from the caller's thread. Holds the lock throughout, so that
    /// nothing can be queued ahead of it.
    fn send_direct<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        msg: Message,
        wait: Wait,
    ) -> Result<MutexGuard<'a, State>, SendFail> {
        st.pending.push_message(&msg);
        let total = st.pending.len();
        match write_out(&*self.shared.transport, &mut st.pending, wait) {
            Ok(()) => Ok(st),
            Err(e) if is_wait_error(&e) && st.pending.len() == total => {
                // The kernel buffer is full but our queue is empty: queue the message
                // (as libzmq does up to its high-water mark) for the flusher, which
                // waits for room. "Full" means the high-water mark, nothing else.
                st.pending.clear();
                self.send_queued(st, msg, wait)
            }
            Err(e) if is_wait_error(&e) => {
                // Part of the message is on the wire: the rest must follow, whatever
                // the deadline. The flusher finishes it.
                st.pending_msgs = 1;
                self.start_flushing(&mut st);
                Ok(st)
            }
            Err(e) => {
                let error = Error::from_stream(e, "cannot write to the stream");
                st.pending.clear();
                st.broken = Some(error.clone());
                Err(SendFail::Broken(SendError {
                    message: msg,
                    error,
                }))
            }
        }
    }

    /// Queues `msg` for the flusher, waiting while the queue is at its high-water mark.
    fn send_queued<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        msg: Message,
        wait: Wait,
    ) -> Result<MutexGuard<'a, State>, SendFail> {
        let shared = &*self.shared;
        while st.pending_msgs >= shared.hwm && st.broken.is_none() {
            st.was_full = true;
            st = match wait {
                Wait::Never => return Err(SendFail::WouldBlock(msg)),
                Wait::Forever => shared.drained.wait(st).unwrap_or_else(|e| e.into_inner()),
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(SendFail::WouldBlock(msg));
                    }
                    shared
                        .drained
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        if let Some(error) = st.broken.clone() {
            return Err(SendFail::Broken(SendError {
                message: msg,
                error,
            }));
        }
        st.pending.push_message(&msg);
        st.pending_msgs += 1;
        self.start_flushing(&mut st);
        Ok(st)
    }

    /// Queues a command (PONG, ERROR) ahead of nothing: it goes out after what is
    /// already queued, and it is not counted against the high-water mark.
    pub(crate) fn send_command(&self, cmd: &Command) -> Result<(), Error> {
        let mut st = lock(&self.shared.state);
        if let Some(error) = st.broken.clone() {
            return Err(error);
        }
        st.pending.push_command(cmd);
        self.start_flushing(&mut st);
        Ok(())
    }

    /// Queues a message after what is already queued, not counted against the
    /// high-water mark (a subscription in ZMTP 3.0 form must not be dropped).
    pub(crate) fn send_unbounded(&self, msg: &Message) -> Result<(), Error> {
        let mut st = lock(&self.shared.state);
        if let Some(error) = st.broken.clone() {
            return Err(error);
        }
        st.pending.push_message(msg);
        self.start_flushing(&mut st);
        Ok(())
    }

    /// Writes raw bytes (a greeting) now, from the caller's thread.
    pub(crate) fn send_raw(&self, bytes: &mut SendBuffer, wait: Wait) -> Result<(), Error> {
        let mut st = lock(&self.shared.state);
        if let Some(error) = st.broken.clone() {
            return Err(error);
        }
        debug_assert!(st.pending.is_empty() && !st.flushing);
        write_out(&*self.shared.transport, bytes, wait).map_err(|e| {
            let error = Error::from_stream(e, "cannot write to the stream");
            st.broken = Some(error.clone());
            error
        })
    }

    fn start_flushing(&self, st: &mut State) {
        if st.flushing {
            return;
        }
        st.flushing = true;
        if st.flusher_started {
            self.shared.work.notify_one();
            return;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("conduit-flusher".into())
            .spawn(move || flusher(shared));
        match spawned {
            Ok(_) => st.flusher_started = true,
            Err(e) => {
                // No thread: fail the stream rather than leave bytes stranded.
                st.broken = Some(Error::io("cannot start the flusher thread", e));
                st.pending.clear();
                st.flushing = false;
            }
        }
    }

    /// Waits until everything queued has been handed to the kernel.
    pub(crate) fn flush(&self, wait: Wait) -> Result<(), Error> {
        let shared = &*self.shared;
        let mut st = lock(&shared.state);
        while (st.flushing || !st.pending.is_empty()) && st.broken.is_none() {
            st = match wait {
                Wait::Never => break,
                Wait::Forever => shared.drained.wait(st).unwrap_or_else(|e| e.into_inner()),
                Wait::Until(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    shared
                        .drained
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        if let Some(error) = st.broken.clone() {
            return Err(error);
        }
        if st.flushing || !st.pending.is_empty() {
            return Err(Error::io(
                "cannot flush: the peer is not reading",
                io::ErrorKind::TimedOut.into(),
            ));
        }
        Ok(())
    }

    /// Flushes everything queued (within `linger`), then half-closes the stream so
    /// the peer reads the end of it after the last message. Stops the flusher.
    pub(crate) fn close(&self, linger: Wait) -> Result<(), Error> {
        let flushed = self.flush(linger);
        {
            let mut st = lock(&self.shared.state);
            st.closing = true;
            if flushed.is_err() && st.broken.is_none() {
                // Linger ran out: what is still queued is given up on.
                st.broken = Some(Error::Disconnected);
            }
            self.shared.work.notify_one();
        }
        let shutdown = self.shared.transport.shutdown_write();
        flushed?;
        shutdown.map_err(|e| Error::from_stream(e, "cannot shut down the stream"))
    }
}

/// The flusher thread: writes out whatever is queued, one batch per system call,
/// until the writer closes.
fn flusher(shared: Arc<Shared>) {
    let mut batch = SendBuffer::new();
    let mut st = lock(&shared.state);
    loop {
        if st.pending.is_empty() || st.broken.is_some() {
            st.flushing = false;
            shared.drained.notify_all();
            if st.closing {
                return;
            }
            st = shared.work.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        std::mem::swap(&mut st.pending, &mut batch);
        st.pending_msgs = 0;
        shared.drained.notify_all();
        let was_full = std::mem::take(&mut st.was_full);
        drop(st);
        if was_full {
            notify_drain(&shared);
        }
        let result = write_out(&*shared.transport, &mut batch, Wait::Forever);
        st = lock(&shared.state);
        if let Err(e) = result {
            st.broken = Some(Error::from_stream(e, "cannot write to the stream"));
            st.pending.clear();
            st.pending_msgs = 0;
            batch.clear();
            drop(st);
            notify_drain(&shared);
            st = lock(&shared.state);
        }
    }
}

fn notify_drain(shared: &Shared) {
    if let Some(notify) = shared.on_drain.get() {
        notify();
    }
}
