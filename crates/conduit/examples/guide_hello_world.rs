//! The ZeroMQ Guide's request-reply "Hello World" (hwserver / hwclient).
//!
//! ```text
//! cargo run --example guide_hello_world                 # both, as two processes
//! cargo run --example guide_hello_world server tcp://*:5555
//! cargo run --example guide_hello_world client tcp://127.0.0.1:5555
//! ```

use std::process::Command;

use conduit::{Socket, SocketType};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server", endpoint] => server(endpoint),
        ["client", endpoint] => client(endpoint),
        [endpoint] => both(endpoint),
        [] => both("tcp://127.0.0.1:5555"),
        _ => Err("usage: guide_hello_world [server|client] [ENDPOINT]".into()),
    }
}

/// Answers "World" to every "Hello"; stops after ten.
fn server(endpoint: &str) -> Result {
    let responder = Socket::new(SocketType::Rep)?;
    responder.bind(endpoint)?;
    for _ in 0..10 {
        let request = responder.recv()?;
        println!("Received {}", String::from_utf8_lossy(&request.concat()));
        std::thread::sleep(std::time::Duration::from_millis(10)); // "do some work"
        responder.send("World")?;
    }
    Ok(())
}

/// Sends ten "Hello"s, one at a time, printing each reply.
fn client(endpoint: &str) -> Result {
    println!("Connecting to hello world server...");
    let requester = Socket::new(SocketType::Req)?;
    requester.connect(endpoint)?;
    for n in 0..10 {
        println!("Sending Hello {n}...");
        requester.send("Hello")?;
        let reply = requester.recv()?;
        println!("Received {} {n}", String::from_utf8_lossy(&reply.concat()));
    }
    Ok(())
}

fn both(endpoint: &str) -> Result {
    let me = std::env::current_exe()?;
    let mut server = Command::new(&me).args(["server", endpoint]).spawn()?;
    let client = Command::new(&me).args(["client", endpoint]).status()?;
    let server = server.wait()?;
    if !client.success() || !server.success() {
        return Err(format!("client: {client}, server: {server}").into());
    }
    Ok(())
}
