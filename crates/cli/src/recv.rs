//! `conduit recv`: one channel, one peer.

use std::io::Write;

use anyhow::Result;

use crate::Outcome;
use crate::args::RecvArgs;
use crate::format::write_message;
use crate::interrupt::Waited;
use crate::open::{Open, Received};
use crate::watch::Watch;

pub fn run(args: RecvArgs) -> Result<Outcome> {
    let watch = Watch::new("recv", args.verbose);
    let open = Open {
        endpoint: &args.endpoint,
        timeout: args.timeout,
        max_size: args.max_size,
        watch: &watch,
        security: args.security.security()?,
    };
    let source = match open.source()? {
        Waited::Done(s) => s,
        Waited::TimedOut => return Ok(timed_out(&args, "waiting for a peer".into())),
        Waited::Interrupted => return Ok(Outcome::Interrupted),
    };
    let mut out = std::io::stdout().lock();
    let mut received = 0;
    while args.count.is_none_or(|n| received < n) {
        match source.recv(args.timeout)? {
            Received::Message(m) => {
                write_message(&mut out, args.output.format, &m)?;
                // One message, one line, visible at once to whatever reads us.
                out.flush()?;
                received += 1;
            }
            Received::Closed => {
                watch.note("closed by the peer");
                break;
            }
            Received::TimedOut => {
                let what = match args.count {
                    Some(n) => format!("waiting for a message ({received} of {n} received)"),
                    None => "waiting for a message".into(),
                };
                return Ok(timed_out(&args, what));
            }
            Received::Interrupted => return Ok(Outcome::Interrupted),
        }
    }
    Ok(Outcome::Done)
}

fn timed_out(args: &RecvArgs, what: String) -> Outcome {
    let t = args.timeout.expect("only a timeout times out");
    Outcome::TimedOut(format!("timed out after {t:?} {what}"))
}
