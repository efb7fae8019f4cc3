//! conduit-bench: round-trip latency and stream throughput of conduit, a raw OS
//! channel and libzmq, with the two ends in separate processes.
//!
//! The runner starts this same binary twice per measurement (the hidden `peer`
//! subcommand), once for each end; see `runner` and `peer`.

mod case;
mod conduit_async;
mod conduit_impl;
mod inproc;
mod measure;
mod omq_impl;
mod os;
mod peer;
mod plot;
mod raw;
mod report;
mod runner;
mod rust_ipc;
mod scale;
mod zmq_ffi;
mod zmq_impl;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

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
    /// The server of a scale case (started by the runner itself).
    #[command(hide = true)]
    ScaleServer(scale::server::ServerArgs),
    /// A process of peers of a scale case (started by the runner itself).
    #[command(hide = true)]
    ScaleClient(scale::client::ClientArgs),
}

/// A group of measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum GroupName {
    /// Round trips and streams between two processes (the --impl, --transport,
    /// --mode, --size and --cores options).
    Matrix,
    /// Many peers on one server process: ROUTER echo, PUB fan-out, silent
    /// connections (the --scale-* options); several minutes, not in --quick.
    Scale,
    /// Round trips and streams between two threads of one process over
    /// inproc://, conduit next to libzmq (the --mode, --size, --cores options).
    Inproc,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The groups to run.
    #[arg(long = "group", value_delimiter = ',', default_value = "matrix")]
    groups: Vec<GroupName>,
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
    /// Implementations to measure [default: all; with --quick, omq through
    /// its blocking API only, no CURVE and no conduit-async].
    #[arg(long = "impl", value_delimiter = ',')]
    impls: Option<Vec<Impl>>,
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
    /// SO_SNDBUF and SO_RCVBUF for every implementation's Unix or TCP socket
    /// (conduit's send/recv_buffer_size, raw's setsockopt, libzmq's
    /// ZMQ_SNDBUF/RCVBUF, omq's Options); 0 leaves each at its own default
    /// (the kernel's, but 1 MiB for omq).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    sockbuf: usize,
    /// Write the inproc group's rows as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    inproc_json: Option<PathBuf>,
    #[command(flatten)]
    scale: ScaleArgs,
}

/// The scale group's options.
#[derive(Debug, clap::Args)]
struct ScaleArgs {
    /// Servers the scale group measures.
    #[arg(long, value_delimiter = ',', default_value = "conduit,libzmq,omq")]
    scale_impl: Vec<scale::ScaleImpl>,
    /// Peer counts of the ROUTER echo case.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    scale_peers: Vec<usize>,
    /// Subscribers of the PUB fan-out case (0: skip it).
    #[arg(long, default_value_t = 1000)]
    scale_subscribers: usize,
    /// Messages every subscriber must receive.
    #[arg(long, default_value_t = 20_000)]
    scale_messages: u64,
    /// Connections that never send a greeting (0: skip the case).
    #[arg(long, default_value_t = 10_000)]
    scale_silent: usize,
    /// Peers (sockets or connections) per client process at most.
    #[arg(long, default_value_t = 2500)]
    scale_per_process: usize,
    /// Untimed echo rounds after the first (which waits for connections).
    #[arg(long, default_value_t = 5)]
    scale_warmup_rounds: usize,
    /// Timed echo rounds after those.
    #[arg(long, default_value_t = 20)]
    scale_rounds: usize,
    /// How long the first echo round (every peer connecting) may take.
    #[arg(long, value_name = "S", default_value_t = 60)]
    scale_connect_timeout: u64,
    /// How long the fan-out may take.
    #[arg(long, value_name = "S", default_value_t = 150)]
    scale_fanout_timeout: u64,
    /// libzmq's listen backlog (ZMQ_BACKLOG; its default is 100). conduit keeps
    /// its default until it has the option.
    #[arg(long, default_value_t = 4096)]
    scale_zmq_backlog: i32,
    /// Write the scale group's rows as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    scale_json: Option<PathBuf>,
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
    let impls = args.impls.clone().unwrap_or_else(|| {
        let mut all: Vec<Impl> = Impl::value_variants().to_vec();
        if args.quick {
            // CURVE (issue 12) and the async socket (issue 13) are measured
            // on request, not in CI's short run.
            all.retain(|&i| {
                !matches!(
                    i,
                    Impl::OmqSpin
                        | Impl::OmqAsync
                        | Impl::ConduitCurve
                        | Impl::LibzmqCurve
                        | Impl::ConduitAsync
                        | Impl::ConduitSpin
                        | Impl::RawSpin
                )
            });
        }
        all
    });
    let mut cases = Vec::new();
    for &mode in &args.modes {
        for &transport in &args.transports {
            for &size in &args.sizes {
                for &cores in &args.cores {
                    for &imp in &impls {
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
        sockbuf: args.sockbuf,
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
    println!("{}", rust_ipc::target_check(rows));
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
    let mut failures = 0;
    if args.groups.contains(&GroupName::Matrix) {
        failures += run_matrix(&args)?;
    }
    if args.groups.contains(&GroupName::Scale) {
        failures += run_scale(&args)?;
    }
    if args.groups.contains(&GroupName::Inproc) {
        failures += run_inproc(&args)?;
    }
    // Only a broken measurement fails the run, never a slow one: no time is
    // asserted anywhere.
    if failures > 0 {
        bail!("{failures} measurement(s) failed; see above");
    }
    Ok(())
}

fn run_scale(args: &RunArgs) -> Result<usize> {
    let a = &args.scale;
    let plan = scale::ScalePlan {
        impls: a.scale_impl.clone(),
        peers: a.scale_peers.clone(),
        subscribers: a.scale_subscribers,
        messages: a.scale_messages,
        silent: a.scale_silent,
        per_process: a.scale_per_process,
        rounds: a.scale_rounds,
        warmup_rounds: a.scale_warmup_rounds,
        connect_timeout: Duration::from_secs(a.scale_connect_timeout),
        round_timeout: Duration::from_secs(10),
        fanout_timeout: Duration::from_secs(a.scale_fanout_timeout),
        zmq_backlog: a.scale_zmq_backlog,
        cpus: [args.cpus[0], args.cpus[1]],
    };
    let (rows, failures) = scale::run(&plan)?;
    if let Some(path) = &a.scale_json {
        let json = serde_json::to_string_pretty(&rows)? + "\n";
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    println!("{}", scale::tables(&rows));
    Ok(failures)
}

fn run_inproc(args: &RunArgs) -> Result<usize> {
    let matrix = plan(args)?;
    let plan = inproc::InprocPlan {
        modes: args.modes.clone(),
        sizes: args.sizes.clone(),
        cores: args.cores.clone(),
        timing: matrix.timing,
        rounds: matrix.rounds,
        cpus: matrix.cpus,
    };
    let (rows, failures) = inproc::run(&plan)?;
    if let Some(path) = &args.inproc_json {
        let json = serde_json::to_string_pretty(&rows)? + "\n";
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    println!("{}", inproc::table(&rows)?);
    Ok(failures)
}

fn run_matrix(args: &RunArgs) -> Result<usize> {
    let plan = plan(args)?;
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
    print_report(args, &rows)?;
    Ok(failures)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Peer(args)) => peer::run(args),
        Some(Command::ScaleServer(args)) => scale::server::run(args),
        Some(Command::ScaleClient(args)) => scale::client::run(args),
        None => run(cli.run),
    }
}
