//! One peer's send queue, shared by the application's threads and the peer's
//! I/O thread.
//!
//! One `write` per message caps small messages near a million a second here,
//! while one `writev` of many goes ten times faster; but waiting for a batch
//! (or handing each message to the I/O thread) adds a wake-up to every reply.
//! So each send picks, under the queue's lock:
//!
//! - **now**: the queue was empty and the thread is not streaming (it
//!   received something since its last send, or its last direct write was
//!   more than [`BURST_WINDOW`] ago; see `pace`): the caller writes the
//!   message itself, without blocking;
//! - **batched**: the caller is streaming: the message is appended. The caller
//!   writes the queue itself once it holds [`BATCH_MSGS`] messages or
//!   [`BATCH_BYTES`]; the tail of a burst is written by the I/O thread once
//!   nothing was added for a little while ([`TAIL_WAIT`], growing to
//!   [`TAIL_WAIT_MAX`] while the sender keeps writing whole batches itself).
//!
//! Every write is non-blocking and made under the lock, by whichever thread,
//! so bytes go out in queue order. What the kernel does not take stays queued
//! and the I/O thread writes it when the connection is writable again. The
//! queue holds at most the high-water mark of messages (commands are not
//! counted); it is counted in whole batches: the count falls to zero when the
//! queue is empty.

use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use conduit_proto::{Command, Message, Sealer, SendBuffer};

use super::io_thread::Doorbell;
use super::reactor::Task;
use crate::error::Error;
use crate::transport::socket::SocketStream;
use crate::transport::{Transport, Wait};

/// Sends closer together than this, with no receive in between, count as a stream.
pub(crate) const BURST_WINDOW: Duration = Duration::from_micros(20);

/// Messages this large are written at once when the queue is empty: the system
/// call is amortized over the payload.
const DIRECT_SIZE: usize = 64 << 10;

/// The sender writes the queue itself at this many messages ...
pub(crate) const BATCH_MSGS: usize = 256;

/// ... or this many bytes.
pub(crate) const BATCH_BYTES: usize = 64 << 10;

/// How long the tail of a burst waits for more before the I/O thread writes it.
pub(crate) const TAIL_WAIT: Duration = BURST_WINDOW;

/// The longest wait between the I/O thread's looks at a queue that keeps growing.
pub(crate) const TAIL_WAIT_MAX: Duration = Duration::from_micros(160);

/// Slices per `writev`.
const MAX_IOV: usize = 64;

/// Whether the calling thread's sends come as a stream, so that they are
/// batched rather than written one by one. Judged per thread, not per peer, so
/// that a PUB fanning out to a thousand subscribers (each of which sees one
/// message per thousand sends) batches too; and read without the clock while
/// a stream runs, since a clock read per message costs a fifth of a small
/// message's budget here.
mod pace {
    use std::cell::Cell;
    use std::time::Instant;

    use super::BURST_WINDOW;

    #[derive(Clone, Copy)]
    struct Pace {
        /// The thread's received-message count when it last decided.
        seen_received: u64,
        /// When the thread last wrote a message directly, or ended a send
        /// to many peers.
        last_direct: Option<Instant>,
        /// It wrote a whole batch itself: it is streaming.
        batch_written: bool,
        /// The send the cached decision is for, and the decision.
        send: u64,
        decided: Option<bool>,
    }

    thread_local! {
        static PACE: Cell<Pace> = const {
            Cell::new(Pace {
                seen_received: 0,
                last_direct: None,
                batch_written: false,
                send: 0,
                decided: None,
            })
        };
    }

    /// A new send begins (one decision serves all the peers it goes to).
    pub(crate) fn begin_send() {
        PACE.with(|p| {
            let mut pace = p.get();
            pace.send = pace.send.wrapping_add(1);
            pace.decided = None;
            p.set(pace);
        });
    }

    /// Whether this send is part of a stream: it follows a whole batch the
    /// thread wrote, or a direct write less than [`BURST_WINDOW`] ago, with
    /// nothing received in between. Asked only when a peer's queue is empty.
    pub(crate) fn streaming() -> bool {
        PACE.with(|p| {
            let mut pace = p.get();
            if let Some(d) = pace.decided {
                return d;
            }
            let received = crate::reader::received_here();
            let answering = received != pace.seen_received;
            pace.seen_received = received;
            let d = !answering
                && (std::mem::take(&mut pace.batch_written)
                    || pace.last_direct.is_some_and(|t| t.elapsed() < BURST_WINDOW));
            pace.decided = Some(d);
            p.set(pace);
            d
        })
    }

