//! The socket commands: `conduit pair|push|pull|req|rep|dealer|router|pub|sub|xpub|xsub`.
//!
//! Each opens one [`Socket`] of its type on every `--bind` and `--connect`, then
//! sends, receives or both. The patterns themselves (round-robin, fair queueing,
//! envelopes, subscriptions, reconnecting) are the library's; what is here is
//! when to send, what to print, and when to stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use conduit::{
    Error, Message, RecvTimeoutError, SendTimeoutError, Socket, SocketBuilder, SocketType,
};

use crate::Outcome;
use crate::args::{
    CommonArgs, Endpoints, PacingArgs, PubArgs, ReceivingArgs, RepArgs, SendingArgs, SubArgs,
    TwoWayArgs, XpubArgs, XsubArgs,
};
use crate::exec;
use crate::format::{Format, render};
use crate::input::{Input, Next};
use crate::interrupt::{self, Waited};
use crate::watch::Watch;

/// Opens a socket of type `kind` on the endpoints, with the common options.
fn open(
    kind: SocketType,
    endpoints: &Endpoints,
    common: &CommonArgs,
    tweak: impl FnOnce(SocketBuilder) -> SocketBuilder,
) -> Result<(Socket, Arc<Watch>)> {
    let role = kind.as_str().to_lowercase();
    open_as(
        kind,
        &role,
        &endpoints.bind,
        &endpoints.connect,
        common,
        tweak,
    )
}

/// Opens a socket named `role` in what -v prints.
pub fn open_as(
    kind: SocketType,
    role: &str,
    bind: &[String],
    connect: &[String],
    common: &CommonArgs,
    tweak: impl FnOnce(SocketBuilder) -> SocketBuilder,
) -> Result<(Socket, Arc<Watch>)> {
    let watch = Watch::new(role, common.verbose);
    let w = watch.clone();
    let mut builder = Socket::builder(kind).on_event(move |e| w.on_event(e));
    if let Some(id) = &common.identity {
        builder = builder.identity(id.clone().into_bytes());
    }
    if let Some(max) = common.max_size {
        builder = builder.max_message_size(max);
    }
    if let Some(t) = common.timeout {
        builder = builder.linger(t);
    }
    if let Some(security) = common.security.security()? {
        builder = builder.security(security);
    }
    let socket = tweak(builder).build().context("cannot create the socket")?;
    attach(&socket, bind, connect)?;
    Ok((socket, watch))
}

/// Binds and connects `socket`.
fn attach(socket: &Socket, bind: &[String], connect: &[String]) -> Result<()> {
    for ep in bind.iter().chain(connect) {
        if ep == "-" {
            bail!(
                "{ep:?} is not an endpoint here: standard input and output carry one \
                 channel, with `conduit send` and `conduit recv`"
            );
        }
    }
    for ep in bind {
        socket.bind(ep)?;
    }
    for ep in connect {
        socket.connect(ep)?;
    }
    Ok(())
}

/// Closes the socket, delivering what is queued, and ends with `outcome`.
pub fn finish(socket: Socket, outcome: Outcome) -> Result<Outcome> {
    let closed = socket.close();
    if outcome == Outcome::Done {
        closed.context("cannot deliver the last messages")?;
    }
    Ok(outcome)
}

/// Sends one message, waiting (up to `timeout`) while no peer can take it.
/// A ROUTER's message to a peer not connected yet waits for it the same way.
pub fn send(socket: &Socket, msg: Message, timeout: Option<Duration>) -> Result<Waited<()>> {
    let mut msg = Some(msg);
    interrupt::wait(timeout, |slice| {
        match socket.send_timeout(msg.take().expect("kept"), slice) {
            Ok(()) => Ok(Some(())),
            Err(SendTimeoutError::Timeout(m)) => {
                msg = Some(m);
                Ok(None)
            }
            Err(SendTimeoutError::Failed(e)) if matches!(e.error, Error::Unroutable(_)) => {
                std::thread::sleep(slice);
                msg = Some(e.message);
                Ok(None)
            }
            Err(SendTimeoutError::Failed(e)) => Err(anyhow!(e.error)).context("cannot send"),
        }
    })
}

