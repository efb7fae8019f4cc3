//! `--exec CMD`: a shell command run for each message, as inetd or socat's EXEC
//! do for each connection.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow};
use conduit::Message;

use crate::input::{InputFormat, parse};

/// Runs `sh -c cmd` with `input` on its standard input and waits for it.
/// Returns what it printed if `capture`, else lets it print to our standard
/// output. A command that fails is reported, not fatal: a server goes on.
pub fn run(cmd: &str, input: Vec<u8>, capture: bool) -> Result<Vec<u8>> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::piped())
        .stdout(if capture {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .with_context(|| format!("cannot run `{cmd}`"))?;
    let mut stdin = child.stdin.take().expect("piped");
    // Written from another thread: a command that prints before it has read
    // everything must not block on a full pipe while we block on its input.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for `{cmd}`"))?;
    match writer
        .join()
        .map_err(|_| anyhow!("the writing thread panicked"))?
    {
        // A command need not read its input (`echo hi`).
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(e).with_context(|| format!("cannot write to `{cmd}`"));
        }
        _ => {}
    }
    if !output.status.success() {
        crate::say(format_args!("conduit: `{cmd}` failed: {}", output.status));
    }
    Ok(output.stdout)
}

/// The reply a command's output makes: all of it less one trailing newline,
/// as one frame, or as one JSON message.
pub fn reply(format: InputFormat, mut output: Vec<u8>) -> Result<Message> {
    if output.last() == Some(&b'\n') {
        output.pop();
    }
    parse(format, &output).context("the command's output is not a message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_less_its_newline_is_the_reply() {
        let out = run("tr a-z A-Z", b"hello\n".to_vec(), true).unwrap();
        assert_eq!(
            reply(InputFormat::Text, out).unwrap(),
            Message::from("HELLO")
        );
        let out = run("echo '[\"a\", \"b\"]'", Vec::new(), true).unwrap();
        assert_eq!(
            reply(InputFormat::Json, out).unwrap(),
            Message::from_frames(["a", "b"])
        );
    }

    #[test]
    fn a_command_that_ignores_its_input_is_fine() {
        let big = vec![b'x'; 1 << 20];
        assert_eq!(run("echo hi", big, true).unwrap(), b"hi\n");
    }
}
