//! A parent opens a file and sends its descriptor to a child (this program
//! again) inside a typed message; the child reads the file through it and
//! answers with what it read.
//!
//! ```text
//! cargo run -p conduit --example pass_fd
//! ```

use std::io::{Read, Seek, Write};

use conduit::Descriptor;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct ReadThis {
    what: String,
    file: Descriptor,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(conduit::process::ENV_VAR).is_some() {
        // The child: it never opened the file, yet reads it.
        let parent = conduit::Channel::from_parent()?;
        let job: ReadThis = parent.recv_value()?;
        let mut file = job.file.into_file();
        file.rewind()?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        parent.send_value(&format!("{}: {text}", job.what))?;
        return Ok(());
    }
    // An unnamed file: only a descriptor can reach it.
    let mut file = tempfile::tempfile()?;
    file.write_all(b"written by the parent, read by the child")?;
    let me = std::process::Command::new(std::env::current_exe()?);
    let (mut child, channel) = conduit::process::spawn_with_channel(me)?;
    channel.send_value(&ReadThis {
        what: "the file says".into(),
        file: file.into(),
    })?;
    let answer: String = channel.recv_value()?;
    println!("child answered: {answer}");
    drop(channel);
    if !child.wait()?.success() {
        return Err("the child failed".into());
    }
    if answer != "the file says: written by the parent, read by the child" {
        return Err(format!("unexpected answer {answer:?}").into());
    }
    Ok(())
}
