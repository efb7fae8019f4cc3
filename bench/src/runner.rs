//! Runs the matrix: for each case, two child processes of this same binary (the
//! `peer` subcommand), connected by pipes the runner makes or by a socket the local
//! end binds; the local end reports one result line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::case::{Case, Cores, Mode, Role, Row, Timing, Transport};
use crate::measure::{self, median};
use crate::os;

/// Everything one run measures.
#[derive(Debug)]
pub struct Plan {
    /// In the order to run them: the implementations of one cell next to each
    /// other, so that they share whatever the machine was doing at the time.
    pub cases: Vec<Case>,
    pub timing: Timing,
    /// The whole matrix runs this many times; each cell reports the median.
    pub rounds: u32,
    /// The core for "same", and the two cores for "separate".
    pub cpus: [usize; 2],
    /// Socket buffer sizes for everyone; 0: each implementation's default.
    pub sockbuf: usize,
}

/// One measurement of one case.
#[derive(Debug, Clone, Copy)]
enum Sample {
    Lat { median_us: f64, p99_us: f64 },
    Thr { msgs_per_s: f64, messages: u64 },
}

/// A child that is killed (if still running) and reaped when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// One row per case that produced a result.
    pub rows: Vec<Row>,
    /// Measurements that failed (reported on standard error as they happened).
    pub failures: usize,
}

/// Runs every case of `plan`, `plan.rounds` times. A measurement that fails is
/// reported and skipped; the others go on.
pub fn run(plan: &Plan) -> Result<Outcome> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let dir = std::env::temp_dir().join(format!("conduit-bench.{}", std::process::id()));
    let total = plan.cases.len() * plan.rounds as usize;
    let mut samples: HashMap<Case, Vec<Sample>> = HashMap::new();
    let mut done = 0;
    let mut failures = 0;
    for round in 1..=plan.rounds {
        for case in &plan.cases {
            done += 1;
            // A fresh directory per case: no socket file is ever left in the way.
            std::fs::create_dir_all(&dir)?;
            let result = run_case(&exe, &dir, case, plan);
            let _ = std::fs::remove_dir_all(&dir);
            match result {
                Ok(sample) => {
                    eprintln!(
                        "[{done:>4}/{total}] round {round}: {case}: {}",
                        show(sample)
                    );
                    samples.entry(*case).or_default().push(sample);
                }
                Err(e) => {
                    failures += 1;
                    eprintln!("[{done:>4}/{total}] round {round}: {case}: FAILED: {e:#}");
                }
            }
        }
    }
    let rows = plan
        .cases
        .iter()
        .filter_map(|case| samples.get(case).map(|s| merge(*case, s)))
        .collect();
    Ok(Outcome { rows, failures })
}

fn show(sample: Sample) -> String {
    match sample {
        Sample::Lat { median_us, p99_us } => {
            format!("rtt median {median_us:.2} us, p99 {p99_us:.2} us")
        }
        Sample::Thr {
            msgs_per_s,
            messages,
        } => format!("{msgs_per_s:.0} msgs/s ({messages} messages received)"),
    }
}

/// The row of a case: medians over its rounds.
fn merge(case: Case, samples: &[Sample]) -> Row {
    let mut medians = Vec::new();
    let mut p99s = Vec::new();
    let mut rates = Vec::new();
    for s in samples {
        match *s {
            Sample::Lat { median_us, p99_us } => {
                medians.push(median_us);
                p99s.push(p99_us);
            }
            Sample::Thr { msgs_per_s, .. } => rates.push(msgs_per_s),
        }
    }
    match case.mode {
        Mode::Lat => Row::latency(case, median(&mut medians), median(&mut p99s)),
        Mode::Thr => Row::throughput(case, median(&mut rates)),
    }
}

