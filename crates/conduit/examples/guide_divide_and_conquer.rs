//! The ZeroMQ Guide's parallel pipeline: a ventilator hands out tasks to
//! workers, which send results to a sink (taskvent / taskwork / tasksink).
//!
//! ```text
//! cargo run --example guide_divide_and_conquer            # all, as processes
//! cargo run --example guide_divide_and_conquer -- ventilator tcp://*:5557
//! cargo run --example guide_divide_and_conquer -- worker tcp://127.0.0.1:5557 tcp://127.0.0.1:5558
//! cargo run --example guide_divide_and_conquer -- sink tcp://*:5558
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use conduit::{Socket, SocketType};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const TASKS: u32 = 100;
const WORKERS: usize = 3;

fn main() -> Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["ventilator", tasks, sink] => ventilator(tasks, sink),
        ["worker", tasks, results] => worker(tasks, results),
        ["sink", results] => sink(results),
        [tasks, results] => all(tasks, results),
        [] => all("tcp://127.0.0.1:5557", "tcp://127.0.0.1:5558"),
        _ => Err("usage: guide_divide_and_conquer [ROLE ...] | [TASKS RESULTS]".into()),
    }
}

/// Sends the batch-start signal to the sink, then TASKS workloads to the workers.
fn ventilator(tasks: &str, sink_endpoint: &str) -> Result {
    let sender = Socket::new(SocketType::Push)?;
    sender.bind(tasks)?;
    let sink = Socket::new(SocketType::Push)?;
    sink.connect(sink_endpoint)?;
    // The Guide waits for the user to press Enter once the workers are up;
    // here the parent tells us by closing our standard input.
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
    println!("Sending tasks to workers...");
    sink.send("0")?; // the start of the batch
    let mut total_ms = 0;
    for i in 0..TASKS {
        let workload = 1 + (i * 7919) % 10; // 1-10 ms
        total_ms += workload;
        sender.send(workload.to_string())?;
    }
    println!("Total expected cost: {total_ms} msec");
    Ok(())
}

/// Sleeps for each workload it pulls, then pushes a result to the sink.
fn worker(tasks: &str, results: &str) -> Result {
    let receiver = Socket::new(SocketType::Pull)?;
    receiver.connect(tasks)?;
    let sender = Socket::new(SocketType::Push)?;
    sender.connect(results)?;
    // Ends when no task has come for a while (the Guide's workers run forever).
    while let Ok(task) = receiver.recv_timeout(Duration::from_secs(2)) {
        let ms: u64 = String::from_utf8(task.concat().to_vec())?.parse()?;
        std::thread::sleep(Duration::from_millis(ms));
        sender.send("")?;
    }
    Ok(())
}

/// Waits for the batch start, then for TASKS results.
fn sink(results: &str) -> Result {
    let receiver = Socket::new(SocketType::Pull)?;
    receiver.bind(results)?;
    receiver.recv()?; // the start of the batch
    let start = Instant::now();
    for _ in 0..TASKS {
        receiver.recv()?;
    }
    println!(
        "Received {TASKS} results; total elapsed time: {} msec",
        start.elapsed().as_millis()
    );
    Ok(())
}

fn all(tasks: &str, results: &str) -> Result {
    let me = std::env::current_exe()?;
    let mut sink = Command::new(&me).args(["sink", results]).spawn()?;
    let mut workers = (0..WORKERS)
        .map(|_| Command::new(&me).args(["worker", tasks, results]).spawn())
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ventilator = Command::new(&me)
        .args(["ventilator", tasks, results])
        .stdin(std::process::Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500)); // the workers connect
    drop(ventilator.stdin.take()); // "press Enter"
    let statuses = [ventilator.wait()?, sink.wait()?];
    for w in &mut workers {
        w.wait()?;
    }
    if statuses.iter().any(|s| !s.success()) {
        return Err(format!("{statuses:?}").into());
    }
    Ok(())
}
