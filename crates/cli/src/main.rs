//! The `conduit` command: a thin shell over the library.
//!
//! Exit codes: 0 success, 1 timeout (fewer messages than asked for in time),
//! 2 usage or runtime error, 130 Ctrl-C after closing cleanly. A closed
//! standard output (`conduit recv ... | head`) ends the program quietly with 0.

mod args;
mod demo;
mod exec;
mod format;
mod generate;
mod help;
mod input;
mod interrupt;
mod open;
mod proxy;
mod recv;
mod security;
mod send;
mod socket_cmd;
mod usage;
mod watch;

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use conduit::SocketType;

use args::{Cli, Command};

/// How a command that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Did what was asked.
    Done,
    /// Gave up waiting; says what for.
    TimedOut(String),
    /// Stopped by Ctrl-C, after closing cleanly.
    Interrupted,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage::report(e),
    };
    match run(cli.command) {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::TimedOut(what)) => {
            say(format_args!("conduit: {what}"));
            ExitCode::from(1)
        }
        Ok(Outcome::Interrupted) => ExitCode::from(interrupt::EXIT_CODE),
        Err(e) if is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("conduit: {e:#}"));
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<Outcome> {
    // These run briefly or block in ways Ctrl-C cannot reach: let it kill them.
    match command {
        Command::Demo => return demo::run(),
        Command::DemoChild(a) => return demo::child(a),
        Command::Completions(a) => return generate::completions(a),
        Command::Man(a) => return generate::man(a),
        Command::Keygen(a) => return security::keygen(a),
        _ => {}
    }
    interrupt::install()?;
    match command {
        Command::Send(a) => send::run(a),
        Command::Recv(a) => recv::run(a),
        Command::Pair(a) => socket_cmd::two_way(SocketType::Pair, a),
        Command::Push(a) => socket_cmd::push(a),
        Command::Pull(a) => socket_cmd::pull(a),
        Command::Req(a) => socket_cmd::req(a),
        Command::Rep(a) => socket_cmd::rep(a),
        Command::Dealer(a) => socket_cmd::two_way(SocketType::Dealer, a),
        Command::Router(a) => socket_cmd::two_way(SocketType::Router, a),
        Command::Pub(a) => socket_cmd::publish(a),
        Command::Sub(a) => socket_cmd::sub(a),
        Command::Xpub(a) => socket_cmd::xpub(a),
        Command::Xsub(a) => socket_cmd::xsub(a),
        Command::Proxy(a) => proxy::run(a),
        Command::Demo
        | Command::DemoChild(_)
        | Command::Completions(_)
        | Command::Man(_)
        | Command::Keygen(_) => {
            unreachable!("handled above")
        }
    }
}

/// Writes a line to standard error in one write, so that lines from threads
/// and from other processes sharing the terminal do not interleave.
pub fn say(line: impl std::fmt::Display) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// An error and its sources, joined by `: ` as `conduit: ...` prints them.
pub fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Whether the error is our standard output having been closed by its reader,
/// which for a command-line filter is a normal way to end.
fn is_closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
