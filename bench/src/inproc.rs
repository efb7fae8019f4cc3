//! The inproc group: round trips and streams between two threads of this
//! process, conduit's `inproc://` next to libzmq's (the two sockets in one
//! context), on one core and on two. PAIR for round trips, PUSH to PULL for
//! streams, as in the matrix; the same loops (`measure`).
//!
//! Each measurement has sockets and a name of its own. A round trip ends with
//! an empty message the echoing thread stops at; a stream ends with a flag the
//! sending thread checks between sends, while the measuring thread drains
//! until the sender is done.

use std::ffi::c_void;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use conduit::{Message, RecvTimeoutError, Socket, SocketType};
use serde::Serialize;

use crate::case::{Cores, Mode, Timing};
use crate::measure::{self, Link};
use crate::zmq_ffi::{self, ZMQ_PAIR, ZMQ_PULL, ZMQ_PUSH, ZmqMsg, check};

/// What the group measures.
#[derive(Debug)]
pub struct InprocPlan {
    pub modes: Vec<Mode>,
    pub sizes: Vec<usize>,
    pub cores: Vec<Cores>,
    pub timing: Timing,
    pub rounds: u32,
    pub cpus: [usize; 2],
}

/// The implementations compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InprocImpl {
    Conduit,
    Libzmq,
}

/// One cell: the median over rounds.
#[derive(Debug, Clone, Serialize)]
pub struct InprocRow {
    pub imp: InprocImpl,
    pub mode: Mode,
    pub size: usize,
    pub cores: Cores,
    /// Round trip median in microseconds (`lat`) or messages a second (`thr`).
    pub value: f64,
}

/// One end of a link between two threads: a `measure::Link` that can also
/// send the empty message that ends an echo, and wait a bounded time.
trait End: Link + Send {
    fn send_stop(&mut self) -> Result<()>;
    /// A message within `wait`, its size; `None` if none came.
    fn recv_within(&mut self, wait: Duration) -> Result<Option<usize>>;
}

static NEXT_NAME: AtomicU64 = AtomicU64::new(1);

struct ConduitEnd {
    socket: Socket,
    payload: Bytes,
}

impl Link for ConduitEnd {
    fn send(&mut self) -> Result<()> {
        self.socket.send(Message::from(self.payload.clone()))?;
        Ok(())
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        Ok(Some(self.socket.recv()?.byte_len()))
    }

    fn echo(&mut self) -> Result<bool> {
        let m = self.socket.recv()?;
        if m.byte_len() == 0 {
            return Ok(false);
        }
        self.socket.send(m)?;
        Ok(true)
    }
}

impl End for ConduitEnd {
    fn send_stop(&mut self) -> Result<()> {
        self.socket.send(Message::from(Bytes::new()))?;
        Ok(())
    }

