//! What one measurement is: which implementation, over what, how, and the row it
//! yields.

use std::fmt;
use std::time::Duration;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// An implementation under test. Adding one (say, conduit's pattern sockets) means
/// a variant here and a module with an `open` function, wired in `peer::open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Impl {
    /// conduit: `Channel` (PAIR) over ipc/tcp, `PipeSender`/`PipeReceiver` over pipes.
    Conduit,
    /// The same OS channel, a 4-byte length prefix, one write per message.
    Raw,
    /// As `raw`, but 64 messages per `writev`: what batching can reach (streams
    /// only).
    #[serde(rename = "raw-batch")]
    RawBatch,
    /// libzmq through its C API: PAIR for latency, PUSH/PULL for throughput.
    Libzmq,
    /// conduit's pattern `Socket`: PAIR for latency, PUSH/PULL for throughput
    /// (ipc and tcp), on the event-driven engine: one I/O thread per process,
    /// and an application thread waiting in `recv` steps the socket's reactor
    /// itself.
    #[value(name = "conduit-socket")]
    #[serde(rename = "conduit-socket")]
    ConduitSocket,
    /// Rust to Rust (`rust_ipc`), ipc only: conduit's `Channel` with shared
    /// memory off, every byte through the socket.
    #[value(name = "conduit-inline")]
    #[serde(rename = "conduit-inline")]
    ConduitInline,
    /// conduit's `Channel` sending a payload built in a `SharedBytesMut`: no copy
    /// at all on either side (`rust_ipc`), ipc only.
    #[value(name = "conduit-shared")]
    #[serde(rename = "conduit-shared")]
    ConduitShared,
    /// servo's ipc-channel, bytes (`rust_ipc`), ipc only.
    #[value(name = "ipc-channel")]
    #[serde(rename = "ipc-channel")]
    IpcChannel,
    /// conduit's `send_value`/`recv_value` of a typed struct (`rust_ipc`),
    /// round trips over ipc only.
    #[value(name = "conduit-typed")]
    #[serde(rename = "conduit-typed")]
    ConduitTyped,
    /// ipc-channel's `IpcSender<T>` of the same struct (`rust_ipc`).
    #[value(name = "ipc-channel-typed")]
    #[serde(rename = "ipc-channel-typed")]
    IpcChannelTyped,
    /// omq.rs (`omq-tokio`) through its blocking API, with its defaults: PAIR for
    /// latency, PUSH/PULL for throughput (ipc, tcp).
    Omq,
    /// As `omq`, with a blocking `recv` that busy-polls before parking
    /// (`Options::recv_spin`).
    #[value(name = "omq-spin")]
    #[serde(rename = "omq-spin")]
    OmqSpin,
    /// omq.rs through its async API on a current-thread tokio runtime owned by
    /// the application thread.
    #[value(name = "omq-async")]
    #[serde(rename = "omq-async")]
    OmqAsync,
    /// `conduit-socket` with CURVE (issue 12): the local end is the CURVE server,
    /// the remote end a client, both with fixed key pairs (`curve_keys`).
    #[value(name = "conduit-curve")]
    #[serde(rename = "conduit-curve")]
    ConduitCurve,
    /// `conduit-socket` with `busy_poll` (issue 11): a waiting thread polls
    /// its socket for up to `conduit_impl::SPIN` before it sleeps.
    #[value(name = "conduit-spin")]
    #[serde(rename = "conduit-spin")]
    ConduitSpin,
    /// `raw` receiving with non-blocking reads in a loop that never sleeps:
    /// what busy-polling can reach (round trips over ipc and tcp).
    #[value(name = "raw-spin")]
    #[serde(rename = "raw-spin")]
    RawSpin,
    /// `libzmq` with CURVE (`ZMQ_CURVE_SERVER` on the local end), the same keys.
    #[value(name = "libzmq-curve")]
    #[serde(rename = "libzmq-curve")]
    LibzmqCurve,
    /// `conduit-socket` through `AsyncSocket` (feature `tokio`, issue 13) on a
    /// current-thread tokio runtime owned by the application thread: each
    /// send and receive is one `block_on`, as in `omq-async`.
    #[value(name = "conduit-async")]
    #[serde(rename = "conduit-async")]
    ConduitAsync,
}

impl Impl {
    /// The ways of driving omq.rs; the report shows the best of them per cell.
    pub const OMQ_APIS: [Impl; 3] = [Impl::Omq, Impl::OmqSpin, Impl::OmqAsync];

    pub fn is_omq(self) -> bool {
        Impl::OMQ_APIS.contains(&self)
    }
}

