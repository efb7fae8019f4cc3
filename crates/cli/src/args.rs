//! Command-line definitions (clap derive). The long help texts are in `help.rs`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::format::Format;
use crate::help;
use crate::input::MessageArgs;
use crate::security::{BackSecurityArgs, FrontSecurityArgs, KeygenArgs, SecurityArgs};

/// Message passing from the shell: whole messages over pipes, Unix sockets and
/// TCP, speaking ZeroMQ's ZMTP 3.1 (so the peer can be libzmq, pyzmq, JeroMQ...),
/// with every ZeroMQ socket type.
#[derive(Debug, Parser)]
#[command(name = "conduit", version, after_help = help::TOP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scenarios for real with child processes: a start for newcomers
    #[command(after_help = help::DEMO)]
    Demo,
    /// Send messages over one channel: each -d, or each line of standard input
    #[command(after_help = help::SEND)]
    Send(SendArgs),
    /// Receive messages over one channel and print each
    #[command(after_help = help::RECV)]
    Recv(RecvArgs),
    /// PAIR socket: send each message to the one peer, print what it sends
    #[command(after_help = help::PAIR)]
    Pair(TwoWayArgs),
    /// PUSH socket: send each message to one of the pullers, in turn
    #[command(after_help = help::PUSH)]
    Push(SendingArgs),
    /// PULL socket: print each message pushed to it, or run --exec CMD on it
    #[command(after_help = help::PULL)]
    Pull(ReceivingArgs),
    /// REQ socket: send each message as a request and print the reply
    #[command(after_help = help::REQ)]
    Req(TwoWayArgs),
    /// REP socket: print each request and answer it (--echo, -d, --exec CMD,
    /// or a line of standard input)
    #[command(after_help = help::REP)]
    Rep(RepArgs),
    /// DEALER socket: send to the peers in turn, print what arrives
    #[command(after_help = help::DEALER)]
    Dealer(TwoWayArgs),
    /// ROUTER socket: print each message after its sender's routing id; send
    /// each message to the peer its first frame names
    #[command(after_help = help::ROUTER)]
    Router(TwoWayArgs),
    /// PUB socket: publish each message to the subscribers that want it
    #[command(after_help = help::PUB)]
    Pub(PubArgs),
    /// SUB socket: print each published message matching a --subscribe prefix
    #[command(after_help = help::SUB)]
    Sub(SubArgs),
    /// XPUB socket: publish like pub, and print the subscriptions that arrive
    #[command(after_help = help::XPUB)]
    Xpub(XpubArgs),
    /// XSUB socket: print published messages; subscriptions go upstream
    #[command(after_help = help::XSUB)]
    Xsub(XsubArgs),
    /// Forward between a frontend and a backend socket: a ROUTER/DEALER broker,
    /// an XSUB/XPUB forwarder or a PULL/PUSH streamer
    #[command(after_help = help::PROXY)]
    Proxy(ProxyArgs),
    /// Print a new CURVE key pair (and write it as certificate files with --cert)
    #[command(after_help = help::KEYGEN)]
    Keygen(KeygenArgs),
    /// Print a shell completion script
    #[command(after_help = help::COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Print the manual page (roff), of conduit or of one subcommand
    #[command(after_help = help::MAN)]
    Man(ManArgs),
    /// (internal) a child process of `conduit demo`
    #[command(hide = true)]
    DemoChild(DemoChildArgs),
}

/// Where `send` and `recv` bind or connect: one channel, one peer.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct EndpointArgs {
    /// Bind ENDPOINT (tcp://host:port, ipc:///path, ipc://@name) and wait for a peer
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
    #[command(flatten)]
    pub messages: MessageArgs,
    /// Give up (exit 1) if no peer is there after SECS; also bounds closing
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Print connection events to standard error
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Args)]
pub struct RecvArgs {
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Exit after N messages (without it: when the peer closes)
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Exit with code 1 if SECS pass without a peer or a message
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Largest message accepted, in bytes (default 64 MiB)
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<usize>,
    /// Print connection events to standard error
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub security: SecurityArgs,
}

/// Where a socket binds and connects: any number of each, tcp and ipc at once.
#[derive(Debug, Args)]
#[group(required = true, multiple = true)]
pub struct Endpoints {
    /// Bind ENDPOINT and accept peers on it (repeatable; tcp://host:port,
    /// tcp://host:* for a port the OS picks, ipc:///path, ipc://@name)
    #[arg(long, value_name = "ENDPOINT")]
    pub bind: Vec<String>,
    /// Connect to ENDPOINT, before or after it is bound, and reconnect whenever
    /// the connection ends (repeatable)
    #[arg(long, value_name = "ENDPOINT")]
    pub connect: Vec<String>,
}