    fn recv_within(&mut self, wait: Duration) -> Result<Option<usize>> {
        match self.socket.recv_timeout(wait) {
            Ok(m) => Ok(Some(m.byte_len())),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

fn conduit_pair(mode: Mode, size: usize) -> Result<(Box<dyn End>, Box<dyn End>)> {
    let (local, remote) = match mode {
        Mode::Lat => (SocketType::Pair, SocketType::Pair),
        Mode::Thr => (SocketType::Pull, SocketType::Push),
    };
    let name = format!(
        "inproc://bench-{}",
        NEXT_NAME.fetch_add(1, Ordering::Relaxed)
    );
    let a = Socket::new(local)?;
    a.bind(&name)?;
    let b = Socket::new(remote)?;
    b.connect(&name)?;
    let payload = Bytes::from(vec![0xA5; size]);
    Ok((
        Box::new(ConduitEnd {
            socket: a,
            payload: payload.clone(),
        }),
        Box::new(ConduitEnd { socket: b, payload }),
    ))
}

/// A libzmq socket, moved to the thread that uses it once (libzmq allows a
/// socket to change threads across a full memory barrier, which spawning and
/// joining are) and closed by whoever drops it last.
struct ZmqEnd {
    socket: *mut c_void,
    msg: Box<ZmqMsg>,
    payload: Vec<u8>,
}

// SAFETY: see the type's documentation: one thread at a time uses it.
unsafe impl Send for ZmqEnd {}

impl Drop for ZmqEnd {
    fn drop(&mut self) {
        // SAFETY: the socket is open and used by no other thread now.
        unsafe {
            zmq_ffi::zmq_msg_close(&mut *self.msg);
            zmq_ffi::zmq_close(self.socket);
        }
    }
}

impl ZmqEnd {
    fn send_bytes(&mut self, n: usize) -> Result<()> {
        // SAFETY: the socket is open; libzmq copies the bytes before returning.
        let rc = unsafe { zmq_ffi::zmq_send(self.socket, self.payload.as_ptr().cast(), n, 0) };
        check(rc, "zmq_send").map(drop)
    }

    fn recv_msg(&mut self, flags: i32) -> Result<Option<usize>> {
        // SAFETY: the socket is open and `msg` initialized.
        let rc = unsafe { zmq_ffi::zmq_msg_recv(&mut *self.msg, self.socket, flags) };
        if rc < 0 && zmq_ffi::would_block() {
            return Ok(None);
        }
        Ok(Some(check(rc, "zmq_msg_recv")? as usize))
    }
}

impl Link for ZmqEnd {
    fn send(&mut self) -> Result<()> {
        self.send_bytes(self.payload.len())
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        self.recv_msg(0)
    }

    fn echo(&mut self) -> Result<bool> {
        let n = self.recv_msg(0)?.context("no message")?;
        if n == 0 {
            return Ok(false);
        }
        // SAFETY: as in recv_msg; zmq_msg_send leaves `msg` empty and initialized.
        let rc = unsafe { zmq_ffi::zmq_msg_send(&mut *self.msg, self.socket, 0) };
        check(rc, "zmq_msg_send")?;
        Ok(true)
    }
}

impl End for ZmqEnd {
    fn send_stop(&mut self) -> Result<()> {
        self.send_bytes(0)
    }

    fn recv_within(&mut self, wait: Duration) -> Result<Option<usize>> {
        let mut item = zmq_ffi::PollItem {
            socket: self.socket,
            fd: 0,
            events: zmq_ffi::ZMQ_POLLIN,
            revents: 0,
        };
        // SAFETY: one valid poll item.
        let rc = unsafe { zmq_ffi::zmq_poll(&mut item, 1, wait.as_millis() as _) };
        check(rc, "zmq_poll")?;
        self.recv_msg(zmq_ffi::ZMQ_DONTWAIT)
    }
}

/// libzmq's inproc works within one context: the group's.
fn zmq_context() -> Result<*mut c_void> {
    static CTX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    if let Some(&ctx) = CTX.get() {
        return Ok(ctx as *mut c_void);
    }
    let ctx = zmq_ffi::context(None)? as usize;
    Ok(*CTX.get_or_init(|| ctx) as *mut c_void)
}

fn zmq_pair(mode: Mode, size: usize) -> Result<(Box<dyn End>, Box<dyn End>)> {
    let (local, remote) = match mode {
        Mode::Lat => (ZMQ_PAIR, ZMQ_PAIR),
        Mode::Thr => (ZMQ_PULL, ZMQ_PUSH),
    };
    let ctx = zmq_context()?;
    let name = format!(
        "inproc://bench-zmq-{}",
        NEXT_NAME.fetch_add(1, Ordering::Relaxed)
    );
    let open = |kind| -> Result<ZmqEnd> {
        let socket = zmq_ffi::socket(ctx, kind)?;
        zmq_ffi::set_int(socket, zmq_ffi::ZMQ_LINGER, 0)?;
        Ok(ZmqEnd {
            socket,
            msg: zmq_ffi::message()?,
            payload: vec![0xA5; size],
        })
    };
    let a = open(local)?;
    zmq_ffi::bind(a.socket, &name)?;
    let b = open(remote)?;
    zmq_ffi::connect(b.socket, &name)?;
    Ok((Box::new(a), Box::new(b)))
}

/// One measurement: the measuring end here, the other in a thread pinned
/// as `cores` says.
fn measure_once(
    imp: InprocImpl,
    mode: Mode,
    size: usize,
    cores: Cores,
    plan: &InprocPlan,
) -> Result<f64> {
    let (mut local, mut remote) = match imp {
        InprocImpl::Conduit => conduit_pair(mode, size)?,
        InprocImpl::Libzmq => zmq_pair(mode, size)?,
    };
    let cpu = match cores {
        Cores::Same => plan.cpus[0],
        Cores::Separate => plan.cpus[1],
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let other = std::thread::spawn(move || -> Result<Box<dyn End>> {
        crate::os::pin_to(cpu).context("cannot pin the other end")?;
        match mode {
            Mode::Lat => measure::echo(&mut *remote)?,
            Mode::Thr => {
                while !stop2.load(Ordering::Relaxed) {
                    remote.send()?;
                }
            }
        }
        Ok(remote)
    });
    let value = match mode {
        Mode::Lat => {
            let trips = measure::ping_pong(&mut *local, size, &plan.timing);
            local.send_stop()?;
            trips?.median_us()
        }
        Mode::Thr => {
            let drained = measure::drain(&mut *local, size, &plan.timing);
            stop.store(true, Ordering::Relaxed);
            // Keep reading so that a sender blocked at its high-water mark
            // sees the flag.
            while !other.is_finished() {
                local.recv_within(Duration::from_millis(5))?;
            }
            drained?.msgs_per_s
        }
    };
    let remote = other
        .join()
        .map_err(|_| anyhow::anyhow!("the other end panicked"))??;
    drop((local, remote));
    Ok(value)
}

/// Runs the group: every cell once per round, the implementations
/// interleaved, each cell's median reported.
pub fn run(plan: &InprocPlan) -> Result<(Vec<InprocRow>, usize)> {
    crate::os::pin_to(plan.cpus[0]).context("cannot pin the measuring thread")?;
    let mut cells: Vec<(InprocImpl, Mode, usize, Cores, Vec<f64>)> = Vec::new();
    for &mode in &plan.modes {
        for &size in &plan.sizes {
            for &cores in &plan.cores {
                for imp in [InprocImpl::Conduit, InprocImpl::Libzmq] {
                    cells.push((imp, mode, size, cores, Vec::new()));
                }
            }
        }
    }
    let mut failures = 0;
    for round in 0..plan.rounds {
        for (imp, mode, size, cores, values) in &mut cells {
            match measure_once(*imp, *mode, *size, *cores, plan) {
                Ok(v) => values.push(v),
                Err(e) => {
                    failures += 1;
                    eprintln!("inproc {imp:?} {mode} {size} B {cores}, round {round}: {e:#}");
                }
            }
        }
    }
    let rows = cells
        .into_iter()
        .filter(|c| !c.4.is_empty())
        .map(|(imp, mode, size, cores, mut values)| InprocRow {
            imp,
            mode,
            size,
            cores,
            value: measure::median(&mut values),
        })
        .collect();
    Ok((rows, failures))
}

/// The group's table: conduit next to libzmq per cell, with the ratio.
pub fn table(rows: &[InprocRow]) -> Result<String> {
    let mut out = String::from(
        "inproc (two threads of one process)\n\n\
         | measure | size | cores | conduit | libzmq | conduit/libzmq |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in rows.iter().filter(|r| r.imp == InprocImpl::Conduit) {
        let Some(zmq) = rows.iter().find(|r| {
            r.imp == InprocImpl::Libzmq
                && r.mode == row.mode
                && r.size == row.size
                && r.cores == row.cores
        }) else {
            continue;
        };
        let (what, fmt): (&str, fn(f64) -> String) = match row.mode {
            Mode::Lat => ("round trip", |v| format!("{v:.1} us")),
            Mode::Thr => ("stream", |v| format!("{:.2} M/s", v / 1e6)),
        };
        if zmq.value <= 0.0 {
            bail!("libzmq measured nothing for {what}");
        }
        out += &format!(
            "| {what} | {} B | {} | {} | {} | {:.2} |\n",
            row.size,
            row.cores,
            fmt(row.value),
            fmt(zmq.value),
            row.value / zmq.value
        );
    }
    Ok(out)
}