/// How the two processes are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Anonymous OS pipes inherited from the parent (two for a round trip).
    Pipe,
    /// A Unix domain socket at a path.
    Ipc,
    /// TCP over loopback.
    Tcp,
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Ping-pong round trips (libzmq's local_lat/remote_lat).
    Lat,
    /// A one-way stream (libzmq's local_thr/remote_thr).
    Thr,
}

/// Where the two processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cores {
    /// Both pinned to one core.
    Same,
    /// Each pinned to a core of its own.
    Separate,
}

macro_rules! display_as_value_name {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let value = self.to_possible_value().expect("no skipped variants");
                f.write_str(value.get_name())
            }
        }
    )*};
}
display_as_value_name!(Impl, Transport, Mode, Cores);

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Case {
    pub imp: Impl,
    pub transport: Transport,
    pub mode: Mode,
    pub size: usize,
    pub cores: Cores,
}

impl Case {
    /// Whether this implementation has this transport at all.
    pub fn exists(&self) -> bool {
        match self.imp {
            // libzmq and omq have no pipe transport, nor do conduit's sockets.
            Impl::Libzmq
            | Impl::ConduitSocket
            | Impl::ConduitCurve
            | Impl::ConduitAsync
            | Impl::ConduitSpin
            | Impl::LibzmqCurve
            | Impl::Omq
            | Impl::OmqSpin
            | Impl::OmqAsync => self.transport != Transport::Pipe,
            // Batching has nothing to batch in a ping-pong.
            Impl::RawBatch => self.mode == Mode::Thr,
            // Spinning only changes how a waiting end wakes: round trips.
            Impl::RawSpin => self.mode == Mode::Lat && self.transport != Transport::Pipe,
            Impl::Conduit | Impl::Raw => true,
            Impl::ConduitInline | Impl::ConduitShared | Impl::IpcChannel => {
                self.transport == Transport::Ipc
            }
            // The typed struct holds a 1 KiB vector: its rows say 1024.
            Impl::ConduitTyped | Impl::IpcChannelTyped => {
                self.transport == Transport::Ipc && self.mode == Mode::Lat && self.size == 1024
            }
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} B, cores {}",
            self.imp, self.transport, self.mode, self.size, self.cores
        )
    }
}

/// How long each measurement runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Traffic before anything is recorded: page faults, buffer growth, caches.
    pub warmup: Duration,
    /// Recording time.
    pub measure: Duration,
    /// A stream's recording is cut into this many windows; the median window rate
    /// is reported.
    pub windows: u32,
}

/// The CURVE key pairs of the `*-curve` implementations: (server, client). Fixed,
/// derived from constant secret keys, so that both processes of a measurement
/// agree without passing keys around; fine for a benchmark, never for real use.
pub fn curve_keys() -> (conduit::CurveKeyPair, conduit::CurveKeyPair) {
    let pair =
        |b: u8| conduit::CurveKeyPair::from_secret(conduit::CurveSecretKey::from_bytes([b; 32]));
    (pair(0x5e), pair(0xc1))
}

/// Which end of the pair a process is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The measuring end: binds, times round trips (lat) or receives (thr).
    Local,
    /// The other end: connects, echoes (lat) or sends (thr).
    Remote,
}

/// One line of the results, as the JSON output holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    #[serde(rename = "impl")]
    pub imp: Impl,
    pub transport: Transport,
    pub mode: Mode,
    pub size: usize,
    pub cores: Cores,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_median_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt_p99_us: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mb_per_s: Option<f64>,
}

impl Row {
    pub fn case(&self) -> Case {
        Case {
            imp: self.imp,
            transport: self.transport,
            mode: self.mode,
            size: self.size,
            cores: self.cores,
        }
    }

    pub fn latency(case: Case, median_us: f64, p99_us: f64) -> Row {
        Row {
            rtt_median_us: Some(median_us),
            rtt_p99_us: Some(p99_us),
            ..Row::empty(case)
        }
    }

    pub fn throughput(case: Case, msgs_per_s: f64) -> Row {
        Row {
            msgs_per_s: Some(msgs_per_s),
            mb_per_s: Some(msgs_per_s * case.size as f64 / 1e6),
            ..Row::empty(case)
        }
    }

    fn empty(case: Case) -> Row {
        Row {
            imp: case.imp,
            transport: case.transport,
            mode: case.mode,
            size: case.size,
            cores: case.cores,
            rtt_median_us: None,
            rtt_p99_us: None,
            msgs_per_s: None,
            mb_per_s: None,
        }
    }
}
