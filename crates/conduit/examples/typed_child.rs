//! A parent spawns a child (this program again) with a channel to it, sends it
//! a typed struct and prints the child's typed reply.
//!
//! ```text
//! cargo run -p conduit --example typed_child
//! ```

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug)]
struct Order {
    item: String,
    quantity: u32,
    notes: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug)]
struct Receipt {
    item: String,
    total_cents: u64,
    notes_read: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os(conduit::process::ENV_VAR).is_some() {
        // The child: one order in, one receipt out.
        let parent = conduit::Channel::from_parent()?;
        let order: Order = parent.recv_value()?;
        parent.send_value(&Receipt {
            total_cents: 250 * u64::from(order.quantity),
            notes_read: order.notes.len(),
            item: order.item,
        })?;
        return Ok(());
    }
    let me = std::process::Command::new(std::env::current_exe()?);
    let (mut child, channel) = conduit::process::spawn_with_channel(me)?;
    channel.send_value(&Order {
        item: "coffee".into(),
        quantity: 3,
        notes: vec!["oat milk".into(), "to go".into()],
    })?;
    let receipt: Receipt = channel.recv_value()?;
    println!("child replied: {receipt:?}");
    drop(channel);
    if !child.wait()?.success() {
        return Err("the child failed".into());
    }
    Ok(())
}
