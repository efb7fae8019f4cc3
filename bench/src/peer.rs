//! A child process of the runner: one end of one measurement.
//!
//! It talks to the runner over its standard output, one line at a time:
//! `ready ENDPOINT` once the other end may connect (`-` for pipes), then
//! `result lat MEDIAN_US P99_US SAMPLES` or `result thr MSGS_PER_S MESSAGES` (local
//! end only). Errors go to standard error and a non-zero exit.

use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::case::{Case, Cores, Impl, Mode, Role, Timing, Transport};
use crate::measure::Link;
use crate::{conduit_async, conduit_impl, omq_impl, os, raw, rust_ipc, zmq_impl};

/// What a process needs to reach the other end.
#[derive(Debug)]
pub struct Meet {
    /// Inherited pipe ends, in the order the runner gives them: for a round trip
    /// (the end to read, the end to write); for a stream, the one end.
    pub fds: Vec<OwnedFd>,
    /// Where the local end listens (remote end only).
    pub endpoint: Option<String>,
    /// A private directory for socket files.
    pub dir: PathBuf,
    /// SO_SNDBUF and SO_RCVBUF to ask for; 0: the implementation's default.
    pub sockbuf: usize,
}

impl Meet {
    pub fn endpoint(&self) -> Result<&str> {
        self.endpoint.as_deref().context("no --endpoint given")
    }
}

/// Tells the runner the other end may now connect to `endpoint`.
pub fn announce(endpoint: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "ready {endpoint}");
    let _ = out.flush();
}

/// The hidden `peer` subcommand's arguments (set by the runner, not by people).
#[derive(Debug, clap::Args)]
pub struct PeerArgs {
    #[arg(long = "impl")]
    pub imp: Impl,
    #[arg(long)]
    pub transport: Transport,
    #[arg(long)]
    pub mode: Mode,
    #[arg(long)]
    pub size: usize,
    #[arg(long)]
    pub cores: Cores,
    #[arg(long)]
    pub role: Role,
    /// The core to pin this process to.
    #[arg(long)]
    pub cpu: usize,
    #[arg(long, value_delimiter = ',')]
    pub fds: Vec<RawFd>,
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub warmup_ms: u64,
    #[arg(long)]
    pub measure_ms: u64,
    #[arg(long)]
    pub windows: u32,
    #[arg(long, default_value_t = 0)]
    pub sockbuf: usize,
}

fn open(case: &Case, role: Role, meet: Meet) -> Result<Box<dyn Link>> {
    match case.imp {
        Impl::Conduit => conduit_impl::open(case, role, meet),
        Impl::ConduitSocket | Impl::ConduitCurve | Impl::ConduitSpin => {
            conduit_impl::open_socket(case, role, meet)
        }
        Impl::ConduitAsync => conduit_async::open(case, role, meet),
        Impl::Raw | Impl::RawBatch | Impl::RawSpin => raw::open(case, role, meet),
        Impl::Libzmq | Impl::LibzmqCurve => zmq_impl::open(case, role, meet),
        Impl::ConduitInline
        | Impl::ConduitShared
        | Impl::IpcChannel
        | Impl::ConduitTyped
        | Impl::IpcChannelTyped => rust_ipc::open(case, role, meet),
        Impl::Omq | Impl::OmqSpin | Impl::OmqAsync => omq_impl::open(case, role, meet),
    }
}

/// Runs one end; never returns (destructors would only wait on the other end).
pub fn run(args: PeerArgs) -> Result<()> {
    // First, so that every thread started later (conduit's flusher, libzmq's I/O
    // thread) inherits the pinning.
    os::pin_to(args.cpu).with_context(|| format!("cannot pin to cpu {}", args.cpu))?;
    let case = Case {
        imp: args.imp,
        transport: args.transport,
        mode: args.mode,
        size: args.size,
        cores: args.cores,
    };
    let timing = Timing {
        warmup: Duration::from_millis(args.warmup_ms),
        measure: Duration::from_millis(args.measure_ms),
        windows: args.windows,
    };
    let fds = args
        .fds
        .iter()
        // SAFETY: the runner handed these descriptors to this process alone.
        .map(|&fd| unsafe { os::take(fd) })
        .collect::<std::io::Result<Vec<_>>>()
        .context("inherited descriptors")?;
    let meet = Meet {
        fds,
        endpoint: args.endpoint,
        dir: args.dir,
        sockbuf: args.sockbuf,
    };
    let mut link = open(&case, args.role, meet).with_context(|| format!("opening {case}"))?;
    if case.transport == Transport::Pipe && args.role == Role::Local {
        announce("-");
    }
    let result = match (case.mode, args.role) {
        (Mode::Lat, Role::Local) => {
            let rtt = link.ping_pong(case.size, &timing)?;
            Some(format!(
                "result lat {} {} {}",
                rtt.median_us(),
                rtt.p99_us(),
                rtt.len()
            ))
        }
        (Mode::Lat, Role::Remote) => {
            // Ends when the measuring end exits, by a close or a reset; anything
            // wrong before that, the measuring end reports.
            let _ = link.echo_all();
            None
        }
        (Mode::Thr, Role::Local) => {
            let d = link.drain(case.size, &timing)?;
            Some(format!("result thr {} {}", d.msgs_per_s, d.total))
        }
        (Mode::Thr, Role::Remote) => {
            link.stream_all();
            None
        }
    };
    if let Some(line) = result {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    std::process::exit(0)
}