/// Options every socket command has.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Stop after N messages: sent (push, pub), received (pull, sub, two-way
    /// types), replies (req) or requests answered (rep)
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Exit 1 if one wait lasts SECS: for a peer to take a message, for a
    /// message, for a reply. Each wait counts anew; closing waits at most SECS too
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Print connection events (listening, connected, handshake done with the
    /// peer's type, closed, reconnecting) to standard error
    #[arg(short, long)]
    pub verbose: bool,
    /// The identity announced to peers: a ROUTER peer addresses us by it
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// Largest message accepted from a peer, in bytes (default 64 MiB); a peer
    /// that sends a larger one is dropped and reported
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<usize>,
    #[command(flatten)]
    pub security: SecurityArgs,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// How each received message is printed
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct PacingArgs {
    /// Send the messages N times over (0: until stopped)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub repeat: u64,
    /// Wait SECS between two sends
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub interval: Option<Duration>,
}

/// push: sends only.
#[derive(Debug, Args)]
pub struct SendingArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,
    #[command(flatten)]
    pub messages: MessageArgs,
    #[command(flatten)]
    pub pacing: PacingArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct PubArgs {
    #[command(flatten)]
    pub sending: SendingArgs,
    /// Publish at once, as a plain PUB socket, instead of waiting for a first
    /// subscription (what is published before a subscriber is there is lost)
    #[arg(long)]
    pub no_wait: bool,
}

/// pull: receives only.
#[derive(Debug, Args)]
pub struct ReceivingArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run `sh -c CMD` for each message instead of printing it, with the
    /// message (as --format writes it) on its standard input
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
}

#[derive(Debug, Args)]
pub struct SubArgs {
    #[command(flatten)]
    pub receiving: ReceivingArgs,
    /// Receive messages whose first frame starts with PREFIX (repeatable;
    /// none: everything)
    #[arg(long, short = 's', value_name = "PREFIX")]
    pub subscribe: Vec<String>,
}

/// pair, req, dealer, router: send and receive.
#[derive(Debug, Args)]
pub struct TwoWayArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,
    #[command(flatten)]
    pub messages: MessageArgs,
    #[command(flatten)]
    pub pacing: PacingArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub struct XpubArgs {
    #[command(flatten)]
    pub two_way: TwoWayArgs,
    /// Publish at once instead of waiting for a first subscription
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub struct XsubArgs {
    #[command(flatten)]
    pub two_way: TwoWayArgs,
    /// Subscribe to messages whose first frame starts with PREFIX (repeatable;
    /// none: everything)
    #[arg(long, short = 's', value_name = "PREFIX")]
    pub subscribe: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RepArgs {
    #[command(flatten)]
    pub endpoints: Endpoints,
    #[command(flatten)]
    pub messages: MessageArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub common: CommonArgs,
    /// Reply with the request itself
    #[arg(long, conflicts_with_all = ["data", "file", "exec"])]
    pub echo: bool,
    /// Reply with what `sh -c CMD` prints when given the request (as --format
    /// writes it) on its standard input; the request is not printed
    #[arg(long, value_name = "CMD", conflicts_with_all = ["data", "file"])]
    pub exec: Option<String>,
}

/// Which pair of sockets a proxy joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyKind {
    /// ROUTER frontend for clients (REQ, DEALER), DEALER backend for workers (REP, DEALER)
    #[value(alias = "router-dealer")]
    Broker,
    /// XSUB frontend for publishers, XPUB backend for subscribers
    #[value(alias = "xsub-xpub")]
    Forwarder,
    /// PULL frontend for pushers, PUSH backend for pullers
    #[value(alias = "pull-push")]
    Streamer,
}

/// How captured traffic is printed; raw has no place in a log of lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CaptureFormat {
    Text,
    Hex,
    Json,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The sockets to join
    #[arg(value_name = "KIND")]
    pub kind: ProxyKind,
    /// Bind ENDPOINT for the frontend (repeatable)
    #[arg(
        long,
        value_name = "ENDPOINT",
        required_unless_present = "front_connect"
    )]
    pub front_bind: Vec<String>,
    /// Connect the frontend to ENDPOINT (repeatable)
    #[arg(long, value_name = "ENDPOINT")]
    pub front_connect: Vec<String>,
    /// Bind ENDPOINT for the backend (repeatable)
    #[arg(
        long,
        value_name = "ENDPOINT",
        required_unless_present = "back_connect"
    )]
    pub back_bind: Vec<String>,
    /// Connect the backend to ENDPOINT (repeatable)
    #[arg(long, value_name = "ENDPOINT")]
    pub back_connect: Vec<String>,
    /// Print each message passing through to standard error, after `>`
    /// (frontend to backend) or `<` (backend to frontend)
    #[arg(
        long,
        value_name = "FORMAT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "text"
    )]
    pub capture: Option<CaptureFormat>,
    /// Stop after forwarding N messages (both ways together)
    #[arg(long, short = 'n', value_name = "N")]
    pub count: Option<u64>,
    /// Exit 1 if SECS pass without a message in either direction
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Print connection events of both sockets to standard error
    #[arg(short, long)]
    pub verbose: bool,
    /// Largest message accepted from a peer, in bytes (default 64 MiB)
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<usize>,
    #[command(flatten)]
    pub front_security: FrontSecurityArgs,
    #[command(flatten)]
    pub back_security: BackSecurityArgs,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The subcommand whose page to print (conduit-SUBCOMMAND(1)); none:
    /// conduit(1)
    pub subcommand: Option<String>,
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
