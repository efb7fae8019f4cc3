//! The scale group's server process: a ROUTER that echoes every message to the
//! peer it came from, or a PUB that publishes on command. It runs alone in its
//! process so that its threads, descriptors and memory are its own.
//!
//! Lines on standard output: `ready ENDPOINT` once bound; a PUB then reads
//! commands on standard input: `hello` publishes one hello (a message whose
//! first byte is `h`), `go N` publishes N data messages of 64 B (first byte
//! `d`) and answers `sent`. End of input ends a PUB; an echo server runs until
//! it is killed.

use std::ffi::c_void;
use std::io::BufRead;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use conduit::{Message, Socket, SocketType};

use super::{ScaleImpl, ServerKind, say};
use crate::zmq_ffi::{self, ZMQ_PUB, ZMQ_ROUTER, ZMQ_SNDMORE, check};

/// The hidden `scale-server` subcommand's arguments.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[arg(long = "impl")]
    pub imp: ScaleImpl,
    #[arg(long)]
    pub kind: ServerKind,
    #[arg(long)]
    pub cpu: usize,
    /// The PUB's send high-water mark, per subscriber (messages).
    #[arg(long, default_value_t = 1000)]
    pub hwm: usize,
    /// libzmq and omq: the handshake timeout (conduit keeps its default).
    #[arg(long)]
    pub handshake_ms: Option<u64>,
    /// libzmq only: the listen backlog (conduit keeps its default).
    #[arg(long)]
    pub backlog: Option<i32>,
}

/// Runs the server until killed or, for a PUB, until its input ends.
pub fn run(args: ServerArgs) -> Result<()> {
    crate::os::pin_to(args.cpu).context("pinning")?;
    super::proc::raise_fd_limit()?;
    match args.imp {
        ScaleImpl::Conduit => conduit_server(&args),
        ScaleImpl::Libzmq => libzmq_server(&args),
        ScaleImpl::Omq => omq_server(&args),
    }
}

fn data_message(seq: u64) -> Vec<u8> {
    let mut m = vec![0u8; 64];
    m[0] = b'd';
    m[1..9].copy_from_slice(&seq.to_le_bytes());
    m
}

/// Reads the PUB's commands and calls `publish` for each message to send.
fn pub_commands(mut publish: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["hello"] => publish(b"h")?,
            ["go", n] => {
                for seq in 0..n.parse::<u64>()? {
                    publish(&data_message(seq))?;
                }
                say("sent");
            }
            _ => anyhow::bail!("unknown command {line:?}"),
        }
    }
    Ok(())
}

/// Runs a bound server until killed (echo) or until its input ends (PUB). An
/// echo sends back what it receives as it came: a ROUTER's first frame names
/// the peer it came from.
fn serve<M>(
    kind: ServerKind,
    recv: impl Fn() -> Result<M>,
    send: impl Fn(M) -> Result<()>,
    publish: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    match kind {
        ServerKind::Echo => loop {
            send(recv()?)?;
        },
        ServerKind::Pub => pub_commands(publish),
    }
}

fn conduit_server(args: &ServerArgs) -> Result<()> {
    let kind = match args.kind {
        ServerKind::Echo => SocketType::Router,
        ServerKind::Pub => SocketType::Pub,
    };
    let socket = Socket::builder(kind).send_hwm(args.hwm).build()?;
    let bound = socket.bind("tcp://127.0.0.1:*")?;
    say(&format!("ready {bound}"));
    serve(
        args.kind,
        || Ok(socket.recv()?),
        |m| Ok(socket.send(m)?),
        |body| Ok(socket.send(Message::from(Bytes::copy_from_slice(body)))?),
    )
}

fn omq_server(args: &ServerArgs) -> Result<()> {
    use omq_tokio::{Context, Options, SocketType as OmqType};
    let kind = match args.kind {
        ServerKind::Echo => OmqType::Router,
        ServerKind::Pub => OmqType::Pub,
    };
    let mut options = Options::default().send_hwm(u32::try_from(args.hwm).unwrap_or(u32::MAX));
    if let Some(ms) = args.handshake_ms {
        options = options.handshake_timeout(Duration::from_millis(ms));
    }
    let ctx = Context::new();
    let socket = ctx.blocking_socket(kind, options);
    let bound = socket.bind("tcp://127.0.0.1:0")?;
    say(&format!("ready {bound}"));
    serve(
        args.kind,
        || Ok(socket.recv()?),
        |m| Ok(socket.send(m)?),
        |body| Ok(socket.send(omq_tokio::Message::single(Bytes::copy_from_slice(body)))?),
    )
}

fn libzmq_server(args: &ServerArgs) -> Result<()> {
    let kind = match args.kind {
        ServerKind::Echo => ZMQ_ROUTER,
        ServerKind::Pub => ZMQ_PUB,
    };
    let socket = zmq_ffi::socket(zmq_ffi::context(None)?, kind)?;
    zmq_ffi::set_int(
        socket,
        zmq_ffi::ZMQ_SNDHWM,
        i32::try_from(args.hwm).unwrap_or(i32::MAX),
    )?;
    if let Some(ms) = args.handshake_ms {
        let ms = Duration::from_millis(ms).as_millis();
        zmq_ffi::set_int(
            socket,
            zmq_ffi::ZMQ_HANDSHAKE_IVL,
            i32::try_from(ms).unwrap_or(i32::MAX),
        )?;
    }
    if let Some(backlog) = args.backlog {
        zmq_ffi::set_int(socket, zmq_ffi::ZMQ_BACKLOG, backlog)?;
    }
    let bound = zmq_ffi::bind(socket, "tcp://127.0.0.1:*")?;
    say(&format!("ready {bound}"));
    match args.kind {
        ServerKind::Echo => echo_libzmq(socket),
        ServerKind::Pub => pub_commands(|body| {
            // SAFETY: the socket is open; libzmq copies `body` before returning.
            let rc = unsafe { zmq_ffi::zmq_send(socket, body.as_ptr().cast(), body.len(), 0) };
            check(rc, "zmq_send").map(drop)
        }),
    }
}

/// A libzmq ROUTER echo: the identity frame, then the one body frame a DEALER
/// client sends, both sent back as received.
fn echo_libzmq(socket: *mut c_void) -> Result<()> {
    let mut id = zmq_ffi::message()?;
    let mut body = zmq_ffi::message()?;
    loop {
        // SAFETY: the socket is open and both messages initialized; a sent
        // message is left empty and initialized again.
        unsafe {
            check(zmq_ffi::zmq_msg_recv(&mut *id, socket, 0), "zmq_msg_recv")?;
            check(zmq_ffi::zmq_msg_recv(&mut *body, socket, 0), "zmq_msg_recv")?;
            check(
                zmq_ffi::zmq_msg_send(&mut *id, socket, ZMQ_SNDMORE),
                "zmq_msg_send",
            )?;
            check(zmq_ffi::zmq_msg_send(&mut *body, socket, 0), "zmq_msg_send")?;
        }
    }
}
