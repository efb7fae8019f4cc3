//! A PUB's shared batch: a message for the subscribers that take every topic
//! is encoded once, and each of them is handed the batch whole.
//!
//! Offered to each subscriber's queue in turn, a 64 B message costs a lock and
//! a copy in a queue the sender last touched a subscriber-count of offers ago:
//! at a thousand subscribers none of those queues is in cache, and the lock
//! waiting on the copy's cache misses was a third of the publisher's time
//! (BENCHMARKS.md, "Fan-out: one batch for every subscriber"). Here a send
//! appends the message once to a buffer that stays in cache; the batch goes
//! to the subscribers as one reference each (`PeerOut::offer_batch`): one lock
//! and one write per subscriber per batch instead of per message.
//!
//! Who takes the batch: live subscribers to every topic over a connection
//! without CURVE (whose frames are sealed one by one). The other peers (topic
//! filters, CURVE, inproc) are offered each message as before.
//!
//! When it goes out, as a peer's queue decides (`engine/out.rs`): at once
//! for a send after a pause; while the sender streams, once it holds
//! [`BATCH_MSGS`] messages or [`BATCH_BYTES`], and for the tail of a burst,
//! when the I/O thread sees the sender paused (`Task::FanoutTail`).
//!
//! Order and membership: a subscriber gets all its messages through the batch
//! or all through its queue, and the batch is handed out before anyone joins
//! or leaves the set of those who take it, so no one gets a message sent
//! before it subscribed, or misses one sent while it was subscribed.
//! High-water mark: each subscriber takes the batch's first messages up to its
//! mark; the rest are dropped for it, as they would have been one at a time.

use std::sync::Arc;

use bytes::BytesMut;
use conduit_proto::{COPY_LIMIT, Message, put_message};

use super::core::Slot;
use crate::engine::out::{self, BATCH_BYTES, BATCH_MSGS, PeerOut};
use crate::engine::outlet::Outlet;
use crate::engine::{Doorbell, Task};

#[derive(Debug, Default)]
pub(crate) struct Fanout {
    /// The batch: encoded messages, back to back.
    buf: BytesMut,
    /// Where each message of the batch ends in `buf`.
    ends: Vec<usize>,
    /// The subscribers that take the batch.
    members: Vec<Arc<PeerOut>>,
    /// The other live peers, by place in `State::peers`: offered each message.
    others: Vec<usize>,
    /// Messages per batch at most: [`BATCH_MSGS`], or fewer when the
    /// high-water mark is lower, so that no subscriber drops what it would
    /// have taken one message at a time.
    limit: usize,
    /// `members` and `others` are out of date (built again at the next send).
    stale: bool,
    /// The I/O thread will look at the batch's tail.
    tail_watched: bool,
    /// Messages ever appended, and batches ever handed out: how the I/O
    /// thread's look tells a sender still at work from one that paused.
    appended: u64,
    batches: u64,
}

/// What the I/O thread's look at a batch's tail came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TailLook {
    /// Handed out, or nothing left to hand out.
    Done,
    /// Look again later: the sender is at work, adding to the batch or
    /// handing out a batch (which takes a write per subscriber).
    Again(Watch),
}

/// Where a batch stood at a look at its tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Watch {
    pub(crate) appended: u64,
    pub(crate) batches: u64,
    /// A new batch since the last look: its tail gets the first, shortest wait.
    pub(crate) fresh: bool,
}

impl Fanout {
    /// Publishes `msg` to every live peer subscribed to it.
    pub(crate) fn publish(
        &mut self,
        peers: &[Slot],
        msg: &Message,
        doorbell: &Doorbell,
        socket_id: u64,
    ) {
        if self.stale {
            self.rebuild(peers);
        }
        if !self.members.is_empty() {
            if msg.byte_len() < COPY_LIMIT {
                self.append(msg, doorbell, socket_id);
            } else {
                // Large bodies go by reference, queue by queue; after the
                // batch, to keep the order.
                self.hand_out();
                for member in &self.members {
                    let _ = member.offer_ref(msg);
                }
            }
        }
        let topic = msg.first().map_or(&[][..], |f| &f[..]);
        let mut offered = 0;
        for &i in &self.others {
            let slot = &peers[i];
            if slot.subscriptions.matches(topic) {
                // Refused (at its high-water mark, or broken): dropped for this peer.
                let _ = slot.peer.out.offer_ref(msg);
                offered += 1;
            }
        }
        if offered >= MANY_PEERS {
            out::sent_to_many();
        }
    }

    fn append(&mut self, msg: &Message, doorbell: &Doorbell, socket_id: u64) {
        let first = self.ends.is_empty();
        put_message(&mut self.buf, msg);
        self.ends.push(self.buf.len());
        self.appended += 1;
        doorbell.note_queued();
        if self.ends.len() >= self.limit || self.buf.len() >= BATCH_BYTES {
            self.hand_out();
            out::wrote_batch();
        } else if first && !out::streaming() {
            self.hand_out();
            out::wrote_direct();
        } else if first && !self.tail_watched {
            self.tail_watched = true;
            doorbell.submit(Task::FanoutTail(socket_id, self.watch()));
        }
    }

    /// Gives every member the batch, and starts a new one.
    pub(crate) fn hand_out(&mut self) {
        if self.ends.is_empty() {
            return;
        }
        let batch = self.buf.split().freeze();
        for member in &self.members {
            member.offer_batch(&batch, &self.ends);
        }
        self.ends.clear();
        self.batches += 1;
    }

    /// Where the batch stands, for the I/O thread's next look at its tail.
    fn watch(&self) -> Watch {
        Watch {
            appended: self.appended,
            batches: self.batches,
            fresh: true,
        }
    }

    /// The I/O thread's look at the tail of a burst, `seen` at its last:
    /// hands the batch out once nothing was added since, or once `overdue`
    /// (the look waited its longest), so that a sender trickling messages
    /// does not keep the first of them waiting for a whole batch.
    pub(crate) fn look_at_tail(&mut self, seen: Watch, overdue: bool) -> TailLook {
        if self.ends.is_empty() {
            self.tail_watched = false;
            return TailLook::Done;
        }
        if self.batches != seen.batches {
            return TailLook::Again(self.watch());
        }
        if self.appended != seen.appended && !overdue {
            return TailLook::Again(Watch {
                fresh: false,
                ..self.watch()
            });
        }
        self.tail_watched = false;
        self.hand_out();
        TailLook::Done
    }

    /// Who takes the batch is about to change (a peer joins, leaves, or
    /// subscribes to all topics or stops): the batch goes to those it was
    /// sent for first.
    pub(crate) fn invalidate(&mut self) {
        self.hand_out();
        self.stale = true;
    }

    fn rebuild(&mut self, peers: &[Slot]) {
        debug_assert!(self.ends.is_empty(), "membership changed under a batch");
        self.members.clear();
        self.others.clear();
        self.limit = BATCH_MSGS;
        for (i, slot) in peers.iter().enumerate() {
            if slot.gone {
                continue;
            }
            match &slot.peer.out {
                Outlet::Stream(q) if slot.subscriptions.matches_all() && !q.is_sealed() => {
                    self.limit = self.limit.min(q.hwm());
                    self.members.push(q.clone());
                }
                _ => self.others.push(i),
            }
        }
        self.stale = false;
    }
}

/// A send to this many peers or more is long enough to time a stream by its
/// end (see `out::sent_to_many`).
const MANY_PEERS: usize = 8;