/// Receives one message, waiting up to `timeout`.
pub fn recv(socket: &Socket, timeout: Option<Duration>) -> Result<Waited<Message>> {
    interrupt::wait(timeout, |slice| match socket.recv_timeout(slice) {
        Ok(m) => Ok(Some(m)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Closed) => bail!("the socket was closed"),
        Err(RecvTimeoutError::Failed(e)) => Err(anyhow!(e)).context("cannot receive"),
    })
}

/// "timed out after 2s waiting for ...", with why no peer came if one never did.
pub fn timed_out(
    timeout: Option<Duration>,
    what: impl std::fmt::Display,
    watch: &Watch,
) -> Outcome {
    let t = timeout.expect("only a --timeout times out");
    let mut text = format!("timed out after {t:?} {what}");
    if let Some(why) = watch.why_no_peer() {
        text.push_str(&format!(" ({why})"));
    }
    Outcome::TimedOut(text)
}

/// What a receive timeout means: the normal end of a run without --count that
/// received something, else a timeout.
fn receive_timeout(common: &CommonArgs, received: u64, watch: &Watch) -> Outcome {
    match common.count {
        None if received > 0 => Outcome::Done,
        None => timed_out(common.timeout, "waiting for a message", watch),
        Some(n) => timed_out(
            common.timeout,
            format_args!("waiting for a message ({received} of {n} received)"),
            watch,
        ),
    }
}

/// Writes a message to standard output at once.
fn print(format: Format, msg: &Message) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(&render(format, msg))?;
    out.flush()?;
    Ok(())
}

/// Sends the input, paced, until it ends or `limit` messages are sent.
/// `between` runs after each send.
fn send_all(
    socket: &Socket,
    watch: &Watch,
    mut input: Input,
    pacing: &PacingArgs,
    common: &CommonArgs,
    limit: Option<u64>,
    mut between: impl FnMut(),
) -> Result<Outcome> {
    let mut sent = 0u64;
    while limit.is_none_or(|n| sent < n) {
        let msg = match input.next()? {
            Next::Message(m) => m,
            Next::End => break,
            Next::Interrupted => return Ok(Outcome::Interrupted),
        };
        if let Some(pause) = pacing.interval.filter(|_| sent > 0) {
            if !interrupt::sleep(pause) {
                return Ok(Outcome::Interrupted);
            }
        }
        let what = match socket.socket_type() {
            SocketType::Router => format!(
                "waiting for the peer with routing id {} to take message {}",
                String::from_utf8_lossy(&render(Format::Text, &first_frame(&msg))).trim_end(),
                sent + 1
            ),
            _ => format!("waiting for a peer to take message {}", sent + 1),
        };
        match send(socket, msg, common.timeout)? {
            Waited::Done(()) => sent += 1,
            Waited::TimedOut => return Ok(timed_out(common.timeout, what, watch)),
            Waited::Interrupted => return Ok(Outcome::Interrupted),
        }
        between();
    }
    Ok(Outcome::Done)
}

fn first_frame(msg: &Message) -> Message {
    Message::from(msg.first().cloned().unwrap_or_default())
}

/// `conduit push`.
pub fn push(a: SendingArgs) -> Result<Outcome> {
    let input = Input::open(&a.messages, a.pacing.repeat)?;
    let (socket, watch) = open(SocketType::Push, &a.endpoints, &a.common, |b| b)?;
    let outcome = send_all(
        &socket,
        &watch,
        input,
        &a.pacing,
        &a.common,
        a.common.count,
        || {},
    )?;
    finish(socket, outcome)
}

