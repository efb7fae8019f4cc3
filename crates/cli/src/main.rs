//! The `conduit` command: a thin shell over the library.
//!
//! Exit codes: 0 success, 1 timeout (fewer messages than asked for in time),
//! 2 usage or runtime error. A closed standard output (`conduit recv ... | head`)
//! ends the program quietly with 0.

mod args;
mod demo;
mod open;
mod recv;
mod send;
mod text;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Did what was asked.
    Done,
    /// Gave up waiting.
    TimedOut,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Send(a) => send::run(a),
        Command::Recv(a) => recv::run(a),
        Command::Demo => demo::run(),
        Command::DemoChild(a) => demo::child(a),
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::TimedOut) => ExitCode::from(1),
        Err(e) if is_closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conduit: {e:#}");
            ExitCode::from(2)
        }
    }
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
