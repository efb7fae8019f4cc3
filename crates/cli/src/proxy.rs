//! `conduit proxy`: forwards between a frontend and a backend socket in one
//! thread (a poller waits on both), showing the traffic on standard error
//! with `--capture`. Each side has its own security (`--front-curve-server`,
//! `--back-curve-server-key`...), so a proxy can join a CURVE network to a
//! NULL one, or two networks with different keys.

use std::io::Write;
use std::time::Instant;

use anyhow::Result;
use conduit::{Interest, Poller, Security, Socket, SocketBuilder, SocketType, TryRecvError};

use crate::Outcome;
use crate::args::{CaptureFormat, CommonArgs, ProxyArgs, ProxyKind};
use crate::format::{Format, render};
use crate::interrupt::{self, Waited};
use crate::socket_cmd::{finish, open_as, send, timed_out};

/// Traffic through the proxy.
#[derive(Debug)]
struct Traffic {
    /// Messages forwarded.
    sent: u64,
    count: Option<u64>,
    last: Instant,
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
        // Each side has its own (--front-curve-server, --back-curve-server-key...).
        security: Default::default(),
    };
    let secure = |security: Option<Security>| {
        move |b: SocketBuilder| match security {
            Some(s) => b.security(s),
            None => b,
        }
    };
    let (front, front_watch) = open_as(
        front_kind,
        "frontend",
        &a.front_bind,
        &a.front_connect,
        &common,
        secure(a.front_security.security()?),
    )?;
    let (back, _) = open_as(
        back_kind,
        "backend",
        &a.back_bind,
        &a.back_connect,
        &common,
        secure(a.back_security.security()?),
    )?;
    let mut traffic = Traffic {
        sent: 0,
        count: a.count,
        last: Instant::now(),
        capture: a.capture.map(|c| match c {
            CaptureFormat::Text => Format::Text,
            CaptureFormat::Hex => Format::Hex,
            CaptureFormat::Json => Format::Json,
        }),
    };
    // A streamer's pushers hear nothing back; the others carry replies (broker)
    // or subscriptions (forwarder) the other way.
    let both_ways = a.kind != ProxyKind::Streamer;
    let outcome = forward(&a, &front, &back, both_ways, &mut traffic, &front_watch);
    interrupt::stop();
    let outcome = finish(front, outcome?)?;
    finish(back, outcome)
}

/// Messages forwarded one way before looking at the other.
const RUN: usize = 256;

/// Forwards in one thread, waiting on both sockets with a poller, until
/// --count messages have passed, the proxy is idle for --timeout, or Ctrl-C.
fn forward(
    a: &ProxyArgs,
    front: &Socket,
    back: &Socket,
    both_ways: bool,
    traffic: &mut Traffic,
    watch: &crate::watch::Watch,
) -> Result<Outcome> {
    let mut poller = Poller::new();
    let front_i = poller.add(front, Interest::READABLE);
    if both_ways {
        poller.add(back, Interest::READABLE);
    }
    loop {
        if let Some(outcome) = should_stop(a, traffic, watch) {
            return Ok(outcome);
        }
        for ready in poller.poll(Some(interrupt::SLICE))? {
            let (from, to, mark) = if ready.index == front_i {
                (front, back, ">")
            } else {
                (back, front, "<")
            };
            // A bounded run per turn, so that one busy direction does not
            // starve the other.
            for _ in 0..RUN {
                let msg = match from.try_recv() {
                    Ok(m) => m,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Closed) => return Ok(Outcome::Done),
                    Err(TryRecvError::Failed(e)) => return Err(e.into()),
                };
                if let Some(format) = traffic.capture {
                    let mut line = format!("{mark} ").into_bytes();
                    line.extend(render(format, &msg));
                    let _ = std::io::stderr().lock().write_all(&line);
                }
                match send(to, msg, None)? {
                    Waited::Done(()) => {}
                    Waited::TimedOut | Waited::Interrupted => return Ok(Outcome::Interrupted),
                }
                traffic.last = Instant::now();
                traffic.sent += 1;
                // Exactly --count messages pass.
                if traffic.count.is_some_and(|n| traffic.sent >= n) {
                    return Ok(Outcome::Done);
                }
            }
        }
    }
}

/// Whether to stop: Ctrl-C, --count reached, or idle for --timeout.
fn should_stop(a: &ProxyArgs, traffic: &Traffic, watch: &crate::watch::Watch) -> Option<Outcome> {
    if interrupt::by_user() {
        return Some(Outcome::Interrupted);
    }
    let forwarded = traffic.sent;
    if a.count.is_some_and(|n| forwarded >= n) {
        return Some(Outcome::Done);
    }
    let t = a.timeout?;
    if traffic.last.elapsed() < t {
        return None;
    }
    Some(match a.count {
        None if forwarded > 0 => Outcome::Done,
        None => timed_out(a.timeout, "waiting for a message", watch),
        Some(n) => timed_out(
            a.timeout,
            format_args!("waiting for a message ({forwarded} of {n} forwarded)"),
            watch,
        ),
    })
}