/// `conduit pub`: an XPUB underneath, to see the first subscription before
/// publishing (a PUB cannot tell), unless --no-wait.
pub fn publish(a: PubArgs) -> Result<Outcome> {
    let s = &a.sending;
    let input = Input::open(&s.messages, s.pacing.repeat)?;
    let kind = if a.no_wait {
        SocketType::Pub
    } else {
        SocketType::XPub
    };
    let (socket, watch) = open(kind, &s.endpoints, &s.common, |b| b)?;
    if !a.no_wait {
        match wait_for_subscription(&socket, s.common.timeout)? {
            Waited::Done(()) => {}
            Waited::TimedOut => {
                let out = timed_out(s.common.timeout, "waiting for a subscriber", &watch);
                return finish(socket, out);
            }
            Waited::Interrupted => return finish(socket, Outcome::Interrupted),
        }
    }
    let outcome = send_all(
        &socket,
        &watch,
        input,
        &s.pacing,
        &s.common,
        s.common.count,
        || {
            // Later subscriptions queue up on the XPUB; nobody reads them.
            while !a.no_wait && socket.try_recv().is_ok() {}
        },
    )?;
    finish(socket, outcome)
}

/// XPUB: waits for a message announcing a subscription.
/// XPUB: waits for a message announcing a subscription, then for the others
/// the same subscriber sent with it (they come one after the other: a message
/// published in between would miss them).
fn wait_for_subscription(socket: &Socket, timeout: Option<Duration>) -> Result<Waited<()>> {
    let first = interrupt::wait(timeout, |slice| match socket.recv_timeout(slice) {
        Ok(m) if is_subscription(&m) => Ok(Some(())),
        Ok(_) | Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(e) => Err(anyhow!(e)).context("cannot receive"),
    })?;
    if let Waited::Done(()) = first {
        while socket.recv_timeout(SUBSCRIPTIONS_SETTLE).is_ok() {}
    }
    Ok(first)
}

/// How long without a new subscription before a subscriber's subscriptions
/// are taken to be all in.
const SUBSCRIPTIONS_SETTLE: Duration = Duration::from_millis(50);

fn is_subscription(msg: &Message) -> bool {
    msg.first().is_some_and(|f| f.first() == Some(&1))
}

/// `conduit pull`.
pub fn pull(a: ReceivingArgs) -> Result<Outcome> {
    let (socket, watch) = open(SocketType::Pull, &a.endpoints, &a.common, |b| b)?;
    let outcome = receive_all(&socket, &watch, &a)?;
    finish(socket, outcome)
}

/// `conduit sub`.
pub fn sub(a: SubArgs) -> Result<Outcome> {
    let r = &a.receiving;
    let (socket, watch) = open(SocketType::Sub, &r.endpoints, &r.common, |b| b)?;
    if a.subscribe.is_empty() {
        socket.subscribe("")?;
    }
    for prefix in &a.subscribe {
        socket.subscribe(prefix)?;
    }
    let outcome = receive_all(&socket, &watch, r)?;
    finish(socket, outcome)
}

/// Prints (or runs --exec for) each message until --count, a timeout or Ctrl-C.
fn receive_all(socket: &Socket, watch: &Watch, a: &ReceivingArgs) -> Result<Outcome> {
    let mut received = 0;
    while a.common.count.is_none_or(|n| received < n) {
        let msg = match recv(socket, a.common.timeout)? {
            Waited::Done(m) => m,
            Waited::TimedOut => return Ok(receive_timeout(&a.common, received, watch)),
            Waited::Interrupted => return Ok(Outcome::Interrupted),
        };
        match &a.exec {
            Some(cmd) => {
                exec::run(cmd, render(a.output.format, &msg), false)?;
            }
            None => print(a.output.format, &msg)?,
        }
        received += 1;
    }
    Ok(Outcome::Done)
}

