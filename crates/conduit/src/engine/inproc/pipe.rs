//! One direction of an inproc link: the messages one socket sent another,
//! waiting for the receiving socket's reactor to take them.
//!
//! The sender pushes under its own socket's lock; the receiver's reactor takes
//! the whole queue at once and admits it under the receiving socket's lock.
//! Neither ever holds both socket locks, which is why the pipe sits between
//! them with a lock of its own (a leaf: nothing is locked while holding it).
//! The sender rings the receiver only when the receiver emptied the queue and
//! said it waits, so a stream costs one ring per batch the receiver takes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use conduit_proto::Message;

use crate::engine::out::Refused;
use crate::engine::{Doorbell, Task};
use crate::socket::core::Core;

/// Identifies a link within the process.
pub(crate) type LinkId = u64;

#[derive(Debug)]
pub(crate) struct Pipe {
    link: LinkId,
    /// Messages queued at most (the sender's high-water mark).
    hwm: usize,
    /// The sending socket, woken when a pipe it found full has room again.
    sender: Weak<Core>,
    state: Mutex<PipeState>,
}

#[derive(Debug, Default)]
struct PipeState {
    queue: VecDeque<Message>,
    /// Messages sent and not yet admitted by the receiving socket: those
    /// queued, and those the receiver took but holds for want of room. What
    /// the high-water mark counts, so that a link holds no more than the
    /// sender's mark plus the receiver's.
    outstanding: usize,
    /// The receiving socket's doorbell, once its reactor holds the other end.
    receiver: Option<Arc<Doorbell>>,
    /// The receiver found the queue empty: the next message rings it.
    receiver_waiting: bool,
    /// A sender found the queue full.
    sender_waiting: bool,
    /// The sender is done: the receiver ends the link once it has taken
    /// what is queued.
    sender_done: bool,
    /// The receiver is gone: sends are refused.
    receiver_done: bool,
}

/// What a receiver's [`Pipe::take`] found besides messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Took {
    /// Messages, or nothing yet (the receiver now waits for a ring).
    Open,
    /// The sender is done and everything is taken.
    Ended,
}

impl Pipe {
    pub(crate) fn new(link: LinkId, hwm: usize, sender: Weak<Core>) -> Arc<Pipe> {
        Arc::new(Pipe {
            link,
            hwm: hwm.max(1),
            sender,
            state: Mutex::new(PipeState::default()),
        })
    }

    pub(crate) fn link(&self) -> LinkId {
        self.link
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sender: queues `msg` unless the pipe is at its high-water mark
    /// (`bounded`) or the receiver is gone.
    pub(crate) fn offer(&self, msg: Message, bounded: bool) -> Result<(), Refused> {
        let mut st = self.lock();
        if st.receiver_done || st.sender_done {
            return Err(Refused::Broken(msg));
        }
        if bounded && st.outstanding >= self.hwm {
            st.sender_waiting = true;
            return Err(Refused::Full(msg));
        }
        st.queue.push_back(msg);
        st.outstanding += 1;
        let ring = self.ring_if_waiting(&mut st);
        drop(st);
        ring_now(ring, self.link);
        Ok(())
    }

    /// Whether a bounded offer would be refused for the high-water mark.
    pub(crate) fn is_full(&self) -> bool {
        let st = self.lock();
        !st.receiver_done && st.outstanding >= self.hwm
    }

    /// Sender: sends no more; the receiver ends the link after the last
    /// message.
    pub(crate) fn close_sender(&self) {
        let mut st = self.lock();
        if st.sender_done {
            return;
        }
        st.sender_done = true;
        st.receiver_waiting = true; // ring even while it is busy
        let ring = self.ring_if_waiting(&mut st);
        drop(st);
        ring_now(ring, self.link);
    }

    /// Receiver: its reactor holds this end now and rings go to `doorbell`.
    pub(crate) fn attach(&self, doorbell: Arc<Doorbell>) {
        self.lock().receiver = Some(doorbell);
    }

    /// Receiver: moves everything queued to the back of `into`. Finding
    /// nothing, it waits for the sender's ring.
    pub(crate) fn take(&self, into: &mut VecDeque<Message>) -> Took {
        let mut st = self.lock();
        let took = !st.queue.is_empty();
        if into.is_empty() {
            std::mem::swap(into, &mut st.queue);
        } else {
            into.append(&mut st.queue);
        }
        let ended = st.sender_done && !took;
        if !took {
            st.receiver_waiting = true;
        }
        if ended { Took::Ended } else { Took::Open }
    }

    /// Receiver: `n` messages it took are admitted (or dropped) by its
    /// socket: room for the sender, woken if it found the pipe full.
    pub(crate) fn admitted(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut st = self.lock();
        st.outstanding = st.outstanding.saturating_sub(n);
        let wake = std::mem::take(&mut st.sender_waiting);
        drop(st);
        if wake {
            self.wake_sender();
        }
    }

    /// Receiver: takes no more; what is queued is dropped and senders are
    /// refused from now on (their waiting ones woken to see it).
    pub(crate) fn close_receiver(&self) {
        let mut st = self.lock();
        if st.receiver_done {
            return;
        }
        st.receiver_done = true;
        st.receiver = None;
        st.queue.clear();
        st.outstanding = 0;
        let wake = std::mem::take(&mut st.sender_waiting);
        drop(st);
        if wake {
            self.wake_sender();
        }
    }

    fn ring_if_waiting(&self, st: &mut PipeState) -> Option<Arc<Doorbell>> {
        if st.receiver_waiting {
            if let Some(doorbell) = &st.receiver {
                st.receiver_waiting = false;
                return Some(doorbell.clone());
            }
        }
        None
    }

    fn wake_sender(&self) {
        if let Some(core) = self.sender.upgrade() {
            core.room_freed_elsewhere();
        }
    }
}

/// Rings outside the pipe's lock: the doorbell's locks come after it anyway,
/// but a waker's system call is better made holding nothing.
fn ring_now(doorbell: Option<Arc<Doorbell>>, link: LinkId) {
    if let Some(doorbell) = doorbell {
        doorbell.ring(Task::InprocDrain(link));
    }
}
