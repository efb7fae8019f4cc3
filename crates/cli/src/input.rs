//! Where the messages a command sends come from: `-d`, `--file`, or standard
//! input, written as text or JSON (`--input`), repeated `--repeat` times.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, sync_channel};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use conduit::Message;
use serde_json::Value;

use crate::interrupt;

/// How each message to send is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// As it is: each -d, each --file, each line of standard input is one frame
    Text,
    /// A JSON array of frames (strings, or {"hex":"..."} for other bytes), or
    /// one string; one per -d, per --file, per line of standard input
    Json,
}

#[derive(Debug, Args)]
pub struct MessageArgs {
    /// A message (repeatable); without -d or --file, each line of standard input
    #[arg(short = 'd', long = "data", value_name = "MSG")]
    pub data: Vec<String>,
    /// A file whose whole content is one message (repeatable, after the -d
    /// messages; `-` is all of standard input)
    #[arg(long, value_name = "PATH")]
    pub file: Vec<PathBuf>,
    /// How messages are written: as they are, or as JSON for multipart and
    /// binary messages
    #[arg(long = "input", value_name = "FORMAT", default_value = "text")]
    pub input: InputFormat,
}

impl MessageArgs {
    /// Whether the messages come from the command line or files (not from
    /// standard input line by line).
    pub fn given(&self) -> bool {
        !self.data.is_empty() || !self.file.is_empty()
    }
}

/// What asking for the next message gave.
#[derive(Debug)]
pub enum Next {
    Message(Message),
    End,
    Interrupted,
}

/// The messages to send, in order.
#[derive(Debug)]
pub struct Input {
    source: Source,
}

#[derive(Debug)]
enum Source {
    /// Messages known up front, sent `rounds` times (None: forever).
    List {
        messages: Vec<Message>,
        next: usize,
        rounds: Option<u64>,
    },
    /// Lines of standard input as they come, read by a thread so that waiting
    /// for a line does not keep Ctrl-C from being noticed; kept if they are to
    /// be sent again.
    Lines {
        lines: Receiver<Result<Message>>,
        kept: Vec<Message>,
        rounds: Option<u64>,
    },
}

impl Input {
    /// The messages of `args`, `repeat` times over (0: forever). Standard input
    /// is read line by line as it comes.
    pub fn open(args: &MessageArgs, repeat: u64) -> Result<Input> {
        let rounds = (repeat > 0).then_some(repeat);
        if !args.given() {
            return Ok(Input {
                source: Source::Lines {
                    lines: stdin_lines(args.input),
                    kept: Vec::new(),
                    rounds,
                },
            });
        }
        let mut messages = Vec::new();
        for d in &args.data {
            messages.push(parse(args.input, d.as_bytes()).context("bad -d message")?);
        }
        for path in &args.file {
            let bytes = read_file(path)?;
            messages.push(
                parse(args.input, &bytes)
                    .with_context(|| format!("bad message in {}", path.display()))?,
            );
        }
        Ok(Input {
            source: Source::List {
                messages,
                next: 0,
                rounds,
            },
        })
    }