/// `conduit req`.
pub fn req(a: TwoWayArgs) -> Result<Outcome> {
    let mut input = Input::open(&a.messages, a.pacing.repeat)?;
    let (socket, watch) = open(SocketType::Req, &a.endpoints, &a.common, |b| b)?;
    let mut replies = 0u64;
    let outcome = loop {
        if a.common.count.is_some_and(|n| replies >= n) {
            break Outcome::Done;
        }
        let request = match input.next()? {
            Next::Message(m) => m,
            Next::End => break Outcome::Done,
            Next::Interrupted => break Outcome::Interrupted,
        };
        if let Some(pause) = a.pacing.interval.filter(|_| replies > 0) {
            if !interrupt::sleep(pause) {
                break Outcome::Interrupted;
            }
        }
        let n = replies + 1;
        match send(&socket, request, a.common.timeout)? {
            Waited::Done(()) => {}
            Waited::TimedOut => {
                let what = format!("waiting for a server to take request {n}");
                break timed_out(a.common.timeout, what, &watch);
            }
            Waited::Interrupted => break Outcome::Interrupted,
        }
        match recv(&socket, a.common.timeout)? {
            Waited::Done(reply) => print(a.output.format, &reply)?,
            Waited::TimedOut => {
                break timed_out(a.common.timeout, format!("waiting for reply {n}"), &watch);
            }
            Waited::Interrupted => break Outcome::Interrupted,
        }
        replies += 1;
    };
    finish(socket, outcome)
}

/// Where `rep` takes its replies from.
enum Replies {
    Echo,
    Exec(String),
    Input(Input),
}

/// `conduit rep`.
pub fn rep(a: RepArgs) -> Result<Outcome> {
    let mut replies = if a.echo {
        Replies::Echo
    } else if let Some(cmd) = &a.exec {
        Replies::Exec(cmd.clone())
    } else {
        // Given replies go round and round; lines of standard input are read
        // one per request, as it comes.
        let rounds = if a.messages.given() { 0 } else { 1 };
        Replies::Input(Input::open(&a.messages, rounds)?)
    };
    let (socket, watch) = open(SocketType::Rep, &a.endpoints, &a.common, |b| b)?;
    let mut answered = 0;
    let outcome = loop {
        if a.common.count.is_some_and(|n| answered >= n) {
            break Outcome::Done;
        }
        let request = match recv(&socket, a.common.timeout)? {
            Waited::Done(m) => m,
            Waited::TimedOut => break receive_timeout(&a.common, answered, &watch),
            Waited::Interrupted => break Outcome::Interrupted,
        };
        let reply = match &mut replies {
            Replies::Echo => {
                print(a.output.format, &request)?;
                request
            }
            Replies::Exec(cmd) => {
                let out = exec::run(cmd, render(a.output.format, &request), true)?;
                exec::reply(a.messages.input, out)?
            }
            Replies::Input(input) => {
                print(a.output.format, &request)?;
                match input.next()? {
                    Next::Message(m) => m,
                    Next::End => break Outcome::Done,
                    Next::Interrupted => break Outcome::Interrupted,
                }
            }
        };
        socket.send(reply).map_err(|e| anyhow!(e.error))?;
        answered += 1;
    };
    finish(socket, outcome)
}

/// `conduit pair`, `dealer` and `router`.
pub fn two_way(kind: SocketType, a: TwoWayArgs) -> Result<Outcome> {
    let input = Input::open(&a.messages, a.pacing.repeat)?;
    let (socket, watch) = open(kind, &a.endpoints, &a.common, |b| {
        // A message for a peer that is not there waits for it, or fails: it is
        // not dropped without a word.
        b.router_mandatory(kind == SocketType::Router)
    })?;
    converse(socket, watch, input, a, None)
}

/// `conduit xpub`: sends once a subscription arrived (unless --no-wait), and
/// prints the subscriptions.
pub fn xpub(a: XpubArgs) -> Result<Outcome> {
    let t = a.two_way;
    let input = Input::open(&t.messages, t.pacing.repeat)?;
    let (socket, watch) = open(SocketType::XPub, &t.endpoints, &t.common, |b| b)?;
    let subscribed = Arc::new(AtomicBool::new(a.no_wait));
    converse(socket, watch, input, t, Some(subscribed))
}

/// `conduit xsub`: subscribes by sending subscription messages upstream.
pub fn xsub(a: XsubArgs) -> Result<Outcome> {
    let t = a.two_way;
    let input = Input::open(&t.messages, t.pacing.repeat)?;
    let (socket, watch) = open(SocketType::XSub, &t.endpoints, &t.common, |b| b)?;
    let prefixes = if a.subscribe.is_empty() {
        vec![String::new()]
    } else {
        a.subscribe
    };
    for prefix in prefixes {
        let mut frame = vec![1u8];
        frame.extend_from_slice(prefix.as_bytes());
        socket.send(frame).map_err(|e| anyhow!(e.error))?;
    }
    converse(socket, watch, input, t, None)
}

