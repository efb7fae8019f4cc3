//! The seed's `cat foo.c | grep factorial`, as two processes passing messages
//! through a conduit pipe.
//!
//! ```text
//! cargo run --example pipeline -- path/to/foo.c factorial
//! ```
//!
//! The parent makes a pipe and starts this same program twice: once as `cat`,
//! which sends each line of the file as one message, and once as `grep`, which
//! receives them and prints the lines that contain the pattern. Each line stays a
//! whole message however the bytes travel; the end of the pipe ends `grep`.

use std::process::Command;

use conduit::process::{ChildEnd, spawn};
use conduit::{PipeReceiver, PipeSender, RecvError};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [role, path] if role == "cat" => cat(path),
        [role, pattern] if role == "grep" => grep(pattern),
        [path, pattern] => pipeline(path, pattern),
        _ => Err("usage: pipeline FILE PATTERN".into()),
    }
}

/// The parent: `cat FILE | grep PATTERN`.
fn pipeline(path: &str, pattern: &str) -> Result<(), Box<dyn std::error::Error>> {
    let me = std::env::current_exe()?;
    let (write_end, read_end) = ChildEnd::pipe()?;
    let mut cat = Command::new(&me);
    cat.args(["cat", path]);
    let mut grep = Command::new(&me);
    grep.args(["grep", pattern]);
    let mut cat = spawn(cat, write_end)?;
    let mut grep = spawn(grep, read_end)?;
    let (cat, grep) = (cat.wait()?, grep.wait()?);
    if !cat.success() || !grep.success() {
        return Err(format!("cat: {cat}, grep: {grep}").into());
    }
    Ok(())
}

fn cat(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    let out = PipeSender::from_parent()?;
    for line in std::fs::read_to_string(path)?.lines() {
        out.send(line)?;
    }
    // Everything sent arrives before grep sees the pipe close.
    out.close()?;
    Ok(())
}

fn grep(pattern: &str) -> Result<(), Box<dyn std::error::Error>> {
    let input = PipeReceiver::from_parent()?;
    loop {
        match input.recv() {
            Ok(line) => {
                let line = String::from_utf8_lossy(&line.concat()).into_owned();
                if line.contains(pattern) {
                    println!("{line}");
                }
            }
            Err(RecvError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}