    /// The thread wrote a message directly (the clock is read next to a
    /// system call, where it costs little in comparison).
    pub(crate) fn wrote_direct() {
        PACE.with(|p| {
            let mut pace = p.get();
            pace.last_direct = Some(Instant::now());
            p.set(pace);
        });
    }

    /// The thread ended a send offered to many peers' queues (a PUB's, to
    /// subscribers outside its shared batch: `socket/fanout.rs`). Such a
    /// send takes longer than [`BURST_WINDOW`] by itself, so the time of its
    /// last direct write cannot tell a stream: a publisher sending back to
    /// back would find every queue it left to the I/O thread's tail flush
    /// empty again, and write each message to each subscriber alone (at a
    /// thousand subscribers, 1.4 million writes of one 64 B message for
    /// 20,000 sends). One clock read per such send is cheap next to its
    /// many offers.
    pub(crate) fn sent_to_many() {
        PACE.with(|p| {
            let mut pace = p.get();
            pace.last_direct = Some(Instant::now());
            p.set(pace);
        });
    }

    /// The thread wrote a whole batch itself.
    pub(crate) fn wrote_batch() {
        PACE.with(|p| {
            let mut pace = p.get();
            pace.batch_written = true;
            p.set(pace);
        });
    }
}

pub(crate) use pace::{begin_send, sent_to_many, streaming, wrote_batch, wrote_direct};

/// Which connection of which I/O thread a queue belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ConnId {
    pub(crate) token: usize,
    pub(crate) serial: u64,
}

#[derive(Debug)]
pub(crate) struct OutState {
    /// Taken away when the connection ends, so that its descriptor closes even
    /// while the socket keeps the peer for the messages it left unread.
    stream: Option<Arc<SocketStream>>,
    buf: SendBuffer,
    /// CURVE: seals every message and command as it is queued, so boxes go
    /// out in the order of their nonces. Boxed, like `broken`, so that what
    /// a send touches fits in fewer cache lines: a PUB touches one such queue
    /// per subscriber per message, and at a thousand they are not in cache.
    sealer: Option<Box<Sealer>>,
    /// Messages in `buf` (not commands): what the high-water mark counts.
    msgs: usize,
    /// Messages ever appended while streaming, so the tail flush can tell a
    /// queue that is still growing.
    appended: u64,
    /// Whole batches the sender wrote itself, so that the tail flush can
    /// tell a queue that is the start of the next batch of a stream.
    batches: u64,
    /// The I/O thread will look at the queue (a tail flush is scheduled, or it
    /// waits for the connection to become writable): no need to ask it again.
    io_pending: bool,
    /// The kernel took less than all last time: writability brings the I/O
    /// side back, and senders only queue meanwhile (a write per send would
    /// only hear "would block" again).
    blocked: bool,
    /// A sender found the queue full: wake senders when it drains.
    was_full: bool,
    sent_any: bool,
    broken: Option<Box<Error>>,
}

/// Why a message was not queued.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue is at the high-water mark.
    Full(Message),
    /// The connection is broken; the message is handed back.
    Broken(Message),
}

/// Why a message offered by reference was not queued (see [`Refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Full,
    Broken,
}

impl Refusal {
    /// The refusal, with the message handed back.
    pub(crate) fn with(self, msg: Message) -> Refused {
        match self {
            Refusal::Full => Refused::Full(msg),
            Refusal::Broken => Refused::Broken(msg),
        }
    }
}

/// A peer's send queue.
#[derive(Debug)]
pub(crate) struct PeerOut {
    io: Arc<Doorbell>,
    conn: ConnId,
    hwm: usize,
    batch_msgs: usize,
    state: Mutex<OutState>,
}

/// What a write from the queue came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything is written.
    Empty,
    /// The kernel took what it could; the rest waits for writability.
    Blocked,
    /// The connection broke.
    Broken,
}

