//! Command-line definitions (clap derive); help text and examples live here.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Message passing from the shell: whole messages over pipes, Unix sockets and
/// TCP, speaking ZeroMQ's ZMTP 3.1 (so the peer can be libzmq, pyzmq, JeroMQ...).
#[derive(Debug, Parser)]
#[command(name = "conduit", version, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "\
Exit codes:
  0  success (all messages sent, or received until --count or the peer closed)
  1  timeout (fewer messages than asked for arrived in time)
  2  usage or runtime error (printed as `conduit: <what failed>: <cause>`)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Send messages: each -d, or else each line of standard input
    #[command(after_help = SEND_EXAMPLES)]
    Send(SendArgs),
    /// Receive messages and print each on its own line
    #[command(after_help = RECV_EXAMPLES)]
    Recv(RecvArgs),
    /// Run the seed's scenarios for real: a pipe between two processes, and
    /// conversations over a Unix socket and over TCP, with measured round trips
    Demo,
    /// (internal) a child process of `conduit demo`
    #[command(hide = true)]
    DemoChild(DemoChildArgs),
}

const SEND_EXAMPLES: &str = "\
Examples:
  conduit send --connect tcp://127.0.0.1:5555 -d hello -d world
  seq 3 | conduit send --bind ipc:///tmp/numbers.sock
  conduit send --connect - -d a -d b | conduit recv --connect -";

const RECV_EXAMPLES: &str = "\
Examples:
  conduit recv --bind tcp://127.0.0.1:5555 --count 2
  conduit recv --connect ipc:///tmp/numbers.sock --timeout 5

Output: one message per line. Frames of a multipart message are separated by a
TAB; a backslash, TAB, newline, carriage return or any other non-printable byte
in a frame is written as \\\\, \\t, \\n, \\r or \\xNN.";

/// Where to bind or connect.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct EndpointArgs {
    /// Bind ENDPOINT (tcp://host:port, ipc://path) and wait for a peer
    #[arg(long, value_name = "ENDPOINT")]
    pub bind: Option<String>,
    /// Connect to ENDPOINT; `-` is standard input (recv) or standard output (send),
    /// carrying conduit frames through a shell pipe
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Option<String>,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// A message to send (repeatable); without -d, each line of standard input
    #[arg(short = 'd', long = "data", value_name = "MSG")]
    pub data: Vec<String>,
    /// Give up if no peer is there after SECS
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct RecvArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Exit after N messages
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Exit with code 1 if SECS pass without a peer or a message
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct DemoChildArgs {
    /// Which part to play
    pub role: String,
    /// Extra arguments of the role
    pub rest: Vec<String>,
}

/// Parses seconds, fractions allowed ("0.5").
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("{s:?} is not a usable number of seconds"))
}
