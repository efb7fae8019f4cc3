//! `conduit send`.

use std::io::BufRead;

use anyhow::{Context, Result};
use conduit::Message;

use crate::Outcome;
use crate::args::SendArgs;
use crate::open::open_sink;

pub fn run(args: SendArgs) -> Result<Outcome> {
    let Some(sink) = open_sink(&args.endpoint, args.timeout)? else {
        return Ok(Outcome::TimedOut);
    };
    if args.data.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line.context("cannot read standard input")?;
            sink.send(Message::from(line)).context("send failed")?;
        }
    } else {
        for data in args.data {
            sink.send(Message::from(data)).context("send failed")?;
        }
    }
    // Closing waits until the peer has everything: nothing sent is lost.
    sink.close().context("cannot deliver the last messages")?;
    Ok(Outcome::Done)
}