impl PeerOut {
    pub(crate) fn new(
        stream: Arc<SocketStream>,
        io: Arc<Doorbell>,
        conn: ConnId,
        hwm: usize,
    ) -> PeerOut {
        let hwm = hwm.max(1);
        PeerOut {
            io,
            conn,
            hwm,
            batch_msgs: BATCH_MSGS.min(hwm),
            state: Mutex::new(OutState {
                stream: Some(stream),
                buf: SendBuffer::new(),
                sealer: None,
                msgs: 0,
                appended: 0,
                batches: 0,
                io_pending: false,
                blocked: false,
                was_full: false,
                sent_any: false,
                broken: None,
            }),
        }
    }

    pub(crate) fn conn(&self) -> ConnId {
        self.conn
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, OutState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `msg` without waiting, writing it (or the batch it completes) at
    /// once when that is the faster path (see the module documentation).
    pub(crate) fn offer(&self, msg: Message) -> Result<(), Refused> {
        self.offer_ref(&msg).map_err(|why| why.with(msg))
    }

    /// [`offer`](Self::offer) for a message the caller keeps: what is queued
    /// is encoded from it (small bodies copied, large ones shared), so a PUB
    /// offering one message to many subscribers need not clone it for each.
    pub(crate) fn offer_ref(&self, msg: &Message) -> Result<(), Refusal> {
        let mut st = self.lock();
        if st.broken.is_some() {
            return Err(Refusal::Broken);
        }
        if st.msgs >= self.hwm {
            st.was_full = true;
            return Err(Refusal::Full);
        }
        st.sent_any = true;
        self.io.note_queued();
        let idle = st.buf.is_empty();
        st.push_message(msg);
        st.msgs += 1;
        if idle && (msg.byte_len() >= DIRECT_SIZE || !pace::streaming()) {
            self.write_now(&mut st);
            pace::wrote_direct();
            return Ok(());
        }
        st.appended += 1;
        if st.blocked {
            // The I/O side writes once the kernel has room; the sender tries
            // again at each further batch, so that a slow reader's queues are
            // written together rather than one per writability event.
            if st.msgs % self.batch_msgs == 0 {
                let _ = self.flush_locked(&mut st);
            }
        } else if st.msgs >= self.batch_msgs || st.buf.len() >= BATCH_BYTES {
            self.write_now(&mut st);
            st.batches += 1;
            pace::wrote_batch();
        } else if !st.io_pending {
            st.io_pending = true;
            self.io.submit(Task::TailFlush(self.conn));
        }
        Ok(())
    }

    /// Queues the first messages of a fan-out batch (`socket/fanout.rs`), as
    /// many as the high-water mark leaves room for, and writes them. `batch`
    /// holds whole encoded messages shared with the other subscribers;
    /// message `k` ends at `ends[k]`. Messages past the mark are dropped for
    /// this subscriber, as a PUB drops them one by one. Never for a sealed
    /// queue (its frames must be sealed one by one).
    pub(crate) fn offer_batch(&self, batch: &Bytes, ends: &[usize]) {
        let mut st = self.lock();
        debug_assert!(st.sealer.is_none(), "a fan-out batch for a CURVE queue");
        if st.broken.is_some() || ends.is_empty() {
            return;
        }
        let n = ends.len().min(self.hwm.saturating_sub(st.msgs));
        if n < ends.len() {
            st.was_full = true;
        }
        if n == 0 {
            return;
        }
        let frames = if n == ends.len() {
            batch.clone()
        } else {
            batch.slice(..ends[n - 1])
        };
        st.sent_any = true;
        st.buf.push_encoded(frames);
        st.msgs += n;
        st.appended += n as u64;
        // While the kernel is full this only queues: the I/O thread writes
        // when the connection is writable again, then as much as the kernel
        // has room for. Tried at each batch instead, a slow subscriber's
        // queue went out in writes as small as the room each found, and its
        // reader paid for every one of them.
        self.write_now(&mut st);
    }

    /// Whether what is queued is sealed (CURVE).
    pub(crate) fn is_sealed(&self) -> bool {
        self.lock().sealer.is_some()
    }

    /// Queues a command (SUBSCRIBE, CANCEL, PONG, PING, ERROR) or a message the
    /// high-water mark must not hold back (a subscription in ZMTP 3.0 form),
    /// and writes it now if the queue lets it.
    pub(crate) fn push_unbounded(&self, item: Unbounded<'_>) {
        let mut st = self.lock();
        if st.broken.is_some() {
            return;
        }
        match item {
            Unbounded::Command(cmd) => st.push_command(cmd),
            Unbounded::Message(msg) => st.push_message(msg),
            Unbounded::Bytes(bytes) => st.buf.push_bytes(bytes),
        }
        self.write_now(&mut st);
    }

    /// Writes the queue without blocking; asks the I/O thread to finish it
    /// when the kernel is full.
    fn write_now(&self, st: &mut OutState) {
        if st.blocked && st.io_pending {
            return; // writability brings the I/O side back
        }
        if self.flush_locked(st) == Flushed::Blocked && !st.io_pending {
            st.io_pending = true;
            self.io.submit(Task::Writable(self.conn));
        }
    }

    /// Writes as much of the queue as the kernel takes (the I/O thread's
    /// call). `io_pending` is left to the caller.
    pub(crate) fn flush_locked(&self, st: &mut OutState) -> Flushed {
        if st.broken.is_some() {
            return Flushed::Broken;
        }
        let Some(stream) = st.stream.clone() else {
            return Flushed::Broken;
        };
        match write_out(&stream, &mut st.buf) {
            Ok(()) => {
                st.msgs = 0;
                st.blocked = false;
                Flushed::Empty
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                st.blocked = true;
                Flushed::Blocked
            }
            Err(e) => {
                st.broken = Some(Box::new(Error::from_stream(
                    e,
                    "cannot write to the stream",
                )));
                st.buf.clear();
                st.msgs = 0;
                Flushed::Broken
            }
        }
    }

    /// From now on, seals what is queued (CURVE); set when the handshake
    /// completes, before anything else is queued.
    pub(crate) fn set_sealer(&self, sealer: Sealer) {
        self.lock().sealer = Some(Box::new(sealer));
    }

    /// Marks the queue broken (the connection ended): senders skip this peer,
    /// and the stream is let go.
    pub(crate) fn set_broken(&self, error: Error) {
        let mut st = self.lock();
        if st.broken.is_none() {
            st.broken = Some(Box::new(error));
        }
        st.buf.clear();
        st.msgs = 0;
        st.stream = None;
    }

    /// Whether a send would be refused for the high-water mark.
    pub(crate) fn is_full(&self) -> bool {
        let st = self.lock();
        st.broken.is_none() && st.msgs >= self.hwm
    }
}

impl OutState {
    fn push_message(&mut self, msg: &Message) {
        self.buf.push_message_via(self.sealer.as_deref_mut(), msg);
    }