    /// The next message to send.
    pub fn next(&mut self) -> Result<Next> {
        match &mut self.source {
            Source::List {
                messages,
                next,
                rounds,
            } => {
                if messages.is_empty() || *rounds == Some(0) {
                    return Ok(Next::End);
                }
                let msg = messages[*next].clone();
                *next += 1;
                if *next == messages.len() {
                    *next = 0;
                    if let Some(r) = rounds {
                        *r -= 1;
                    }
                }
                Ok(Next::Message(msg))
            }
            Source::Lines {
                lines,
                kept,
                rounds,
            } => loop {
                if interrupt::requested() {
                    return Ok(Next::Interrupted);
                }
                match lines.recv_timeout(interrupt::SLICE) {
                    Ok(line) => {
                        let msg = line?;
                        if *rounds != Some(1) {
                            kept.push(msg.clone());
                        }
                        return Ok(Next::Message(msg));
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        if *rounds == Some(1) {
                            return Ok(Next::End);
                        }
                        // The first round is sent; the others come from memory.
                        self.source = Source::List {
                            messages: std::mem::take(kept),
                            next: 0,
                            rounds: rounds.map(|r| r - 1),
                        };
                        return self.next();
                    }
                }
            },
        }
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(bytes)
}

/// Reads standard input on a thread, one message per line.
fn stdin_lines(format: InputFormat) -> Receiver<Result<Message>> {
    let (tx, rx) = sync_channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut number = 0;
        loop {
            let mut line = Vec::new();
            match stdin.read_until(b'\n', &mut line) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(anyhow!(e).context("cannot read standard input")));
                    return;
                }
            }
            number += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
            }
            if format == InputFormat::Json && line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let msg = parse(format, &line)
                .with_context(|| format!("bad message on line {number} of standard input"));
            let failed = msg.is_err();
            if tx.send(msg).is_err() || failed {
                return;
            }
        }
    });
    rx
}

/// One message written as `format` says.
pub fn parse(format: InputFormat, bytes: &[u8]) -> Result<Message> {
    match format {
        InputFormat::Text => Ok(Message::from(bytes.to_vec())),
        InputFormat::Json => {
            let value: Value = serde_json::from_slice(bytes).context("not JSON")?;
            json_message(&value)
        }
    }
}

/// A message from its JSON form: an array of frames, or one string.
pub fn json_message(value: &Value) -> Result<Message> {
    let frames = match value {
        Value::Array(items) if items.is_empty() => {
            bail!("a message needs at least one frame ([\"\"] is one empty frame)")
        }
        Value::Array(items) => items.iter().map(json_frame).collect::<Result<Vec<_>>>()?,
        Value::String(_) => vec![json_frame(value)?],
        _ => bail!("expected an array of frames or a string"),
    };
    Ok(Message::from_frames(frames))
}

fn json_frame(value: &Value) -> Result<Vec<u8>> {
    match value {
        Value::String(s) => Ok(s.clone().into_bytes()),
        Value::Object(o) if o.len() == 1 && o.get("hex").is_some_and(Value::is_string) => {
            let hex = o["hex"].as_str().expect("checked");
            unhex(hex).ok_or_else(|| anyhow!("{hex:?} is not an even number of hex digits"))
        }
        _ => bail!("a frame is a string or {{\"hex\": \"...\"}}, not {value}"),
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{Format, render};

    #[test]
    fn json_reads_back_what_json_output_writes() {
        let msg = Message::from_frames([&b"a\"b\t"[..], &[0, 0xff], &[], "é".as_bytes()]);
        let line = render(Format::Json, &msg);
        assert_eq!(parse(InputFormat::Json, &line).unwrap(), msg);
    }

    #[test]
    fn json_accepts_a_lone_string_and_rejects_other_shapes() {
        assert_eq!(
            parse(InputFormat::Json, b"\"hi\"").unwrap(),
            Message::from("hi")
        );
        for bad in [
            &b"[]"[..],
            b"42",
            b"[1]",
            b"[{\"hex\":\"abc\"}]",
            b"[{\"hex\":\"zz\"}]",
            b"{",
        ] {
            assert!(parse(InputFormat::Json, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn text_is_taken_as_it_is() {
        assert_eq!(
            parse(InputFormat::Text, b"a\\tb").unwrap(),
            Message::from("a\\tb")
        );
    }

    #[test]
    fn repeat_goes_round_the_list() {
        let args = MessageArgs {
            data: vec!["a".into(), "b".into()],
            file: vec![],
            input: InputFormat::Text,
        };
        let mut input = Input::open(&args, 2).unwrap();
        let mut got = Vec::new();
        while let Next::Message(m) = input.next().unwrap() {
            got.push(String::from_utf8(m.concat().to_vec()).unwrap());
        }
        assert_eq!(got, ["a", "b", "a", "b"]);
    }
}
