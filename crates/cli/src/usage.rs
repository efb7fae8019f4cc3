//! Usage errors in the same one-line form as every other error,
//! `conduit: <what failed>: <cause>`, instead of clap's block of error, usage
//! line and tip: a script's log then has one kind of error line to look for.

use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::ErrorKind;

use crate::args::Cli;

/// Reports a failed parse and gives the exit code: `--help` and `--version`
/// print as clap does (0); a usage error is one line on standard error (2).
pub fn report(e: clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    crate::say(one_line(&e.render().to_string(), &help_command()));
    ExitCode::from(2)
}

/// `conduit SUBCOMMAND`, or `conduit` when the subcommand is unknown: whose
/// `--help` to point to.
fn help_command() -> String {
    match std::env::args().nth(1) {
        Some(sub) if Cli::command().find_subcommand(&sub).is_some() => format!("conduit {sub}"),
        _ => "conduit".to_owned(),
    }
}

/// clap's rendered error as one line: the message and its continuation lines
/// (the missing arguments, the possible values, a tip), without the usage
/// line and the pointer to --help, which become a pointer to the right --help.
fn one_line(rendered: &str, command: &str) -> String {
    let mut text = String::new();
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("Usage: ") || line.starts_with("For more") {
            continue;
        }
        if !text.is_empty() {
            text.push_str(if line.starts_with("tip:") { "; " } else { " " });
        }
        text.push_str(line.strip_prefix("error: ").unwrap_or(line));
    }
    format!("conduit: {text} (see `{command} --help`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  \
                        <--bind <ENDPOINT>|--connect <ENDPOINT>>\n\n\
                        Usage: conduit pull <--bind <ENDPOINT>|--connect <ENDPOINT>>\n\n\
                        For more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered, "conduit pull"),
            "conduit: the following required arguments were not provided: \
             <--bind <ENDPOINT>|--connect <ENDPOINT>> (see `conduit pull --help`)"
        );
        let rendered = "error: unexpected argument '-1' found\n\n  \
                        tip: to pass '-1' as a value, use '-- -1'\n\n\
                        Usage: conduit pull [OPTIONS]\n";
        assert_eq!(
            one_line(rendered, "conduit pull"),
            "conduit: unexpected argument '-1' found; tip: to pass '-1' as a value, \
             use '-- -1' (see `conduit pull --help`)"
        );
    }
}
