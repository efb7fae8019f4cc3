//! `conduit demo`: the seed's scenarios, run for real with child processes.
//!
//! The children are this same binary, re-run as `conduit demo-child ROLE`, or
//! run as the socket commands themselves (`sockets.rs`).

mod sockets;

use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use conduit::process::{ChildEnd, spawn};
use conduit::{Channel, ChannelBuilder, Message, PipeReceiver, PipeSender, RecvError};

use crate::Outcome;
use crate::args::DemoChildArgs;

/// The file the pipeline scenario reads, standing in for the seed's foo.c.
const FOO_C: &str = r#"#include <stdio.h>

/* Computes n! recursively. */
unsigned long factorial(unsigned n) {
    return n < 2 ? 1 : n * factorial(n - 1);
}

unsigned long fibonacci(unsigned n) {
    return n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2);
}

int main(void) {
    printf("10! = %lu\n", factorial(10));
    printf("fib(10) = %lu\n", fibonacci(10));
    return 0;
}
"#;

/// Round trips per measurement.
const ROUND_TRIPS: usize = 2000;

fn me() -> Result<Command> {
    let exe = std::env::current_exe().context("cannot find the conduit executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg("demo-child");
    Ok(cmd)
}

pub fn run() -> Result<Outcome> {
    println!("conduit demo: message passing between processes, run for real\n");
    let dir = tempfile_dir()?;
    pipeline(&dir)?;
    conversation(
        "2. A two-way conversation over a Unix domain socket",
        &format!("ipc://{}/demo.sock", dir.display()),
    )?;
    conversation("3. The same over TCP loopback", "tcp://127.0.0.1:0")?;
    sockets::pipeline(&dir)?;
    sockets::publish()?;
    sockets::serve(&dir)?;
    sockets::proxy(&dir)?;
    let _ = std::fs::remove_dir_all(&dir);
    println!("Round trips (1 to 3) are ping-pongs of 64-byte messages between two processes.");
    println!("Every socket type has its command: see `conduit --help`.");
    Ok(Outcome::Done)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("conduit-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// `cat foo.c | grep factorial`, as two processes passing messages through a
/// conduit pipe, then a round trip over a pair of pipes.
fn pipeline(dir: &std::path::Path) -> Result<()> {
    println!("1. A pipe between two processes: cat foo.c | grep factorial");
    let file = dir.join("foo.c");
    std::fs::write(&file, FOO_C)?;
    let (write_end, read_end) = ChildEnd::pipe()?;
    let mut cat = me()?;
    cat.arg("cat").arg(&file);
    let mut grep = me()?;
    grep.args(["grep", "factorial"]).stdout(Stdio::piped());
    let start = Instant::now();
    let mut cat = spawn(cat, write_end)?;
    let mut grep = spawn(grep, read_end)?;
    // grep sends what it keeps to us as messages on its standard output.
    let kept = PipeReceiver::from_fd(OwnedFd::from(grep.stdout.take().expect("piped")))?;
    let mut lines = Vec::new();
    loop {
        match kept.recv() {
            Ok(m) => lines.push(String::from_utf8_lossy(&m.concat()).into_owned()),
            Err(RecvError::Closed) => break,
            Err(e) => return Err(e).context("grep's output broke"),
        }
    }
    let elapsed = start.elapsed();
    check_exit("cat", cat.wait()?)?;
    check_exit("grep", grep.wait()?)?;
    println!(
        "   cat (pid {}) sent the {} lines of foo.c as messages; grep (pid {}) kept {}:",
        cat.id(),
        FOO_C.lines().count(),
        grep.id(),
        lines.len()
    );
    for line in &lines {
        println!("     {line}");
    }
    println!(
        "   both processes started, ran and finished in {:.1} ms",
        ms(elapsed)
    );

    let mut echo = me()?;
    echo.arg("echo-stdio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = echo.spawn().context("cannot start the echo child")?;
    let to = PipeSender::from_fd(OwnedFd::from(child.stdin.take().expect("piped")))?;
    let from = PipeReceiver::from_fd(OwnedFd::from(child.stdout.take().expect("piped")))?;
    let rtt = round_trips(|m| {
        to.send(m)?;
        Ok(from.recv()?)
    })?;
    to.close()?;
    check_exit("echo", child.wait()?)?;
    println!("   round trip over a pair of pipes: {}\n", rtt);
    Ok(())
}

/// A child connects to us over `endpoint`; we talk, then time round trips.
fn conversation(title: &str, endpoint: &str) -> Result<()> {
    println!("{title}");
    let listener = ChannelBuilder::new().listen(endpoint)?;
    let bound = listener.endpoint().to_string();
    let mut cmd = me()?;
    cmd.args(["echo", &bound]);
    let mut child = cmd.spawn().context("cannot start the echo child")?;
    let channel = match listener.accept_timeout(Duration::from_secs(10)) {
        Ok(channel) => channel,
        Err(e) => {
            let _ = child.kill();
            if e.is_timeout() {
                bail!("the child did not connect to {bound}");
            }
            return Err(e.into());
        }
    };
    let peer = channel
        .peer()
        .map_or("?".into(), |p| p.socket_type.to_string());
    println!(
        "   parent (pid {}) bound {bound}; child (pid {}) connected as a {peer} peer",
        std::process::id(),
        child.id()
    );
    channel.send(Message::from_frames(["hello", "from the parent"]))?;
    let answer = channel.recv()?;
    println!(
        "   parent sent [hello | from the parent], child answered [{}]",
        answer
            .frames()
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let rtt = round_trips(|m| {
        channel.send(m)?;
        Ok(channel.recv()?)
    })?;
    channel.close()?;
    check_exit("echo", child.wait()?)?;
    println!("   round trip: {rtt}\n");
    Ok(())
}

/// Times `ROUND_TRIPS` calls of `exchange` and describes the distribution.
fn round_trips(mut exchange: impl FnMut(Message) -> Result<Message>) -> Result<String> {
    let payload = Message::from(vec![b'x'; 64]);
    for _ in 0..100 {
        exchange(payload.clone())?; // warm up
    }
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let start = Instant::now();
        let back = exchange(payload.clone())?;
        times.push(start.elapsed());
        if back != payload {
            bail!("the echo came back changed");
        }
    }
    times.sort();
    Ok(format!(
        "median {:.1} us, p99 {:.1} us over {ROUND_TRIPS} round trips",
        us(times[times.len() / 2]),
        us(times[times.len() * 99 / 100])
    ))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn check_exit(who: &str, status: std::process::ExitStatus) -> Result<()> {
    if !status.success() {
        bail!("the {who} child failed: {status}");
    }
    Ok(())
}

/// The children's side.
pub fn child(args: DemoChildArgs) -> Result<Outcome> {
    match (args.role.as_str(), args.rest.as_slice()) {
        ("cat", [path]) => {
            let out = PipeSender::from_parent()?;
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
            for line in text.lines() {
                out.send(line)?;
            }
            out.close()?;
        }
        ("grep", [pattern]) => {
            let input = PipeReceiver::from_parent()?;
            let fd = std::io::stdout().as_fd_owned()?;
            let out = PipeSender::from_fd(fd)?;
            loop {
                match input.recv() {
                    Ok(line) => {
                        if line
                            .concat()
                            .windows(pattern.len())
                            .any(|w| w == pattern.as_bytes())
                        {
                            out.send(line)?;
                        }
                    }
                    Err(RecvError::Closed) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            out.close()?;
        }
        ("echo-stdio", []) => {
            let input = PipeReceiver::from_fd(std::io::stdin().as_fd_owned()?)?;
            let out = PipeSender::from_fd(std::io::stdout().as_fd_owned()?)?;
            echo(|| input.recv(), |m| Ok(out.send(m)?))?;
            out.close()?;
        }
        ("echo", [endpoint]) => {
            let channel = Channel::builder()
                .connect_timeout(Duration::from_secs(5))
                .connect(endpoint)?;
            echo(|| channel.recv(), |m| Ok(channel.send(m)?))?;
            channel.close()?;
        }
        (role, rest) => bail!("unknown demo role {role} {rest:?}"),
    }
    Ok(Outcome::Done)
}

/// Answers a hello, echoes everything else, until the other side closes.
fn echo(
    mut recv: impl FnMut() -> Result<Message, RecvError>,
    mut send: impl FnMut(Message) -> Result<()>,
) -> Result<()> {
    loop {
        match recv() {
            Ok(m) if m.first().is_some_and(|f| f == "hello") && m.frame_count() > 1 => {
                send(Message::from_frames([
                    "hello".to_owned(),
                    format!("from the child, pid {}", std::process::id()),
                ]))?
            }
            Ok(m) => send(m)?,
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A duplicate of a standard stream's descriptor, owned.
trait AsFdOwned {
    fn as_fd_owned(&self) -> Result<OwnedFd>;
}

impl<T: std::os::fd::AsFd> AsFdOwned for T {
    fn as_fd_owned(&self) -> Result<OwnedFd> {
        Ok(self.as_fd().try_clone_to_owned()?)
    }
}
