//! The scale group's client process: many peers of one kind in one process,
//! all libzmq sockets or plain TCP connections, talking to the server under
//! test over loopback. Every wait is bounded.
//!
//! - `dealers`: DEALER peers; `ready`, then per input line `round R MS` every
//!   peer sends one 64 B message tagged with R and the client waits (MS at
//!   most) for the echoes; it answers `done GOT` (echoes of round R received).
//! - `subs`: SUB peers subscribed to everything; `ready`, `subscribed` once
//!   every one has had a hello, then `done TOTAL` once every one has had
//!   `--messages` data messages, or `timeout TOTAL` at `--deadline-ms`; and
//!   `progress TOTAL` (data messages so far) every second meanwhile.
//! - `silent`: TCP connections that never send a byte; `ready OPEN FAILED`
//!   once connected, then `closed N MEDIAN_MS MAX_MS` once the server has
//!   closed them all (or at `--deadline-ms`): N closed, times since `ready`.

use std::ffi::c_void;
use std::io::{BufRead, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{ClientKind, say};
use crate::zmq_ffi::{self, PollItem, ZMQ_DEALER, ZMQ_DONTWAIT, ZMQ_POLLIN, ZMQ_SUB};

/// The hidden `scale-client` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub struct ClientArgs {
    #[arg(long)]
    pub kind: ClientKind,
    #[arg(long)]
    pub count: usize,
    #[arg(long)]
    pub endpoint: String,
    #[arg(long)]
    pub cpu: usize,
    /// Data messages each subscriber waits for.
    #[arg(long, default_value_t = 0)]
    pub messages: u64,
    /// When a `subs` or `silent` client gives up, from its start.
    #[arg(long, default_value_t = 60_000)]
    pub deadline_ms: u64,
    /// The SUBs' receive high-water mark.
    #[arg(long, default_value_t = 1000)]
    pub hwm: i32,
}

pub fn run(args: ClientArgs) -> Result<()> {
    crate::os::pin_to(args.cpu).context("pinning")?;
    super::proc::raise_fd_limit()?;
    match args.kind {
        ClientKind::Dealers => dealers(&args),
        ClientKind::Subs => subs(&args),
        ClientKind::Silent => silent(&args),
    }
}

/// `count` libzmq sockets of `kind` in one context, connected to `endpoint`.
fn sockets(args: &ClientArgs, kind: i32) -> Result<Vec<*mut c_void>> {
    let ctx = zmq_ffi::context(Some(args.count + 16))?;
    let mut all = Vec::with_capacity(args.count);
    for _ in 0..args.count {
        let s = zmq_ffi::socket(ctx, kind)?;
        zmq_ffi::set_int(s, zmq_ffi::ZMQ_LINGER, 0)?;
        if kind == ZMQ_SUB {
            zmq_ffi::set_int(s, zmq_ffi::ZMQ_RCVHWM, args.hwm)?;
            zmq_ffi::set_bytes(s, zmq_ffi::ZMQ_SUBSCRIBE, b"")?;
        }
        zmq_ffi::connect(s, &args.endpoint)?;
        all.push(s);
    }
    Ok(all)
}

/// Polls `items` for input for up to 10 ms; the indexes of those readable.
fn poll_ready(items: &mut [PollItem]) -> Result<Vec<usize>> {
    let n = i32::try_from(items.len()).context("too many sockets")?;
    // SAFETY: `items` is a valid array of `n` poll items with open sockets.
    let rc = unsafe { zmq_ffi::zmq_poll(items.as_mut_ptr(), n, 10) };
    if rc < 0 {
        if zmq_ffi::would_block() {
            return Ok(Vec::new());
        }
        return Err(zmq_ffi::last_error("zmq_poll"));
    }
    Ok(items
        .iter()
        .enumerate()
        .filter(|(_, it)| it.revents & ZMQ_POLLIN != 0)
        .map(|(i, _)| i)
        .collect())
}

/// Receives one message without waiting into `buf`; its size, or `None`.
fn try_recv(socket: *mut c_void, buf: &mut [u8]) -> Option<usize> {
    // SAFETY: the socket is open; libzmq writes at most `buf.len()` bytes.
    let rc = unsafe { zmq_ffi::zmq_recv(socket, buf.as_mut_ptr().cast(), buf.len(), ZMQ_DONTWAIT) };
    usize::try_from(rc).ok()
}

fn poll_items(sockets: &[*mut c_void], which: impl Iterator<Item = usize>) -> Vec<PollItem> {
    which
        .map(|i| PollItem {
            socket: sockets[i],
            fd: 0,
            events: ZMQ_POLLIN,
            revents: 0,
        })
        .collect()
}

