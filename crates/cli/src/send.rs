//! `conduit send`: one channel, one peer.

use anyhow::{Context, Result};

use crate::Outcome;
use crate::args::SendArgs;
use crate::input::{Input, Next};
use crate::interrupt::Waited;
use crate::open::Open;
use crate::watch::Watch;

pub fn run(args: SendArgs) -> Result<Outcome> {
    let mut input = Input::open(&args.messages, 1)?;
    let watch = Watch::new("send", args.verbose);
    let open = Open {
        endpoint: &args.endpoint,
        timeout: args.timeout,
        max_size: None,
        watch: &watch,
        security: args.security.security()?,
    };
    let sink = match open.sink()? {
        Waited::Done(s) => s,
        Waited::TimedOut => return Ok(no_peer(&args)),
        Waited::Interrupted => return Ok(Outcome::Interrupted),
    };
    let mut sent = 0;
    loop {
        let msg = match input.next()? {
            Next::Message(m) => m,
            Next::End => break,
            Next::Interrupted => return Ok(Outcome::Interrupted),
        };
        match sink.send(msg, args.timeout)? {
            Waited::Done(()) => sent += 1,
            Waited::TimedOut => {
                let t = args.timeout.expect("only a timeout times out");
                return Ok(Outcome::TimedOut(format!(
                    "timed out after {t:?}: the peer took no message {} (it is not reading)",
                    sent + 1
                )));
            }
            Waited::Interrupted => return Ok(Outcome::Interrupted),
        }
    }
    // Closing waits until the peer has everything: nothing sent is lost.
    sink.close().context("cannot deliver the last messages")?;
    watch.note("closed");
    Ok(Outcome::Done)
}

fn no_peer(args: &SendArgs) -> Outcome {
    let t = args.timeout.expect("only a timeout times out");
    Outcome::TimedOut(format!("timed out after {t:?} waiting for a peer"))
}
