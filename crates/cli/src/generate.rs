//! Shell completions and man pages, generated from the same definitions as
//! `--help`.

use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::CommandFactory;

use crate::Outcome;
use crate::args::{Cli, CompletionsArgs, ManArgs};

/// `conduit completions SHELL`.
pub fn completions(a: CompletionsArgs) -> Result<Outcome> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "conduit", &mut script);
    std::io::stdout().write_all(&script)?;
    Ok(Outcome::Done)
}

/// `conduit man [SUBCOMMAND]`: conduit(1), or conduit-SUBCOMMAND(1).
pub fn man(a: ManArgs) -> Result<Outcome> {
    let top = Cli::command();
    let page = match &a.subcommand {
        None => top,
        Some(name) => {
            let Some(sub) = top.find_subcommand(name).filter(|s| !s.is_hide_set()) else {
                bail!("no subcommand {name:?} (see `conduit --help`)");
            };
            let version = top.get_version().unwrap_or_default().to_owned();
            sub.clone()
                .name(format!("conduit-{}", sub.get_name()))
                .version(version)
        }
    };
    let mut roff = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut roff)
        .context("cannot render the man page")?;
    std::io::stdout().write_all(&roff)?;
    Ok(Outcome::Done)
}
