//! conduit-bench: round-trip latency and stream throughput of conduit, a raw OS
//! channel and libzmq, with the two ends in separate processes.
//!
//! The runner starts this same binary twice per measurement (the hidden `peer`
//! subcommand), once for each end; see `runner` and `peer`.

mod case;
mod conduit_impl;
mod measure;
mod omq_impl;
mod os;
mod peer;
mod plot;
mod raw;
mod report;
mod runner;
mod zmq_impl;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use case::{Case, Cores, Impl, Mode, Timing, Transport};

#[derive(Debug, Parser)]
#[command(
    name = "conduit-bench",
    about = "Latency and throughput of conduit against a raw OS channel and libzmq",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One end of one measurement (started by the runner itself).
    #[command(hide = true)]
    Peer(peer::PeerArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// A short run for CI: about 0.2 s per measurement and one round.
    #[arg(long)]
    quick: bool,
    /// Write the results as JSON rows to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Measure nothing: print the tables (and draw --plot) of a run recorded
    /// earlier with --json FILE.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["quick", "json"])]
    report: Option<PathBuf>,
    /// Draw the results as an SVG chart in FILE.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Implementations to measure.
    #[arg(
        long = "impl",
        value_delimiter = ',',
        default_value = "conduit,conduit-socket,raw,raw-batch,libzmq,omq,omq-spin,omq-async"
    )]
    impls: Vec<Impl>,
    /// Transports to measure over.
    #[arg(
        long = "transport",
        value_delimiter = ',',
        default_value = "pipe,ipc,tcp"
    )]
    transports: Vec<Transport>,
    /// What to measure.
    #[arg(long = "mode", value_delimiter = ',', default_value = "lat,thr")]
    modes: Vec<Mode>,
    /// Message sizes in bytes.
    #[arg(
        long = "size",
        value_delimiter = ',',
        default_value = "8,64,1024,65536,1048576"
    )]
    sizes: Vec<usize>,
    /// Core placements of the two ends.
    #[arg(long = "cores", value_delimiter = ',', default_value = "same,separate")]
    cores: Vec<Cores>,
    /// The core both ends share for "same", then the other end's core for
    /// "separate".
    #[arg(long, value_delimiter = ',', default_value = "0,1", num_args = 2)]
    cpus: Vec<usize>,
    /// Times the whole matrix is run; each cell reports its median [default: 3, 1
    /// with --quick].
    #[arg(long)]
    rounds: Option<u32>,
    /// Traffic before recording starts, per measurement [default: 300, 40 with
    /// --quick].
    #[arg(long, value_name = "MS")]
    warmup_ms: Option<u64>,
    /// Recording time per measurement [default: 1000, 150 with --quick].
    #[arg(long, value_name = "MS")]
    measure_ms: Option<u64>,
}

fn plan(args: &RunArgs) -> Result<runner::Plan> {
    let (warmup, measure, rounds) = if args.quick {
        (40, 150, 1)
    } else {
        (300, 1000, 3)
    };
    let timing = Timing {
        warmup: Duration::from_millis(args.warmup_ms.unwrap_or(warmup)),
        measure: Duration::from_millis(args.measure_ms.unwrap_or(measure)),
        windows: if args.quick { 5 } else { 10 },
    };
    if args.sizes.contains(&0) || args.sizes.iter().any(|&s| s > 64 << 20) {
        bail!("message sizes must be from 1 byte to 64 MiB");
    }
    let mut cases = Vec::new();
    for &mode in &args.modes {
        for &transport in &args.transports {
            for &size in &args.sizes {
                for &cores in &args.cores {
                    for &imp in &args.impls {
                        let case = Case {
                            imp,
                            transport,
                            mode,
                            size,
                            cores,
                        };
                        if case.exists() {
                            cases.push(case);
                        }
                    }
                }
            }
        }
    }
    Ok(runner::Plan {
        cases,
        timing,
        rounds: args.rounds.unwrap_or(rounds).max(1),
        cpus: [args.cpus[0], args.cpus[1]],
    })
}

/// The machine, for the chart's subtitle: cores and CPU model.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {model}")
}

/// Prints the tables of `rows` and draws the chart if asked.
fn print_report(args: &RunArgs, rows: &[case::Row]) -> Result<()> {
    println!("{}", report::tables(rows));
    println!("{}", report::target_check(rows));
    if let Some(path) = &args.plot {
        let command: Vec<String> = std::env::args().skip(1).collect();
        let subtitle = format!("{}; conduit-bench {}", machine(), command.join(" "));
        std::fs::write(path, plot::svg(rows, &subtitle))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<()> {
    if let Some(path) = &args.report {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let rows: Vec<case::Row> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON list of rows", path.display()))?;
        return print_report(&args, &rows);
    }
    let plan = plan(&args)?;
    eprintln!(
        "{} measurements x {} round(s), {:?} warm-up + {:?} each",
        plan.cases.len(),
        plan.rounds,
        plan.timing.warmup,
        plan.timing.measure
    );
    let runner::Outcome { rows, failures } = runner::run(&plan)?;
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&rows)? + "\n";
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    print_report(&args, &rows)?;
    // Only a broken measurement fails the run, never a slow one: no time is
    // asserted anywhere.
    if failures > 0 {
        bail!("{failures} measurement(s) failed; see above");
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Peer(args)) => peer::run(args),
        None => run(cli.run),
    }
}
