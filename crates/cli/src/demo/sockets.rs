//! The demo's socket scenarios: real `conduit` processes on one side, this
//! process's library sockets on the other, and the shell commands to do the
//! same printed on the way.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use conduit::{Message, Socket, SocketType};

/// How long a scenario waits for its child processes to turn up.
const PATIENCE: Duration = Duration::from_secs(10);

/// Starts `conduit ARGS` with its standard output and error piped to us.
fn conduit(args: &[&str]) -> Result<Child> {
    let exe = std::env::current_exe().context("cannot find the conduit executable")?;
    println!("   $ conduit {}", shell_words(args));
    Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start a conduit child")
}

/// The arguments as one would type them.
fn shell_words(args: &[&str]) -> String {
    args.iter()
        .map(|a| {
            if a.contains(' ') || a.contains('\'') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                (*a).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Waits for a child and returns the lines it printed: on standard output,
/// and on standard error (where -v and --capture write).
fn outputs_of(child: Child) -> Result<(Vec<String>, Vec<String>)> {
    let pid = child.id();
    let out = child.wait_with_output()?;
    let lines = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    if !out.status.success() {
        bail!(
            "conduit (pid {pid}) failed: {}: {}",
            out.status,
            lines(&out.stderr).join("; ")
        );
    }
    Ok((lines(&out.stdout), lines(&out.stderr)))
}

/// Waits for a child and returns the lines it printed on standard output.
fn output_of(child: Child) -> Result<Vec<String>> {
    Ok(outputs_of(child)?.0)
}

/// Waits until `ready` holds, for at most [`PATIENCE`].
fn wait_until(what: &str, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + PATIENCE;
    while !ready()? {
        if Instant::now() > deadline {
            bail!("gave up waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// PUSH/PULL: work spread round-robin over two `conduit pull` processes.
pub fn pipeline(dir: &Path) -> Result<()> {
    println!("4. PUSH/PULL: one pusher spreads jobs over two workers");
    let push = Socket::new(SocketType::Push)?;
    let ep = push
        .bind(&format!("ipc://{}/jobs.sock", dir.display()))?
        .to_string();
    let workers = [
        conduit(&["pull", "--connect", &ep, "--count", "3"])?,
        conduit(&["pull", "--connect", &ep, "--count", "3"])?,
    ];
    // Both connected first, so that the jobs alternate between them.
    wait_until("two workers", || Ok(push.peer_count() == 2))?;
    for job in 1..=6 {
        push.send(format!("job {job}"))?;
    }
    println!(
        "   this process (pid {}) bound a PUSH socket and sent job 1 to job 6:",
        std::process::id()
    );
    for worker in workers {
        let pid = worker.id();
        println!(
            "     pull (pid {pid}) got {}",
            output_of(worker)?.join(", ")
        );
    }
    push.close()?;
    println!();
    Ok(())
}

/// PUB/SUB: two `conduit sub` processes with different subscriptions.
pub fn publish() -> Result<()> {
    println!("5. PUB/SUB: each subscriber gets what it subscribed to");
    // An XPUB is a PUB that shows us the subscriptions, so we know when both
    // subscribers are listening.
    let publisher = Socket::new(SocketType::XPub)?;
    let ep = publisher.bind("tcp://127.0.0.1:*")?.to_string();
    let weather = conduit(&[
        "sub",
        "--connect",
        &ep,
        "--subscribe",
        "weather",
        "--count",
        "2",
    ])?;
    let news = conduit(&[
        "sub",
        "--connect",
        &ep,
        "--subscribe",
        "news",
        "--count",
        "1",
    ])?;
    let mut subscribed = 0;
    wait_until("two subscriptions", || {
        if publisher.try_recv().is_ok() {
            subscribed += 1;
        }
        Ok(subscribed == 2)
    })?;
    let messages = ["weather 21C", "news hello", "sports 3-1", "weather 22C"];
    for m in messages {
        publisher.send(m)?;
    }
    println!(
        "   this process (pid {}) published {}:",
        std::process::id(),
        messages.join(" | ")
    );
    for (name, sub) in [("weather", weather), ("news", news)] {
        let pid = sub.id();
        println!(
            "     the {name} subscriber (pid {pid}) got {}",
            output_of(sub)?.join(" | ")
        );
    }
    println!("     nobody subscribed to sports: the publisher dropped it");
    publisher.close()?;
    println!();
    Ok(())
}

/// REQ/REP: a shell command served by `conduit rep --exec`.
pub fn serve(dir: &Path) -> Result<()> {
    println!("6. REQ/REP: a shell command as a server");
    let ep = format!("ipc://{}/upper.sock", dir.display());
    let server = conduit(&["rep", "--bind", &ep, "--exec", "tr a-z A-Z", "--count", "2"])?;
    let pid = server.id();
    let req = Socket::new(SocketType::Req)?;
    // Connecting before the server is up is fine: the socket retries.
    req.connect(&ep)?;
    let mut answers = Vec::new();
    for request in ["hello", "world"] {
        req.send(request)?;
        let reply = req.recv_timeout(PATIENCE).context("no reply from rep")?;
        answers.push(format!("{request} -> {}", text(&reply)));
    }
    req.close()?;
    output_of(server)?;
    println!(
        "   this process (pid {}) sent two requests to rep (pid {pid}), which ran tr for each: {}",
        std::process::id(),
        answers.join(", ")
    );
    println!();
    Ok(())
}

/// A proxy between this process's PUSH and PULL sockets, showing with
/// --capture and -v what passes through it and who connects.
pub fn proxy(dir: &Path) -> Result<()> {
    println!("7. A proxy in the middle, showing the traffic and the connections");
    let front = format!("ipc://{}/in.sock", dir.display());
    let back = format!("ipc://{}/out.sock", dir.display());
    let proxy = conduit(&[
        "proxy",
        "streamer",
        "--front-bind",
        &front,
        "--back-bind",
        &back,
        "--capture=json",
        "--count",
        "2",
        "-v",
    ])?;
    let pid = proxy.id();
    let pull = Socket::new(SocketType::Pull)?;
    pull.connect(&back)?;
    let push = Socket::new(SocketType::Push)?;
    push.connect(&front)?;
    // The second message has a frame that is not text: json shows it in hex.
    push.send(Message::from_frames([&b"job"[..], b"1"]))?;
    push.send(Message::from_frames([&b"job"[..], &[0xff, 0x00]]))?;
    for _ in 0..2 {
        pull.recv_timeout(PATIENCE)
            .context("nothing came out of the proxy")?;
    }
    push.close()?;
    pull.close()?;
    let (_, stderr) = outputs_of(proxy)?;
    println!(
        "   this process (pid {}) pushed two messages in and pulled them out; proxy (pid {pid}) printed:",
        std::process::id()
    );
    for line in stderr {
        println!("     {line}");
    }
    println!();
    Ok(())
}

fn text(msg: &Message) -> String {
    String::from_utf8_lossy(&msg.concat()).into_owned()
}
