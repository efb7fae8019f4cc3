//! Soak: churn and load on conduit sockets for a given time, sampling this
//! process's memory, descriptors and threads, then a short report.
//!
//! ```sh
//! cargo run --release --example soak -- --duration 30m --sample 30s
//! cargo run --release --example soak -- --duration 60s --csv /tmp/soak.csv
//! ```
//!
//! Everything runs in this one process over loopback TCP and Unix sockets:
//!
//! - load: PUSH -> PULL (tcp) with messages of 16 B to 64 KiB, checked for
//!   order; REQ -> REP (ipc) round trips, checked for the right reply; PUB ->
//!   two SUBs (ipc) with different subscriptions, checked for filtering;
//! - churn, against a PULL server on tcp and ipc: channels that connect, send
//!   and close; whole PUSH sockets made and closed; peers that hang up before
//!   the handshake or send HTTP; subscribers that come and go on the PUB.
//!
//! The report compares the first sample after a warm-up (a tenth of the run,
//! at most a minute) with the last one and the largest. Exit status 1 if a
//! check failed (a message out of order, a wrong reply, a message the
//! subscriber did not ask for) or if descriptors or threads grew.
//! Not part of CI: it runs for as long as it is asked to.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use conduit::{ChannelBuilder, Message, Socket, SocketType};

#[derive(Default)]
struct Counters {
    pushed: AtomicU64,
    pulled: AtomicU64,
    bytes: AtomicU64,
    round_trips: AtomicU64,
    published: AtomicU64,
    sub_received: AtomicU64,
    cycles: AtomicU64,
    hostile: AtomicU64,
    failures: AtomicU64,
}

struct Sample {
    at: Duration,
    rss_kib: u64,
    descriptors: usize,
    threads: usize,
    pulled: u64,
    round_trips: u64,
    cycles: u64,
}

fn usage() -> ! {
    eprintln!("usage: soak [--duration 10m] [--sample 10s] [--csv FILE]");
    std::process::exit(2);
}

