//! `conduit recv`.

use std::io::Write;

use anyhow::Result;

use crate::Outcome;
use crate::args::RecvArgs;
use crate::open::{Received, open_source};
use crate::text::write_line;

pub fn run(args: RecvArgs) -> Result<Outcome> {
    let Some(source) = open_source(&args.endpoint, args.timeout)? else {
        return Ok(Outcome::TimedOut);
    };
    let mut out = std::io::stdout().lock();
    let mut received = 0;
    while args.count.is_none_or(|n| received < n) {
        match source.recv(args.timeout)? {
            Received::Message(m) => {
                write_line(&mut out, &m)?;
                // One message, one line, visible at once to whatever reads us.
                out.flush()?;
                received += 1;
            }
            Received::Closed => break,
            Received::TimedOut => return Ok(Outcome::TimedOut),
        }
    }
    Ok(Outcome::Done)
}
