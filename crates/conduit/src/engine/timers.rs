//! An I/O thread's timers: a heap of deadlines, and a timerfd armed for the
//! earliest, so that waits shorter than epoll's millisecond (a burst's tail
//! flush waits 20 us) are kept.
//!
//! A timer is never cancelled: it names the connection it is for by token and
//! serial, and one that finds the connection gone (or its reason past) does
//! nothing.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

use super::out::ConnId;
use crate::socket::fanout::Watch;

/// What a timer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Write a burst's tail if nothing was added since `appended` (and no
    /// whole batch written since `batches`).
    TailFlush {
        conn: (usize, u64),
        appended: u64,
        batches: u64,
        wait_us: u32,
    },
    /// Look at the socket's tails of bursts when it has many
    /// (`Reactor::look_at_tails`): the sender had queued `queued` messages
    /// when this was set.
    Tails { queued: u64, wait_us: u32 },
    /// Look at the tail of socket `socket`'s PUB batch (`socket/fanout.rs`),
    /// which stood at `seen` at the last look.
    Fanout {
        socket: u64,
        seen: Watch,
        wait_us: u32,
    },
    /// A handshake's deadline.
    Handshake((usize, u64)),
    /// A heartbeat is due (PING to send, or silence to judge).
    Heartbeat((usize, u64)),
    /// Try connecting again.
    Reconnect(usize, u64),
    /// Try accepting again after running out of descriptors.
    Accept(usize, u64),
}

impl Timer {
    pub(crate) fn conn(c: ConnId) -> (usize, u64) {
        (c.token, c.serial)
    }
}

#[derive(Debug)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    seq: u64,
    fd: OwnedFd,
    /// The deadline the timerfd is armed for.
    armed: Option<Instant>,
}

impl Timers {
    pub(crate) fn new() -> std::io::Result<Timers> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        Ok(Timers {
            heap: BinaryHeap::new(),
            seq: 0,
            fd,
            armed: None,
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) fn add(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, timer)));
    }

    /// The earliest deadline.
    #[cfg(feature = "tokio")]
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The timers due at `now`, earliest first.
    pub(crate) fn due(&mut self, now: Instant, out: &mut Vec<Timer>) {
        while let Some(Reverse((at, _, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, t)) = self.heap.pop().expect("peeked");
            out.push(t);
        }
    }

    /// Reads the timerfd's expiry count, so that it stops being readable.
    pub(crate) fn acknowledge(&mut self) {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut buf);
        self.armed = None;
    }

    /// Arms the timerfd for the earliest deadline, if that changed.
    pub(crate) fn arm(&mut self) {
        let next = self.heap.peek().map(|Reverse((at, _, _))| *at);
        if next == self.armed {
            return;
        }
        self.armed = next;
        let now = Instant::now();
        let value = match next {
            // A zero value disarms a timerfd: a deadline already past fires in 1 ns.
            Some(at) => timespec(
                at.saturating_duration_since(now)
                    .max(Duration::from_nanos(1)),
            ),
            None => timespec(Duration::ZERO),
        };
        let spec = Itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: value,
        };
        let _ = timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &spec);
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    }
}
