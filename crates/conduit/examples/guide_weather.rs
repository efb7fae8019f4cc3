//! The ZeroMQ Guide's PUB/SUB weather updates (wuserver / wuclient).
//!
//! The server publishes "zipcode temperature humidity" for random zip codes; the
//! client subscribes to one zip code (a prefix match) and averages the
//! temperature of the updates it gets.
//!
//! ```text
//! cargo run --example guide_weather                       # both, as two processes
//! cargo run --example guide_weather server tcp://*:5556
//! cargo run --example guide_weather client tcp://127.0.0.1:5556 10001
//! ```

use std::process::Command;

use conduit::{Socket, SocketType};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Updates the client averages over.
const UPDATES: u32 = 20;

fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["server", endpoint] => server(endpoint),
        ["client", endpoint, zip] => client(endpoint, zip),
        [endpoint] => both(endpoint),
        [] => both("tcp://127.0.0.1:5556"),
        _ => Err("usage: guide_weather [server ENDPOINT | client ENDPOINT ZIP | ENDPOINT]".into()),
    }
}

/// A small xorshift generator: the example needs no crate for randomness.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Publishes updates until its standard input closes.
fn server(endpoint: &str) -> Result {
    let publisher = Socket::new(SocketType::Pub)?;
    publisher.bind(endpoint)?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopper = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
        stopper.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let mut random = Random(0x2545_F491_4F6C_DD1D);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // Zip codes 10000-10009 so that a client's code comes up often.
        let zip = 10000 + random.below(10);
        let temperature = random.below(215) as i64 - 80;
        let humidity = random.below(50) + 10;
        publisher.send(format!("{zip:05} {temperature} {humidity}"))?;
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    Ok(())
}

fn client(endpoint: &str, zip: &str) -> Result {
    println!("Collecting updates from weather server...");
    let subscriber = Socket::new(SocketType::Sub)?;
    subscriber.connect(endpoint)?;
    // The space makes "10001" not match "100010".
    subscriber.subscribe(format!("{zip} "))?;
    let mut total = 0i64;
    for _ in 0..UPDATES {
        let update = String::from_utf8(subscriber.recv()?.concat().to_vec())?;
        let mut fields = update.split(' ');
        if fields.next() != Some(zip) {
            return Err(format!("got an update for another zip code: {update}").into());
        }
        total += fields.next().ok_or("no temperature")?.parse::<i64>()?;
    }
    println!(
        "Average temperature for zipcode '{zip}' was {}F",
        total / i64::from(UPDATES)
    );
    Ok(())
}

fn both(endpoint: &str) -> Result {
    let me = std::env::current_exe()?;
    let mut server = Command::new(&me)
        .args(["server", endpoint])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    let client = Command::new(&me)
        .args(["client", endpoint, "10001"])
        .status()?;
    drop(server.stdin.take()); // stops the server
    let server = server.wait()?;
    if !client.success() || !server.success() {
        return Err(format!("client: {client}, server: {server}").into());
    }
    Ok(())
}