fn dealers(args: &ClientArgs) -> Result<()> {
    let sockets = sockets(args, ZMQ_DEALER)?;
    say("ready");
    let mut buf = [0u8; 256];
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["round", round, ms] = words.as_slice() else {
            bail!("unknown command {line:?}");
        };
        let round: u64 = round.parse()?;
        let deadline = Instant::now() + Duration::from_millis(ms.parse()?);
        let mut unsent: Vec<usize> = (0..sockets.len()).collect();
        let mut waiting = vec![true; sockets.len()];
        let mut left = sockets.len();
        while left > 0 && Instant::now() < deadline {
            // A DEALER not yet connected refuses a send that may not wait;
            // it is tried again on the next pass.
            unsent.retain(|&i| {
                let mut m = [0u8; 64];
                m[..8].copy_from_slice(&round.to_le_bytes());
                m[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                // SAFETY: the socket is open; libzmq copies `m`.
                let rc =
                    unsafe { zmq_ffi::zmq_send(sockets[i], m.as_ptr().cast(), 64, ZMQ_DONTWAIT) };
                rc < 0
            });
            let pending: Vec<usize> = (0..sockets.len()).filter(|&i| waiting[i]).collect();
            let mut items = poll_items(&sockets, pending.iter().copied());
            for k in poll_ready(&mut items)? {
                let i = pending[k];
                while let Some(n) = try_recv(sockets[i], &mut buf) {
                    // An echo of an earlier round (one that timed out) is late,
                    // not an answer.
                    if n == 64 && buf[..8] == round.to_le_bytes() && waiting[i] {
                        waiting[i] = false;
                        left -= 1;
                    }
                }
            }
        }
        say(&format!("done {}", sockets.len() - left));
    }
    Ok(())
}

fn subs(args: &ClientArgs) -> Result<()> {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(args.deadline_ms);
    let sockets = sockets(args, ZMQ_SUB)?;
    say("ready");
    let mut hello = vec![false; sockets.len()];
    let mut data = vec![0u64; sockets.len()];
    let mut greeted = 0;
    let mut full = 0;
    let mut buf = [0u8; 256];
    let mut items = poll_items(&sockets, 0..sockets.len());
    let mut next_report = Instant::now();
    while full < sockets.len() {
        let now = Instant::now();
        if now >= deadline {
            say(&format!("timeout {}", data.iter().sum::<u64>()));
            return Ok(());
        }
        // So that the runner, which gives up first, knows what had arrived.
        if now >= next_report {
            say(&format!("progress {}", data.iter().sum::<u64>()));
            next_report = now + Duration::from_secs(1);
        }
        for i in poll_ready(&mut items)? {
            while let Some(n) = try_recv(sockets[i], &mut buf) {
                match buf[..n.min(buf.len())].first() {
                    Some(b'h') if !hello[i] => {
                        hello[i] = true;
                        greeted += 1;
                        if greeted == sockets.len() {
                            say("subscribed");
                        }
                    }
                    Some(b'd') => {
                        data[i] += 1;
                        if data[i] == args.messages {
                            full += 1;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    say(&format!("done {}", data.iter().sum::<u64>()));
    Ok(())
}

fn silent(args: &ClientArgs) -> Result<()> {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(args.deadline_ms);
    let addr: SocketAddr = args
        .endpoint
        .strip_prefix("tcp://")
        .context("a tcp:// endpoint")?
        .parse()?;
    let mut open = Vec::with_capacity(args.count);
    let mut failed = 0;
    for _ in 0..args.count {
        if Instant::now() >= deadline {
            failed += 1;
            continue;
        }
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(s) => {
                s.set_nonblocking(true)?;
                open.push(Some(s));
            }
            Err(_) => failed += 1,
        }
    }
    let ready = Instant::now();
    say(&format!("ready {} {failed}", open.len()));
    // The server's greeting arrives and is read and dropped; a read of 0 or an
    // error means the server closed the connection.
    let mut closed_after = Vec::new();
    let mut buf = [0u8; 512];
    while closed_after.len() < open.len() && Instant::now() < deadline {
        let (mut fds, which): (Vec<libc::pollfd>, Vec<usize>) = open
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((s.as_ref()?, i)))
            .map(|(s, i)| {
                let p = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                (p, i)
            })
            .unzip();
        // SAFETY: `fds` is a valid array of pollfd for open descriptors.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 50) };
        if rc <= 0 {
            continue;
        }
        for (p, &i) in fds.iter().zip(&which) {
            if p.revents == 0 {
                continue;
            }
            let slot = &mut open[i];
            let Some(s) = slot else { continue };
            let gone = loop {
                match s.read(&mut buf) {
                    Ok(0) => break true,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break false,
                    Err(_) => break true,
                }
            };
            if gone {
                closed_after.push(ready.elapsed().as_secs_f64() * 1e3);
                *slot = None;
            }
        }
    }
    closed_after.sort_by(f64::total_cmp);
    let median = closed_after
        .get(closed_after.len() / 2)
        .copied()
        .unwrap_or(0.0);
    let max = closed_after.last().copied().unwrap_or(0.0);
    say(&format!(
        "closed {} {median:.0} {max:.0}",
        closed_after.len()
    ));
    Ok(())
}