/// Sends the input on a thread while printing what arrives. Stops once the
/// input is sent and, with --count N, N messages have arrived: what standard
/// input holds is all sent (up to its end) before the command exits, however
/// early the N messages came. Only input that never ends (--repeat 0) stops at
/// N. `subscribed` (XPUB) holds sending back until a subscription arrives.
fn converse(
    socket: Socket,
    watch: Arc<Watch>,
    input: Input,
    a: TwoWayArgs,
    subscribed: Option<Arc<AtomicBool>>,
) -> Result<Outcome> {
    // Standard input ends too (at its end of file); --repeat 0 never does.
    let finite = a.pacing.repeat > 0;
    let socket = Arc::new(socket);
    let a = Arc::new(a);
    let sender = {
        let (socket, watch, a, subscribed) =
            (socket.clone(), watch.clone(), a.clone(), subscribed.clone());
        std::thread::spawn(move || -> Result<Outcome> {
            if let Some(flag) = subscribed {
                let waited = interrupt::wait(a.common.timeout, |slice| {
                    if flag.load(Ordering::SeqCst) {
                        return Ok(Some(()));
                    }
                    std::thread::sleep(slice);
                    Ok(None)
                })?;
                match waited {
                    Waited::Done(()) => {}
                    Waited::TimedOut => {
                        return Ok(timed_out(
                            a.common.timeout,
                            "waiting for a subscriber",
                            &watch,
                        ));
                    }
                    Waited::Interrupted => return Ok(Outcome::Interrupted),
                }
            }
            // --count counts what arrives.
            send_all(&socket, &watch, input, &a.pacing, &a.common, None, || {})
        })
    };
    let mut sender = Some(sender);
    let mut received = 0u64;
    let mut idle_since = Instant::now();
    let outcome = loop {
        if a.common.count.is_some_and(|n| received >= n) {
            // The input is all sent first (an XPUB's waits for the
            // subscription that made the count); --repeat 0 would go on for
            // ever, and is cut short (below: the sender is stopped and joined,
            // so that it lets go of the socket).
            if let Some(s) = sender.take_if(|_| finite) {
                let sent = s
                    .join()
                    .map_err(|_| anyhow!("the sending thread panicked"))??;
                if sent != Outcome::Done {
                    break sent;
                }
            }
            break Outcome::Done;
        }
        if sender.as_ref().is_some_and(|s| s.is_finished()) {
            let sent = sender.take().expect("checked").join();
            match sent.map_err(|_| anyhow!("the sending thread panicked"))?? {
                Outcome::Done if a.common.count.is_some() => {}
                other => break other,
            }
        }
        // One slice at a time, so that the sender finishing is noticed.
        match recv(&socket, Some(interrupt::SLICE))? {
            Waited::Done(msg) => {
                if let Some(flag) = &subscribed {
                    if is_subscription(&msg) && !flag.load(Ordering::SeqCst) {
                        // Let the subscriber's other subscriptions come in too.
                        let flag = flag.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(SUBSCRIPTIONS_SETTLE);
                            flag.store(true, Ordering::SeqCst);
                        });
                    }
                }
                print(a.output.format, &msg)?;
                received += 1;
                idle_since = Instant::now();
            }
            Waited::Interrupted => break Outcome::Interrupted,
            Waited::TimedOut => {}
        }
        // Only with --count does the command wait for messages to arrive.
        if let (Some(_), Some(t)) = (a.common.count, a.common.timeout) {
            if idle_since.elapsed() >= t {
                break receive_timeout(&a.common, received, &watch);
            }
        }
    };
    // Stop the sender if it is still at work, then close.
    interrupt::stop();
    if let Some(s) = sender {
        let _ = s.join();
    }
    let socket = Arc::try_unwrap(socket).map_err(|_| anyhow!("the socket is still in use"))?;
    finish(socket, outcome)
}
