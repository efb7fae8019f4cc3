//! The `scale` group (issue 10): one server process under test, many peers in
//! client processes, all over TCP loopback, against libzmq in the same run.
//!
//! - **echo**: a ROUTER echoes; N DEALER peers (libzmq, in processes of at most
//!   `--scale-per-process`) each send one 64 B message per round and wait for
//!   it back. The first round also waits for every peer to connect; then
//!   `--scale-warmup-rounds` rounds settle the server (conduit's first rounds
//!   at 1,000 peers took 15x its later ones) and `--scale-rounds` rounds are
//!   timed. A round that loses messages ends the case (the server stalled),
//!   with the count.
//! - **fanout**: a PUB, M SUB peers; the time from the publisher's first data
//!   message until every subscriber has all of `--scale-messages`.
//! - **flood**: S TCP connections that never send a greeting, while one good
//!   DEALER does round trips: threads before and during, when the silent ones
//!   are dropped, and whether the good peer's messages arrive.
//!
//! The server runs on the first `--cpus` core, the clients on the second; the
//! server's threads, descriptors and memory are sampled from `/proc` every
//! 100 ms. Every wait has a deadline: a server that stalls is reported so.

pub mod client;
mod proc;
pub mod server;

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use serde::Serialize;

use proc::{Proc, Sampler, Usage};

/// Writes one line to the runner (a scale process's standard output).
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A server implementation the scale group measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleImpl {
    /// conduit's pattern `Socket`.
    Conduit,
    /// libzmq through its C API.
    Libzmq,
    /// omq.rs through its blocking API.
    Omq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerKind {
    Echo,
    Pub,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    Dealers,
    Subs,
    Silent,
}

/// What the scale group runs.
#[derive(Debug, Clone)]
pub struct ScalePlan {
    pub impls: Vec<ScaleImpl>,
    /// Peer counts of the echo case.
    pub peers: Vec<usize>,
    pub subscribers: usize,
    pub messages: u64,
    pub silent: usize,
    pub per_process: usize,
    pub rounds: usize,
    /// Untimed echo rounds after the first, before the timed ones.
    pub warmup_rounds: usize,
    /// How long the first echo round may take (every peer connecting).
    pub connect_timeout: Duration,
    /// How long a later echo round may take.
    pub round_timeout: Duration,
    /// How long the fan-out may take.
    pub fanout_timeout: Duration,
    /// libzmq's listen backlog (conduit keeps its default).
    pub zmq_backlog: i32,
    pub cpus: [usize; 2],
}

impl ScalePlan {
    fn clients(&self, total: usize) -> Vec<usize> {
        let n = total.div_ceil(self.per_process.max(1)).max(1);
        (0..n)
            .map(|i| total / n + usize::from(i < total % n))
            .collect()
    }
}

/// One line of the scale group's results.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    pub case: String,
    #[serde(rename = "impl")]
    pub imp: ScaleImpl,
    pub peers: usize,
    /// Server threads, descriptors, resident memory at its peak (MiB), the
    /// maxima over the case.
    pub threads: u64,
    pub fds: u64,
    pub rss_mib: f64,
    /// echo: the first round (connecting included); fanout: the whole stream;
    /// flood: until every silent connection was dropped.
    pub first_s: Option<f64>,
    /// echo: median round time; flood: the good peer's median round trip.
    pub round_ms: Option<f64>,
    pub lost: u64,
    /// flood: server threads before the flood.
    pub threads_before: Option<u64>,
    /// What went wrong or what else is worth saying.
    pub note: String,
    /// echo: the fastest and slowest timed round, in ms.
    pub round_range_ms: Option<(f64, f64)>,
    /// echo: every round after the first, warm-up included, in ms.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rounds_ms: Vec<f64>,
    /// echo: the server's CPU time (user and system) over the timed rounds;
    /// fanout: over the stream. With the clients on the other of two cores,
    /// the time of a round can be theirs: this is the server's own cost.
    pub server_cpu_s: Option<f64>,
    /// echo: `server_cpu_s` per message of the timed rounds, in µs.
    pub server_cpu_per_msg_us: Option<f64>,
}

