//! The ZeroMQ Guide's load-balancing broker ("lbbroker"), in async Rust: a
//! ROUTER frontend for clients, a ROUTER backend for workers, and clients and
//! workers as tasks on one current-thread tokio runtime. Each worker announces
//! itself with "READY"; the broker hands each client request to the worker
//! that has waited longest, and the reply back to its client. It prints what
//! it routed and exits once every client has its replies.
//!
//! ```text
//! cargo run --example async_broker --features tokio
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use conduit::{AsyncSocket, Message, Socket, SocketType};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const CLIENTS: usize = 4;
const WORKERS: usize = 2;
const REQUESTS: usize = 3;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result {
    let frontend = router()?;
    let backend = router()?;
    let front = frontend.bind("tcp://127.0.0.1:*")?.to_string();
    let back = backend.bind("tcp://127.0.0.1:*")?.to_string();

    let mut workers = Vec::new();
    for n in 0..WORKERS {
        workers.push(tokio::spawn(worker(n, back.clone())));
    }
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        clients.push(tokio::spawn(client(n, front.clone())));
    }

    // Workers ready for a request, longest waiting first.
    let mut ready: VecDeque<bytes::Bytes> = VecDeque::new();
    let mut replies = 0;
    while replies < CLIENTS * REQUESTS {
        tokio::select! {
            // [worker, "", "READY"] or [worker, "", client, "", reply]
            msg = backend.recv() => {
                let mut frames = msg?.into_frames();
                let worker = frames.remove(0);
                ready.push_back(worker.clone());
                if frames.len() == 4 {
                    let (client, reply) = (frames[1].clone(), frames[3].clone());
                    println!("reply {} -> {}", text(&worker), text(&client));
                    frontend.send(Message::from_frames([client, "".into(), reply])).await?;
                    replies += 1;
                }
            }
            // [client, "", request]; taken only when a worker is free. A
            // receive lost to the other branch loses no message.
            msg = frontend.recv(), if !ready.is_empty() => {
                let frames = msg?.into_frames();
                let worker = ready.pop_front().expect("a ready worker");
                println!("request {} -> {}", text(&frames[0]), text(&worker));
                let routed = [worker, "".into(), frames[0].clone(), "".into(), frames[2].clone()];
                backend.send(Message::from_frames(routed)).await?;
            }
        }
    }
    for c in clients {
        c.await??;
    }
    for w in workers {
        w.abort();
    }
    println!("routed {replies} requests");
    frontend.close().await?;
    backend.close().await?;
    Ok(())
}

fn router() -> Result<AsyncSocket> {
    let socket = Socket::builder(SocketType::Router)
        .linger(Duration::from_secs(1))
        .build()?;
    Ok(socket.into_async()?)
}

/// Sends REQUESTS requests, one at a time, and checks each reply.
async fn client(n: usize, endpoint: String) -> Result {
    let socket = Socket::builder(SocketType::Req)
        .identity(format!("client-{n}"))
        .linger(Duration::from_secs(1))
        .build()?
        .into_async()?;
    socket.connect(&endpoint)?;
    for i in 0..REQUESTS {
        socket.send(format!("request {i}")).await?;
        let reply = socket.recv().await?;
        let reply = String::from_utf8_lossy(&reply.concat()).into_owned();
        if !reply.starts_with("done by worker-") {
            return Err(format!("client-{n} got {reply:?}").into());
        }
    }
    socket.close().await?;
    Ok(())
}

/// Announces itself, then answers every request it is given.
async fn worker(n: usize, endpoint: String) -> Result {
    let socket = Socket::builder(SocketType::Req)
        .identity(format!("worker-{n}"))
        .linger(Duration::from_secs(1))
        .build()?
        .into_async()?;
    socket.connect(&endpoint)?;
    socket.send("READY").await?;
    loop {
        // [client, "", request]
        let frames = socket.recv().await?.into_frames();
        let reply = format!("done by worker-{n}");
        let answer = [frames[0].clone(), "".into(), reply.into()];
        socket.send(Message::from_frames(answer)).await?;
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