/// The pipe ends of each side, for a case over pipes: (local's, remote's).
fn pipes(case: &Case) -> Result<(Vec<OwnedFd>, Vec<OwnedFd>)> {
    if case.transport != Transport::Pipe {
        return Ok((Vec::new(), Vec::new()));
    }
    // Every implementation gets blocking pipes: conduit::pipe() makes them so
    // (conduit asks for non-blocking calls one at a time), and so would a raw
    // program.
    let nonblocking = false;
    Ok(match case.mode {
        Mode::Lat => {
            let (to_remote_r, to_remote_w) = os::pipe(nonblocking)?;
            let (to_local_r, to_local_w) = os::pipe(nonblocking)?;
            (vec![to_local_r, to_remote_w], vec![to_remote_r, to_local_w])
        }
        Mode::Thr => {
            let (r, w) = os::pipe(nonblocking)?;
            (vec![r], vec![w])
        }
    })
}

fn peer_command(
    exe: &Path,
    dir: &Path,
    case: &Case,
    role: Role,
    cpu: usize,
    plan: &Plan,
) -> Command {
    let timing = &plan.timing;
    let mut c = Command::new(exe);
    c.arg("peer")
        .args(["--impl", &case.imp.to_string()])
        .args(["--transport", &case.transport.to_string()])
        .args(["--mode", &case.mode.to_string()])
        .args(["--size", &case.size.to_string()])
        .args(["--cores", &case.cores.to_string()])
        .args([
            "--role",
            if role == Role::Local {
                "local"
            } else {
                "remote"
            },
        ])
        .args(["--cpu", &cpu.to_string()])
        .args(["--dir", &dir.display().to_string()])
        .args(["--warmup-ms", &timing.warmup.as_millis().to_string()])
        .args(["--measure-ms", &timing.measure.as_millis().to_string()])
        .args(["--windows", &timing.windows.to_string()])
        .args(["--sockbuf", &plan.sockbuf.to_string()])
        .stdin(Stdio::null());
    c
}

fn run_case(exe: &Path, dir: &Path, case: &Case, plan: &Plan) -> Result<Sample> {
    let deadline = Instant::now() + measure::deadline(&plan.timing);
    let (local_cpu, remote_cpu) = match case.cores {
        Cores::Same => (plan.cpus[0], plan.cpus[0]),
        Cores::Separate => (plan.cpus[0], plan.cpus[1]),
    };
    let (local_fds, remote_fds) = pipes(case)?;

    let mut cmd = peer_command(exe, dir, case, Role::Local, local_cpu, plan);
    os::hand_over(
        &mut cmd,
        &local_fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(),
    );
    cmd.stdout(Stdio::piped());
    let mut local = Reaped(cmd.spawn().context("cannot start the local end")?);
    drop(local_fds);
    let lines = read_lines(local.0.stdout.take().expect("piped"));
    let next_line = |what: &str| -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => Ok(line),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("no {what} in time: hung"),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("the local end exited early"),
        }
    };

    let ready = next_line("ready")?;
    let endpoint = ready
        .strip_prefix("ready ")
        .with_context(|| format!("unexpected line {ready:?}"))?;
    let mut cmd = peer_command(exe, dir, case, Role::Remote, remote_cpu, plan);
    if endpoint != "-" {
        cmd.args(["--endpoint", endpoint]);
    }
    os::hand_over(
        &mut cmd,
        &remote_fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>(),
    );
    cmd.stdout(Stdio::null());
    // Killed as soon as the result is in: libzmq's ends never notice the other end
    // left, and a leftover process would disturb the next case.
    let _remote = Reaped(cmd.spawn().context("cannot start the remote end")?);
    drop(remote_fds);

    let line = next_line("result")?;
    parse_result(&line).with_context(|| format!("unexpected line {line:?}"))
}

/// Forwards the lines of a child's output, from a thread, so that waiting for them
/// can time out.
pub fn read_lines(out: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn parse_result(line: &str) -> Result<Sample> {
    let words: Vec<&str> = line.split_whitespace().collect();
    Ok(match words.as_slice() {
        ["result", "lat", median, p99, _samples] => Sample::Lat {
            median_us: median.parse()?,
            p99_us: p99.parse()?,
        },
        ["result", "thr", rate, messages] => Sample::Thr {
            msgs_per_s: rate.parse()?,
            messages: messages.parse()?,
        },
        _ => bail!("not a result"),
    })
}