    fn push_command(&mut self, cmd: &Command) {
        self.buf.push_command_via(self.sealer.as_deref_mut(), cmd);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn appended(&self) -> u64 {
        self.appended
    }

    pub(crate) fn batches(&self) -> u64 {
        self.batches
    }

    pub(crate) fn set_io_pending(&mut self, on: bool) {
        self.io_pending = on;
    }

    /// Takes the "a sender found it full" flag once the queue has room again.
    pub(crate) fn take_room_freed(&mut self, hwm_room: bool) -> bool {
        if self.was_full && hwm_room {
            self.was_full = false;
            return true;
        }
        false
    }

    pub(crate) fn below_hwm(&self, hwm: usize) -> bool {
        self.msgs < hwm
    }

    pub(crate) fn sent_any(&self) -> bool {
        self.sent_any
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }
}

impl PeerOut {
    pub(crate) fn hwm(&self) -> usize {
        self.hwm
    }
}

/// What [`PeerOut::push_unbounded`] queues.
#[derive(Debug)]
pub(crate) enum Unbounded<'a> {
    Command(&'a Command),
    Message(&'a Message),
    /// Raw bytes: the greeting.
    Bytes(&'a [u8]),
}

/// Writes `buf` until it is empty or the kernel would block.
fn write_out(stream: &SocketStream, buf: &mut SendBuffer) -> io::Result<()> {
    while !buf.is_empty() {
        let written = {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = buf.io_slices(&mut slices);
            stream.write(&slices[..n], Wait::Never)?
        };
        buf.advance(written);
    }
    Ok(())
}
