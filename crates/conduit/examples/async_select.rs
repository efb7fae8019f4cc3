//! A service that waits on several sockets at once with `tokio::select!`:
//! jobs arrive on a PULL, status questions on a REP, and a "stop" on a SUB;
//! a timer ticks meanwhile. Producers run as tasks of the same runtime, so the
//! example runs by itself: it prints what it handled and exits 0.
//!
//! ```text
//! cargo run --example async_select --features tokio
//! ```

use std::time::Duration;

use conduit::{Socket, SocketType};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const JOBS: usize = 20;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let jobs = Socket::new(SocketType::Pull)?.into_async()?;
    let status = Socket::new(SocketType::Rep)?.into_async()?;
    let control = Socket::new(SocketType::Sub)?.into_async()?;
    control.subscribe("stop")?;
    let jobs_at = jobs.bind("tcp://127.0.0.1:*")?.to_string();
    let status_at = status.bind("tcp://127.0.0.1:*")?.to_string();
    let control_at = control.bind("tcp://127.0.0.1:*")?.to_string();

    // A producer of jobs, and an operator who asks for the status once the
    // jobs are out and then says stop.
    let producer = tokio::spawn(async move {
        let push = Socket::new(SocketType::Push)?.into_async()?;
        push.connect(&jobs_at)?;
        for i in 0..JOBS {
            push.send(format!("job {i}")).await?;
        }
        push.close().await?;
        Result::Ok(())
    });
    let operator = tokio::spawn(async move {
        let req = Socket::new(SocketType::Req)?.into_async()?;
        req.connect(&status_at)?;
        let publisher = Socket::new(SocketType::Pub)?.into_async()?;
        publisher.connect(&control_at)?;
        loop {
            req.send("how many?").await?;
            let answer = String::from_utf8_lossy(&req.recv().await?.concat()).into_owned();
            println!("operator: {answer}");
            if answer == format!("{JOBS} jobs done") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Until the service hears it: a SUB drops what came before it subscribed.
        loop {
            publisher.send("stop").await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            if publisher.peer_count() == 0 {
                break;
            }
        }
        Result::Ok(())
    });

    let mut done = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        // Every branch's receive is cancel safe: the losers lose no message.
        tokio::select! {
            job = jobs.recv() => {
                let job = job?;
                done += 1;
                println!("handled {}", String::from_utf8_lossy(&job.concat()));
            }
            question = status.recv() => {
                question?;
                status.send(format!("{done} jobs done")).await?;
            }
            stop = control.recv() => {
                stop?;
                println!("stop after {done} jobs");
                break;
            }
            _ = tick.tick() => {}
        }
    }
    producer.await??;
    // The operator stops sending once the service is gone.
    control.close().await?;
    operator.await??;
    jobs.close().await?;
    status.close().await?;
    Ok(())
}