fn parse_duration(text: &str) -> Duration {
    let (n, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = n.parse().unwrap_or_else(|_| usage());
    match unit {
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "ms" => Duration::from_millis(n),
        _ => usage(),
    }
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn fail(c: &Counters, what: String) {
    eprintln!("soak: FAILED: {what}");
    c.failures.fetch_add(1, Ordering::Relaxed);
}

fn socket(kind: SocketType) -> Socket {
    Socket::builder(kind)
        .linger(Duration::from_secs(2))
        .handshake_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
}

/// PUSH -> PULL over tcp, sizes cycling from 16 B to 64 KiB, order checked.
fn push_pull(stop: Arc<AtomicBool>, c: Arc<Counters>) -> Vec<std::thread::JoinHandle<()>> {
    let pull = socket(SocketType::Pull);
    let ep = pull.bind("tcp://127.0.0.1:*").unwrap().to_string();
    let push = socket(SocketType::Push);
    push.connect(&ep).unwrap();
    let (s, c2) = (stop.clone(), c.clone());
    let sender = std::thread::spawn(move || {
        let mut i: u64 = 0;
        while !s.load(Ordering::Relaxed) {
            let size = 16usize << (i % 13);
            let mut body = vec![0u8; size.max(8)];
            body[..8].copy_from_slice(&i.to_be_bytes());
            if push.send_timeout(body, Duration::from_secs(5)).is_err() {
                fail(&c2, "push: send timed out".into());
            }
            c2.pushed.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
        let _ = push.send(b"end".to_vec());
    });
    let receiver = std::thread::spawn(move || {
        let mut next: u64 = 0;
        loop {
            let m = match pull.recv_timeout(Duration::from_secs(10)) {
                Ok(m) => m.concat(),
                Err(e) => return fail(&c, format!("pull: {e}")),
            };
            if &m[..] == b"end" {
                return;
            }
            let i = u64::from_be_bytes(m[..8].try_into().unwrap());
            if i != next {
                return fail(&c, format!("pull: got {i}, expected {next}"));
            }
            next += 1;
            c.pulled.fetch_add(1, Ordering::Relaxed);
            c.bytes.fetch_add(m.len() as u64, Ordering::Relaxed);
        }
    });
    vec![sender, receiver]
}

/// REQ -> REP over ipc.
fn req_rep(
    dir: &std::path::Path,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) -> Vec<std::thread::JoinHandle<()>> {
    let rep = socket(SocketType::Rep);
    let ep = rep
        .bind(&format!("ipc://{}/rep.sock", dir.display()))
        .unwrap()
        .to_string();
    let req = socket(SocketType::Req);
    req.connect(&ep).unwrap();
    let server = std::thread::spawn(move || {
        while let Ok(m) = rep.recv() {
            if &m.concat()[..] == b"end" {
                let _ = rep.send("bye");
                return;
            }
            let _ = rep.send(m);
        }
    });
    let client = std::thread::spawn(move || {
        let mut i: u64 = 0;
        while !stop.load(Ordering::Relaxed) {
            let body = Message::from_frames([format!("req {i}"), "x".repeat((i % 300) as usize)]);
            if let Err(e) = req.send(body.clone()) {
                return fail(&c, format!("req: {e}"));
            }
            match req.recv_timeout(Duration::from_secs(10)) {
                Ok(reply) if reply == body => {}
                Ok(_) => return fail(&c, format!("req: wrong reply to {i}")),
                Err(e) => return fail(&c, format!("req: {e}")),
            }
            c.round_trips.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
        let _ = req.send("end");
        let _ = req.recv_timeout(Duration::from_secs(5));
    });
    vec![server, client]
}

/// PUB -> SUBs over ipc, with subscribers coming and going.
fn pub_sub(
    dir: &std::path::Path,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) -> Vec<std::thread::JoinHandle<()>> {
    let publisher = socket(SocketType::Pub);
    let ep = publisher
        .bind(&format!("ipc://{}/pub.sock", dir.display()))
        .unwrap()
        .to_string();
    let mut threads = Vec::new();
    let s = stop.clone();
    let c2 = c.clone();
    threads.push(std::thread::spawn(move || {
        let mut i: u64 = 0;
        while !s.load(Ordering::Relaxed) {
            let topic = ["weather", "sport", "news"][(i % 3) as usize];
            let _ = publisher.send(format!("{topic} {i}"));
            c2.published.fetch_add(1, Ordering::Relaxed);
            i += 1;
            if i % 64 == 0 {
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }));
    for round in 0.. {
        if stop.load(Ordering::Relaxed) || round == 2 {
            break;
        }
        // Two long-lived subscribers, each checking its filter.
        let (ep, s, c) = (ep.clone(), stop.clone(), c.clone());
        threads.push(std::thread::spawn(move || {
            let topic = ["weather", "sport"][round];
            let sub = socket(SocketType::Sub);
            sub.subscribe(topic).unwrap();
            sub.connect(&ep).unwrap();
            while !s.load(Ordering::Relaxed) {
                if let Ok(m) = sub.recv_timeout(Duration::from_millis(200)) {
                    if !m.concat().starts_with(topic.as_bytes()) {
                        return fail(&c, format!("sub: {topic} got {:?}", m.concat()));
                    }
                    c.sub_received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // A subscriber that keeps coming and going.
    threads.push(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let sub = socket(SocketType::Sub);
            sub.subscribe("news").unwrap();
            sub.connect(&ep).unwrap();
            let _ = sub.recv_timeout(Duration::from_millis(50));
            drop(sub);
            c.cycles.fetch_add(1, Ordering::Relaxed);
        }
    }));
    threads
}

/// Connections to a PULL server that come and go, good and bad.
fn churn(
    dir: &std::path::Path,
    stop: Arc<AtomicBool>,
    c: Arc<Counters>,
) -> Vec<std::thread::JoinHandle<()>> {
    let server = Arc::new(socket(SocketType::Pull));
    let endpoints = [
        server.bind("tcp://127.0.0.1:*").unwrap().to_string(),
        server
            .bind(&format!("ipc://{}/churn.sock", dir.display()))
            .unwrap()
            .to_string(),
    ];
    let drain = {
        let (server, stop) = (server.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = server.recv_timeout(Duration::from_millis(100));
            }
        })
    };
    let worker = std::thread::spawn(move || {
        let mut i: usize = 0;
        while !stop.load(Ordering::Relaxed) {
            let ep = &endpoints[i % 2];
            let outcome: Result<(), String> = match i % 10 {
                0 => {
                    let push = socket(SocketType::Push);
                    push.connect(ep)
                        .map_err(|e| e.to_string())
                        .and_then(|_| {
                            push.send_timeout("socket", Duration::from_secs(5))
                                .map_err(|e| e.to_string())
                        })
                        .and_then(|_| push.close().map_err(|e| e.to_string()))
                        .map_err(|e| format!("socket cycle: {e}"))
                }
                1 | 2 => {
                    let raw: Option<Box<dyn Write>> = match ep.strip_prefix("ipc://") {
                        Some(path) => std::os::unix::net::UnixStream::connect(path)
                            .ok()
                            .map(|s| Box::new(s) as _),
                        None => {
                            let port = ep.rsplit(':').next().unwrap();
                            std::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                                .ok()
                                .map(|s| Box::new(s) as _)
                        }
                    };
                    match raw {
                        Some(mut raw) => {
                            if i % 10 == 2 {
                                let _ = raw.write_all(b"GET / HTTP/1.1\r\n\r\n");
                            }
                            c.hostile.fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        }
                        None => Err("raw connect failed".into()),
                    }
                }
                _ => ChannelBuilder::new()
                    .socket_type(SocketType::Push)
                    .connect(ep)
                    .and_then(|ch| {
                        ch.send("channel").map_err(|e| e.error)?;
                        ch.close()
                    })
                    .map_err(|e| format!("channel cycle: {e}")),
            };
            if let Err(e) = outcome {
                fail(&c, e);
            }
            c.cycles.fetch_add(1, Ordering::Relaxed);
            i += 1;
        }
    });
    vec![drain, worker]
}

fn main() {
    let mut duration = Duration::from_secs(60);
    let mut every = Duration::from_secs(5);
    let mut csv: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--duration" => duration = parse_duration(&args.next().unwrap_or_else(|| usage())),
            "--sample" => every = parse_duration(&args.next().unwrap_or_else(|| usage())),
            "--csv" => csv = Some(args.next().unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    // The I/O engine's thread and descriptors last as long as the process:
    // start it first, so that "after stopping" compares like with like.
    drop(socket(SocketType::Pair));
    let dir = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let c = Arc::new(Counters::default());
    let start = Instant::now();
    let sample = |c: &Counters| Sample {
        at: start.elapsed(),
        rss_kib: status_kib("VmRSS"),
        descriptors: count("/proc/self/fd"),
        threads: count("/proc/self/task"),
        pulled: c.pulled.load(Ordering::Relaxed),
        round_trips: c.round_trips.load(Ordering::Relaxed),
        cycles: c.cycles.load(Ordering::Relaxed),
    };
    let before = sample(&c);
    let mut threads = Vec::new();
    threads.extend(push_pull(stop.clone(), c.clone()));
    threads.extend(req_rep(dir.path(), stop.clone(), c.clone()));
    threads.extend(pub_sub(dir.path(), stop.clone(), c.clone()));
    threads.extend(churn(dir.path(), stop.clone(), c.clone()));

    let warm_up = (duration / 10).min(Duration::from_secs(60));
    let mut samples = Vec::new();
    println!(
        "{:>8} {:>10} {:>6} {:>7} {:>12} {:>10} {:>8}",
        "time", "RSS KiB", "fds", "threads", "pulled", "req/rep", "cycles"
    );
    while start.elapsed() < duration {
        std::thread::sleep(
            every
                .min(duration.saturating_sub(start.elapsed()))
                .max(Duration::from_millis(10)),
        );
        let s = sample(&c);
        println!(
            "{:>7.0}s {:>10} {:>6} {:>7} {:>12} {:>10} {:>8}",
            s.at.as_secs_f64(),
            s.rss_kib,
            s.descriptors,
            s.threads,
            s.pulled,
            s.round_trips,
            s.cycles
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    // Closed sockets' threads end just after the close returns: give them a
    // moment before the last count.
    let mut after = sample(&c);
    let settle = Instant::now();
    while (after.descriptors > before.descriptors || after.threads > before.threads)
        && settle.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(50));
        after = sample(&c);
    }

    if let Some(path) = csv {
        let mut f = std::fs::File::create(&path).unwrap();
        writeln!(
            f,
            "seconds,rss_kib,descriptors,threads,pulled,round_trips,cycles"
        )
        .unwrap();
        for s in &samples {
            writeln!(
                f,
                "{:.1},{},{},{},{},{},{}",
                s.at.as_secs_f64(),
                s.rss_kib,
                s.descriptors,
                s.threads,
                s.pulled,
                s.round_trips,
                s.cycles
            )
            .unwrap();
        }
    }

    let warm = samples.iter().find(|s| s.at >= warm_up).or(samples.first());
    let last = samples.last();
    let secs = after.at.as_secs_f64();
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    println!();
    println!("soak report: {:.0} s, sampled every {:?}", secs, every);
    println!(
        "  load:  {} PUSH/PULL messages ({:.0}/s, {:.1} MiB/s), {} REQ/REP round trips ({:.0}/s), {} published, {} received by SUBs",
        n(&c.pulled),
        n(&c.pulled) as f64 / secs,
        n(&c.bytes) as f64 / secs / 1048576.0,
        n(&c.round_trips),
        n(&c.round_trips) as f64 / secs,
        n(&c.published),
        n(&c.sub_received)
    );
    println!(
        "  churn: {} connect/disconnect cycles ({} hostile)",
        n(&c.cycles),
        n(&c.hostile)
    );
    let mut growth = false;
    if let (Some(warm), Some(last)) = (warm, last) {
        let max = |f: fn(&Sample) -> u64| samples.iter().map(f).max().unwrap_or(0);
        println!(
            "  RSS:         {} KiB at start, {} KiB after warm-up ({:.0} s), {} KiB at the end, {} KiB at most",
            before.rss_kib,
            warm.rss_kib,
            warm.at.as_secs_f64(),
            last.rss_kib,
            max(|s| s.rss_kib)
        );
        println!(
            "  descriptors: {} at start, {} after warm-up, {} at the end, {} at most; {} after stopping",
            before.descriptors,
            warm.descriptors,
            last.descriptors,
            max(|s| s.descriptors as u64),
            after.descriptors
        );
        println!(
            "  threads:     {} at start, {} after warm-up, {} at the end, {} at most; {} after stopping",
            before.threads,
            warm.threads,
            last.threads,
            max(|s| s.threads as u64),
            after.threads
        );
        // Descriptors and threads vary with the connections in flight at the
        // moment of the sample; once stopped, what is left must be what there
        // was at start.
        growth = after.descriptors > before.descriptors || after.threads > before.threads;
    }
    let failures = n(&c.failures);
    println!(
        "  verdict: {} check failures; descriptors and threads after stopping {}",
        failures,
        if growth { "GREW" } else { "back to the start" }
    );
    std::process::exit(if failures > 0 || growth { 1 } else { 0 });
}