impl ScaleRow {
    fn new(case: &str, imp: ScaleImpl, peers: usize, usage: Usage) -> ScaleRow {
        ScaleRow {
            case: case.to_owned(),
            imp,
            peers,
            threads: usage.threads,
            fds: usage.fds,
            rss_mib: usage.rss_peak_kib as f64 / 1024.0,
            first_s: None,
            round_ms: None,
            lost: 0,
            threads_before: None,
            note: String::new(),
            rounds_ms: Vec::new(),
            round_range_ms: None,
            server_cpu_s: None,
            server_cpu_per_msg_us: None,
        }
    }
}

struct Group<'a> {
    exe: &'a Path,
    plan: &'a ScalePlan,
}

impl Group<'_> {
    fn server(&self, imp: ScaleImpl, kind: ServerKind, extra: &[String]) -> Result<(Proc, String)> {
        let mut args: Vec<String> = vec![
            "scale-server".into(),
            "--impl".into(),
            format!("{}", imp.to_possible_value().expect("named").get_name()),
            "--kind".into(),
            kind.to_possible_value().expect("named").get_name().into(),
            "--cpu".into(),
            self.plan.cpus[0].to_string(),
        ];
        if imp == ScaleImpl::Libzmq {
            args.extend(["--backlog".into(), self.plan.zmq_backlog.to_string()]);
        }
        args.extend(extra.iter().cloned());
        let p = Proc::spawn(self.exe, &args, "the server")?;
        let endpoint = p.expect("ready", Instant::now() + Duration::from_secs(10))?;
        Ok((p, endpoint))
    }

    fn client(
        &self,
        kind: ClientKind,
        count: usize,
        endpoint: &str,
        extra: &[String],
    ) -> Result<Proc> {
        let mut args: Vec<String> = vec![
            "scale-client".into(),
            "--kind".into(),
            kind.to_possible_value().expect("named").get_name().into(),
            "--count".into(),
            count.to_string(),
            "--endpoint".into(),
            endpoint.into(),
            "--cpu".into(),
            self.plan.cpus[1].to_string(),
        ];
        args.extend(extra.iter().cloned());
        Proc::spawn(self.exe, &args, "a client")
    }

    /// One echo round on every client: how many answered, and the time.
    fn round(clients: &mut [Proc], round: u64, timeout: Duration) -> Result<(usize, Duration)> {
        let start = Instant::now();
        for c in clients.iter_mut() {
            c.send(&format!("round {round} {}", timeout.as_millis()))?;
        }
        let deadline = start + timeout + Duration::from_secs(10);
        let mut got = 0;
        for c in clients.iter() {
            got += c.expect("done", deadline)?.parse::<usize>()?;
        }
        Ok((got, start.elapsed()))
    }

    fn echo(&self, imp: ScaleImpl, peers: usize) -> Result<ScaleRow> {
        let (server, endpoint) = self.server(imp, ServerKind::Echo, &[])?;
        let sampler = Sampler::start(server.pid());
        let mut clients = self
            .plan
            .clients(peers)
            .into_iter()
            .map(|n| self.client(ClientKind::Dealers, n, &endpoint, &[]))
            .collect::<Result<Vec<_>>>()?;
        let ready_by = Instant::now() + Duration::from_secs(60);
        for c in &clients {
            c.expect("ready", ready_by)?;
        }
        let (got, first) = Self::round(&mut clients, 0, self.plan.connect_timeout)?;
        let mut note = String::new();
        let mut times = Vec::new();
        let mut all_rounds = Vec::new();
        let mut lost = (peers - got) as u64;
        let mut cpu_before = None;
        if got < peers {
            let _ = write!(
                note,
                "stalled: {got} of {peers} peers answered the first round within {:?}",
                self.plan.connect_timeout
            );
        } else {
            let warmup = self.plan.warmup_rounds as u64;
            for r in 1..=warmup + self.plan.rounds as u64 {
                if r == warmup + 1 {
                    cpu_before = proc::cpu_seconds(server.pid());
                }
                let (got, t) = Self::round(&mut clients, r, self.plan.round_timeout)?;
                if got < peers {
                    lost += (peers - got) as u64;
                    let _ = write!(note, "stalled in round {r}: {got} of {peers} answered");
                    break;
                }
                all_rounds.push(t.as_secs_f64() * 1e3);
                if r > warmup {
                    times.push(t.as_secs_f64() * 1e3);
                }
            }
        }
        let mut row = ScaleRow::new("echo", imp, peers, sampler.max());
        row.server_cpu_s = cpu_used(server.pid(), cpu_before);
        row.server_cpu_per_msg_us = row
            .server_cpu_s
            .filter(|_| !times.is_empty())
            .map(|cpu| cpu * 1e6 / (times.len() * peers) as f64);
        row.first_s = Some(first.as_secs_f64());
        if !times.is_empty() {
            row.round_ms = Some(crate::measure::median(&mut times));
            // median() sorted them.
            row.round_range_ms = Some((times[0], times[times.len() - 1]));
        }
        row.lost = lost;
        row.note = note;
        row.rounds_ms = all_rounds;
        Ok(row)
    }

    fn fanout(&self, imp: ScaleImpl) -> Result<ScaleRow> {
        let plan = self.plan;
        // Every subscriber may hold the whole stream: nothing is dropped at
        // the high-water mark, so a slow publisher shows as time, not loss.
        let hwm = (plan.messages + 100).to_string();
        let (mut server, endpoint) =
            self.server(imp, ServerKind::Pub, &["--hwm".into(), hwm.clone()])?;
        let sampler = Sampler::start(server.pid());
        let budget = plan.connect_timeout + plan.fanout_timeout;
        let extra = [
            "--messages".into(),
            plan.messages.to_string(),
            "--hwm".into(),
            hwm,
            "--deadline-ms".into(),
            budget.as_millis().to_string(),
        ];
        let clients = plan
            .clients(plan.subscribers)
            .into_iter()
            .map(|n| self.client(ClientKind::Subs, n, &endpoint, &extra))
            .collect::<Result<Vec<_>>>()?;
        let by = Instant::now() + Duration::from_secs(60);
        for c in &clients {
            c.expect("ready", by)?;
        }
        // Hellos until every subscriber has one: its subscription is in force.
        let by = Instant::now() + plan.connect_timeout;
        let mut subscribed = vec![false; clients.len()];
        let mut received = vec![0u64; clients.len()];
        while subscribed.iter().any(|s| !s) {
            if Instant::now() >= by {
                bail!(
                    "subscribers not all subscribed within {:?}",
                    plan.connect_timeout
                );
            }
            server.send("hello")?;
            std::thread::sleep(Duration::from_millis(100));
            for (c, s) in clients.iter().zip(subscribed.iter_mut()) {
                while let Some(line) = c.try_line() {
                    *s |= line == "subscribed";
                }
            }
        }
        let cpu_before = proc::cpu_seconds(server.pid());
        let start = Instant::now();
        server.send(&format!("go {}", plan.messages))?;
        let by = start + plan.fanout_timeout;
        let mut finished = vec![false; clients.len()];
        let mut note = String::new();
        while finished.iter().any(|f| !f) {
            if Instant::now() >= by {
                note = format!("not done after {:?}", plan.fanout_timeout);
                break;
            }
            for (i, c) in clients.iter().enumerate() {
                while let Some(line) = c.try_line() {
                    let mut words = line.split_whitespace();
                    let word = words.next().unwrap_or_default();
                    if let Some(Ok(n)) = words.next().map(str::parse::<u64>) {
                        received[i] = n;
                    }
                    match word {
                        "done" => finished[i] = true,
                        "timeout" => {
                            finished[i] = true;
                            note = format!("a client gave up after {budget:?} from its start");
                        }
                        "progress" => {}
                        _ => bail!("unexpected line {line:?}"),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let total: u64 = received.iter().sum();
        let elapsed = start.elapsed();
        let mut row = ScaleRow::new("fanout", imp, plan.subscribers, sampler.max());
        row.server_cpu_s = cpu_used(server.pid(), cpu_before);
        row.first_s = Some(elapsed.as_secs_f64());
        row.lost = plan.subscribers as u64 * plan.messages
            - total.min(plan.subscribers as u64 * plan.messages);
        row.note = note;
        Ok(row)
    }

    fn flood(&self, imp: ScaleImpl) -> Result<ScaleRow> {
        let plan = self.plan;
        // libzmq's handshake timeout is 30 s by default and omq's 10 s; both
        // are set to conduit's default so that all drop silent peers at the
        // same time.
        let handshake = conduit::DEFAULT_HANDSHAKE_TIMEOUT;
        let extra = match imp {
            ScaleImpl::Libzmq | ScaleImpl::Omq => {
                vec!["--handshake-ms".into(), handshake.as_millis().to_string()]
            }
            ScaleImpl::Conduit => Vec::new(),
        };
        let (server, endpoint) = self.server(imp, ServerKind::Echo, &extra)?;
        let sampler = Sampler::start(server.pid());
        let mut good = vec![self.client(ClientKind::Dealers, 1, &endpoint, &[])?];
        good[0].expect("ready", Instant::now() + Duration::from_secs(10))?;
        let (got, _) = Self::round(&mut good, 0, Duration::from_secs(10))?;
        if got != 1 {
            bail!("the good peer got no echo before the flood");
        }
        std::thread::sleep(Duration::from_millis(200));
        let before = proc::usage(server.pid()).context("the server is gone")?;
        let deadline_ms = (handshake + plan.connect_timeout).as_millis().to_string();
        let start = Instant::now();
        let silent = plan
            .clients(plan.silent)
            .into_iter()
            .map(|n| {
                self.client(
                    ClientKind::Silent,
                    n,
                    &endpoint,
                    &["--deadline-ms".into(), deadline_ms.clone()],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let by = start + handshake + plan.connect_timeout + Duration::from_secs(10);
        let mut opened = 0;
        let mut failed = 0;
        let mut closed = 0;
        let mut close_ms: Vec<f64> = Vec::new();
        let mut done = vec![false; silent.len()];
        let mut rtts = Vec::new();
        let mut lost = 0u64;
        let mut round = 1;
        while done.iter().any(|d| !d) {
            if Instant::now() >= by {
                bail!("silent clients did not finish in time");
            }
            let (got, t) = Self::round(&mut good, round, Duration::from_secs(2))?;
            round += 1;
            if got == 1 {
                rtts.push(t.as_secs_f64() * 1e3);
            } else {
                lost += 1;
            }
            std::thread::sleep(Duration::from_millis(10));
            for (c, d) in silent.iter().zip(done.iter_mut()) {
                while let Some(line) = c.try_line() {
                    let w: Vec<&str> = line.split_whitespace().collect();
                    match w.as_slice() {
                        ["ready", o, f] => {
                            opened += o.parse::<usize>()?;
                            failed += f.parse::<usize>()?;
                        }
                        ["closed", n, median, max] => {
                            closed += n.parse::<usize>()?;
                            close_ms.push(median.parse()?);
                            close_ms.push(max.parse()?);
                            *d = true;
                        }
                        _ => bail!("unexpected line {line:?}"),
                    }
                }
            }
        }
        let mut row = ScaleRow::new("flood", imp, plan.silent, sampler.max());
        row.threads_before = Some(before.threads);
        row.first_s = Some(start.elapsed().as_secs_f64());
        if !rtts.is_empty() {
            row.round_ms = Some(crate::measure::median(&mut rtts));
        }
        row.lost = lost;
        let max_close = close_ms.iter().copied().fold(0.0, f64::max);
        row.note = format!(
            "{opened} connected, {failed} failed to connect, {closed} dropped by the server \
             (the last {:.1} s after its client had connected all of its own); good peer: \
             {} round trips, {lost} lost",
            max_close / 1e3,
            rtts.len()
        );
        Ok(row)
    }
}

/// Runs the scale group; failures are reported and counted, not fatal.
pub fn run(plan: &ScalePlan) -> Result<(Vec<ScaleRow>, usize)> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let g = Group { exe: &exe, plan };
    let mut rows = Vec::new();
    let mut failures = 0;
    let mut record = |what: String, r: Result<ScaleRow>| match r {
        Ok(row) => {
            eprintln!("scale: {what}: {}", show(&row));
            rows.push(row);
        }
        Err(e) => {
            failures += 1;
            eprintln!("scale: {what}: FAILED: {e:#}");
        }
    };
    for &peers in &plan.peers {
        for &imp in &plan.impls {
            record(format!("echo {imp:?} {peers} peers"), g.echo(imp, peers));
        }
    }
    if plan.subscribers > 0 {
        for &imp in &plan.impls {
            record(format!("fanout {imp:?}"), g.fanout(imp));
        }
    }
    if plan.silent > 0 {
        for &imp in &plan.impls {
            record(format!("flood {imp:?}"), g.flood(imp));
        }
    }
    Ok((rows, failures))
}

fn show(r: &ScaleRow) -> String {
    format!(
        "threads {}, fds {}, rss {:.0} MiB, first {:.2} s, round {} ms, lost {}{}",
        r.threads,
        r.fds,
        r.rss_mib,
        r.first_s.unwrap_or(0.0),
        r.round_ms.map_or("-".into(), |m| format!("{m:.2}")),
        r.lost,
        if r.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.note)
        }
    ) + &if r.rounds_ms.is_empty() {
        String::new()
    } else {
        let each: Vec<String> = r.rounds_ms.iter().map(|t| format!("{t:.1}")).collect();
        format!("; rounds (ms, warm-up first): {}", each.join(" "))
    }
}

/// CPU seconds `pid` used since `before` (`None` if either look failed).
fn cpu_used(pid: u32, before: Option<f64>) -> Option<f64> {
    Some(proc::cpu_seconds(pid)? - before?)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// The scale group's tables, as Markdown, with conduit's ratios to libzmq.
pub fn tables(rows: &[ScaleRow]) -> String {
    let mut out = String::new();
    // conduit's figure over libzmq's for the same case and peer count.
    let vs_libzmq = |r: &ScaleRow, figure: fn(&ScaleRow) -> Option<f64>| -> String {
        let other = rows
            .iter()
            .find(|o| o.case == r.case && o.imp == ScaleImpl::Libzmq && o.peers == r.peers);
        match (r.imp, figure(r), other.and_then(figure)) {
            (ScaleImpl::Conduit, Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".into(),
        }
    };
    let echo: Vec<&ScaleRow> = rows.iter().filter(|r| r.case == "echo").collect();
    if !echo.is_empty() {
        out.push_str("### ROUTER echo, every peer one 64 B message per round\n\n");
        out.push_str("| peers | server | threads | fds | peak RSS | first round (connecting) | median round | fastest-slowest | per message | server CPU per message | lost | conduit/libzmq (round) | conduit/libzmq (server CPU) | note |\n");
        out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for r in echo {
            let _ = writeln!(
                out,
                "| {} | {:?} | {} | {} | {:.0} MiB | {:.2} s | {} ms | {} ms | {} µs | {} µs | {} | {} | {} | {} |",
                r.peers,
                r.imp,
                r.threads,
                r.fds,
                r.rss_mib,
                r.first_s.unwrap_or(0.0),
                opt(r.round_ms, 2),
                r.round_range_ms
                    .map_or("-".into(), |(a, b)| format!("{a:.1}-{b:.1}")),
                opt(r.round_ms.map(|m| m * 1e3 / r.peers as f64), 1),
                opt(r.server_cpu_per_msg_us, 1),
                r.lost,
                vs_libzmq(r, |r| r.round_ms),
                vs_libzmq(r, |r| r.server_cpu_s),
                r.note
            );
        }
        out.push('\n');
    }
    let fan: Vec<&ScaleRow> = rows.iter().filter(|r| r.case == "fanout").collect();
    if !fan.is_empty() {
        out.push_str("### PUB to SUB connections, 64 B messages\n\n");
        out.push_str("| subscribers | server | threads | peak RSS | time until all have all | server CPU | lost | conduit/libzmq (time) | conduit/libzmq (server CPU) | note |\n");
        out.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for r in fan {
            let _ = writeln!(
                out,
                "| {} | {:?} | {} | {:.0} MiB | {} s | {} s | {} | {} | {} | {} |",
                r.peers,
                r.imp,
                r.threads,
                r.rss_mib,
                opt(r.first_s, 2),
                opt(r.server_cpu_s, 2),
                r.lost,
                vs_libzmq(r, |r| r.first_s),
                vs_libzmq(r, |r| r.server_cpu_s),
                r.note
            );
        }
        out.push('\n');
    }
    let flood: Vec<&ScaleRow> = rows.iter().filter(|r| r.case == "flood").collect();
    if !flood.is_empty() {
        out.push_str(
            "### Connections that never send a greeting, one good peer served meanwhile\n\n",
        );
        out.push_str("| silent | server | threads before / max | fds max | peak RSS | all dropped after | good peer round trip (median) | what happened |\n");
        out.push_str("|---:|---|---:|---:|---:|---:|---:|---|\n");
        for r in flood {
            let _ = writeln!(
                out,
                "| {} | {:?} | {} / {} | {} | {:.0} MiB | {} s | {} ms | {} |",
                r.peers,
                r.imp,
                r.threads_before.unwrap_or(0),
                r.threads,
                r.fds,
                r.rss_mib,
                opt(r.first_s, 1),
                opt(r.round_ms, 2),
                r.note
            );
        }
        out.push('\n');
    }
    out
}
