//! `conduit proxy`: forwards between a frontend and a backend socket, showing
//! the traffic on standard error with `--capture`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Result, anyhow};
use conduit::{Socket, SocketType};

use crate::Outcome;
use crate::args::{CaptureFormat, CommonArgs, ProxyArgs, ProxyKind};
use crate::format::{Format, render};
use crate::interrupt::{self, Waited};
use crate::socket_cmd::{finish, open_as, recv, send, timed_out};

/// Traffic through the proxy, shared by the forwarding threads.
#[derive(Debug)]
struct Traffic {
    /// Messages taken for forwarding, and those forwarded.
    forwarded: AtomicU64,
    sent: AtomicU64,
    count: Option<u64>,
    last: Mutex<Instant>,
    capture: Option<Format>,
}

pub fn run(a: ProxyArgs) -> Result<Outcome> {
    let (front_kind, back_kind) = match a.kind {
        ProxyKind::Broker => (SocketType::Router, SocketType::Dealer),
        ProxyKind::Forwarder => (SocketType::XSub, SocketType::XPub),
        ProxyKind::Streamer => (SocketType::Pull, SocketType::Push),
    };
    let common = CommonArgs {
        count: None,
        timeout: None,
        verbose: a.verbose,
        identity: None,
        max_size: a.max_size,
        // Security on a proxy would differ per side; not offered yet.
        security: Default::default(),
    };
    let (front, front_watch) = open_as(
        front_kind,
        "frontend",
        &a.front_bind,
        &a.front_connect,
        &common,
        |b| b,
    )?;
    let (back, _) = open_as(
        back_kind,
        "backend",
        &a.back_bind,
        &a.back_connect,
        &common,
        |b| b,
    )?;
    let (front, back) = (Arc::new(front), Arc::new(back));
    let traffic = Arc::new(Traffic {
        forwarded: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        count: a.count,
        last: Mutex::new(Instant::now()),
        capture: a.capture.map(|c| match c {
            CaptureFormat::Text => Format::Text,
            CaptureFormat::Hex => Format::Hex,
            CaptureFormat::Json => Format::Json,
        }),
    });
    let mut threads = vec![start(&front, &back, ">", &traffic)];
    // A streamer's pushers hear nothing back; the others carry replies (broker)
    // or subscriptions (forwarder) the other way.
    if a.kind != ProxyKind::Streamer {
        threads.push(start(&back, &front, "<", &traffic));
    }
    let outcome = watch_over(&a, &mut threads, &traffic, &front_watch);
    interrupt::stop();
    for t in threads {
        t.join()
            .map_err(|_| anyhow!("a forwarding thread panicked"))??;
    }
    let outcome = outcome?;
    let (front, back) = (unwrap(front)?, unwrap(back)?);
    let outcome = finish(front, outcome)?;
    finish(back, outcome)
}

fn unwrap(socket: Arc<Socket>) -> Result<Socket> {
    Arc::try_unwrap(socket).map_err(|_| anyhow!("the socket is still in use"))
}

/// Waits until --count messages have passed, a forwarding thread fails, the
/// proxy is idle for --timeout, or Ctrl-C.
fn watch_over(
    a: &ProxyArgs,
    threads: &mut [JoinHandle<Result<()>>],
    traffic: &Traffic,
    watch: &crate::watch::Watch,
) -> Result<Outcome> {
    loop {
        if interrupt::by_user() {
            return Ok(Outcome::Interrupted);
        }
        let forwarded = traffic.sent.load(Ordering::SeqCst);
        if a.count.is_some_and(|n| forwarded >= n) {
            return Ok(Outcome::Done);
        }
        if threads.iter().any(|t| t.is_finished()) {
            // A thread only ends early on an error; it is reported at the join.
            return Ok(Outcome::Done);
        }
        if let Some(t) = a.timeout {
            let idle = traffic
                .last
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .elapsed();
            if idle >= t {
                return Ok(match a.count {
                    None if forwarded > 0 => Outcome::Done,
                    None => timed_out(a.timeout, "waiting for a message", watch),
                    Some(n) => timed_out(
                        a.timeout,
                        format_args!("waiting for a message ({forwarded} of {n} forwarded)"),
                        watch,
                    ),
                });
            }
        }
        std::thread::sleep(interrupt::SLICE);
    }
}

/// Forwards everything `from` receives to `to` on a thread, until told to stop.
fn start(
    from: &Arc<Socket>,
    to: &Arc<Socket>,
    mark: &'static str,
    traffic: &Arc<Traffic>,
) -> JoinHandle<Result<()>> {
    let (from, to, traffic) = (from.clone(), to.clone(), traffic.clone());
    std::thread::spawn(move || {
        loop {
            let msg = match recv(&from, None)? {
                Waited::Done(m) => m,
                Waited::TimedOut | Waited::Interrupted => return Ok(()),
            };
            // Exactly --count messages pass: one more is not forwarded.
            let n = traffic.forwarded.fetch_add(1, Ordering::SeqCst) + 1;
            if traffic.count.is_some_and(|max| n > max) {
                return Ok(());
            }
            if let Some(format) = traffic.capture {
                let mut line = format!("{mark} ").into_bytes();
                line.extend(render(format, &msg));
                let _ = std::io::stderr().lock().write_all(&line);
            }
            match send(&to, msg, None)? {
                Waited::Done(()) => {}
                Waited::TimedOut | Waited::Interrupted => return Ok(()),
            }
            *traffic.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
            traffic.sent.fetch_add(1, Ordering::SeqCst);
        }
    })
}
