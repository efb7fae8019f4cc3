//! Rust to Rust on one host: conduit's `Channel` over ipc against servo's
//! ipc-channel, for bytes and for a typed struct.
//!
//! - `conduit`: the channel as an application gets it (frames of 256 KiB and
//!   more go through shared memory to a conduit peer).
//! - `conduit-shared`: the same, with the payload built once in a
//!   `SharedBytesMut`: each send passes a reference to that region, no copy.
//! - `conduit-inline`: the same with shared memory off: every byte through the
//!   socket (the path before shared memory, and the one libzmq peers get).
//! - `ipc-channel`: `IpcBytesSender`/`IpcBytesReceiver`, set up through an
//!   `IpcOneShotServer` as its documentation shows.
//! - `conduit-typed` / `ipc-channel-typed`: round trips of [`Typed`] (a few
//!   fields and a 1 KiB vector) with `send_value`/`recv_value` and
//!   `IpcSender<Typed>`/`IpcReceiver<Typed>`; the size column says 1024.
//!
//! Every receiver here reads one byte of each 4 KiB page it receives, so that a
//! mapping nobody touches (shared memory) is not counted as free: the data is
//! made present, as any reader of it would.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use conduit::{Channel, ChannelBuilder, RecvError};
use ipc_channel::ipc::{
    self, IpcBytesReceiver, IpcBytesSender, IpcError, IpcOneShotServer, IpcReceiver, IpcSender,
};
use serde::{Deserialize, Serialize};

use crate::case::{Case, Impl, Role};
use crate::measure::Link;
use crate::peer::{Meet, announce};

/// The typed struct of the typed round trip.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Typed {
    id: u64,
    name: String,
    scale: f64,
    flags: (bool, u8),
    data: Vec<u8>,
}

impl Typed {
    fn new() -> Typed {
        Typed {
            id: 0x1234_5678,
            name: "sensor-7".into(),
            scale: 0.25,
            flags: (true, 3),
            data: vec![0x5A; 1024],
        }
    }
}

/// Reads one byte of every page, as a reader of the data would.
fn touch(data: &[u8]) -> usize {
    let mut sum = 0u8;
    for b in data.iter().step_by(4096) {
        sum = sum.wrapping_add(*b);
    }
    std::hint::black_box(sum);
    data.len()
}

fn closed_or<T>(r: Result<T, RecvError>) -> Result<Option<T>> {
    match r {
        Ok(m) => Ok(Some(m)),
        Err(RecvError::Closed) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens a link for one of this module's implementations.
pub fn open(case: &Case, role: Role, meet: Meet) -> Result<Box<dyn Link>> {
    match case.imp {
        Impl::IpcChannel => ipc_bytes(case, role, &meet),
        Impl::IpcChannelTyped => ipc_typed(role, &meet),
        Impl::ConduitTyped => Ok(Box::new(ConduitTyped {
            channel: conduit_channel(ChannelBuilder::new(), role, meet)?,
            value: Typed::new(),
        })),
        _ => {
            let builder = match case.imp {
                Impl::ConduitInline => ChannelBuilder::new().shared_memory_threshold(None),
                _ => ChannelBuilder::new(),
            };
            let payload = if case.imp == Impl::ConduitShared {
                let mut buf = conduit::SharedBytesMut::zeroed(case.size)?;
                buf.fill(0xA5);
                buf.freeze()?
            } else {
                Bytes::from(vec![0xA5; case.size])
            };
            Ok(Box::new(ConduitBytes {
                channel: conduit_channel(builder, role, meet)?,
                payload,
            }))
        }
    }
}

fn conduit_channel(builder: ChannelBuilder, role: Role, meet: Meet) -> Result<Channel> {
    let builder = builder.connect_timeout(Duration::from_secs(10));
    Ok(match role {
        Role::Local => {
            let endpoint = format!("ipc://{}", meet.dir.join("conduit.sock").display());
            let listener = builder.listen(&endpoint)?;
            announce(&listener.endpoint().to_string());
            listener.accept()?
        }
        Role::Remote => builder.connect(meet.endpoint()?)?,
    })
}

struct ConduitBytes {
    channel: Channel,
    payload: Bytes,
}

impl Link for ConduitBytes {
    fn send(&mut self) -> Result<()> {
        Ok(self.channel.send(self.payload.clone())?)
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        Ok(closed_or(self.channel.recv())?.map(|m| m.frames().iter().map(|f| touch(f)).sum()))
    }

    fn echo(&mut self) -> Result<bool> {
        match closed_or(self.channel.recv())? {
            Some(m) => self.channel.send(m).map(|()| true).map_err(Into::into),
            None => Ok(false),
        }
    }
}

struct ConduitTyped {
    channel: Channel,
    value: Typed,
}

impl Link for ConduitTyped {
    fn send(&mut self) -> Result<()> {
        Ok(self.channel.send_value(&self.value)?)
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        Ok(closed_or(self.channel.recv_value::<Typed>())?.map(|t| t.data.len()))
    }

    fn echo(&mut self) -> Result<bool> {
        match closed_or(self.channel.recv_value::<Typed>())? {
            Some(t) => self
                .channel
                .send_value(&t)
                .map(|()| true)
                .map_err(Into::into),
            None => Ok(false),
        }
    }
}

/// Sets up a two-way ipc-channel link the way its documentation does: the
/// local end serves a one-shot server and announces its name; the remote end
/// makes both channels and sends the local end its halves.
fn ipc_link<S, R>(
    role: Role,
    meet: &Meet,
    make: impl Fn() -> std::io::Result<(S, R)>,
) -> Result<(S, R)>
where
    S: Serialize + for<'de> Deserialize<'de>,
    R: Serialize + for<'de> Deserialize<'de>,
{
    match role {
        Role::Local => {
            let (server, name) = IpcOneShotServer::<(S, R)>::new()?;
            announce(&name);
            let (_first, ends) = server.accept().map_err(|e| anyhow!("accept: {e}"))?;
            Ok(ends)
        }
        Role::Remote => {
            let name = meet.endpoint()?.to_string();
            let to_local = IpcSender::<(S, R)>::connect(name).context("connect")?;
            let (local_tx, remote_rx) = make()?;
            let (remote_tx, local_rx) = make()?;
            to_local
                .send((local_tx, local_rx))
                .map_err(|e| anyhow!("send: {e}"))?;
            Ok((remote_tx, remote_rx))
        }
    }
}

fn ipc_closed_or<T>(r: Result<T, IpcError>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(IpcError::Disconnected) => Ok(None),
        Err(e) => Err(anyhow!("{e:?}")),
    }
}

struct IpcBytes {
    tx: IpcBytesSender,
    rx: IpcBytesReceiver,
    payload: Vec<u8>,
}

impl Link for IpcBytes {
    fn send(&mut self) -> Result<()> {
        Ok(self.tx.send(&self.payload)?)
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        Ok(ipc_closed_or(self.rx.recv())?.map(|v| touch(&v)))
    }

    fn echo(&mut self) -> Result<bool> {
        match ipc_closed_or(self.rx.recv())? {
            Some(v) => self.tx.send(&v).map(|()| true).map_err(Into::into),
            None => Ok(false),
        }
    }
}

fn ipc_bytes(case: &Case, role: Role, meet: &Meet) -> Result<Box<dyn Link>> {
    let (tx, rx) = ipc_link(role, meet, ipc::bytes_channel)?;
    Ok(Box::new(IpcBytes {
        tx,
        rx,
        payload: vec![0xA5; case.size],
    }))
}

struct IpcTyped {
    tx: IpcSender<Typed>,
    rx: IpcReceiver<Typed>,
    value: Typed,
}

impl Link for IpcTyped {
    fn send(&mut self) -> Result<()> {
        // ipc-channel's send takes the value: a clone per message, as an
        // application that keeps its value would make.
        self.tx
            .send(self.value.clone())
            .map_err(|e| anyhow!("send: {e}"))
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        Ok(ipc_closed_or(self.rx.recv())?.map(|t| t.data.len()))
    }

    fn echo(&mut self) -> Result<bool> {
        match ipc_closed_or(self.rx.recv())? {
            Some(t) => self
                .tx
                .send(t)
                .map(|()| true)
                .map_err(|e| anyhow!("send: {e}")),
            None => Ok(false),
        }
    }
}

fn ipc_typed(role: Role, meet: &Meet) -> Result<Box<dyn Link>> {
    let (tx, rx) = ipc_link(role, meet, ipc::channel::<Typed>)?;
    Ok(Box::new(IpcTyped {
        tx,
        rx,
        value: Typed::new(),
    }))
}

/// Issue 14's targets, from rows of one run: the typed round trip at most
/// ipc-channel's; 1 MiB and 64 MiB streams at least twice the socket path
/// (`conduit-inline`) and at least ipc-channel. Empty when those rows are not
/// in the run.
pub fn target_check(rows: &[crate::case::Row]) -> String {
    use crate::case::{Cores, Mode, Transport};
    use std::fmt::Write;
    let find = |imp: Impl, mode: Mode, size: usize, cores: Cores| {
        rows.iter().find(|r| {
            r.imp == imp
                && r.mode == mode
                && r.size == size
                && r.cores == cores
                && r.transport == Transport::Ipc
        })
    };
    let mut out = String::new();
    for cores in [Cores::Same, Cores::Separate] {
        if let (Some(c), Some(i)) = (
            find(Impl::ConduitTyped, Mode::Lat, 1024, cores),
            find(Impl::IpcChannelTyped, Mode::Lat, 1024, cores),
        ) {
            let (c, i) = (
                c.rtt_median_us.unwrap_or(0.0),
                i.rtt_median_us.unwrap_or(0.0),
            );
            let _ = writeln!(
                out,
                "typed round trip, cores {cores}: conduit {c:.2} us, ipc-channel {i:.2} us, ratio {:.2} (target <= 1): {}",
                c / i,
                if c <= i { "met" } else { "MISSED" }
            );
        }
        for size in [1 << 20, 64 << 20] {
            let rate = |r: Option<&crate::case::Row>| r.and_then(|r| r.mb_per_s);
            for imp in [Impl::Conduit, Impl::ConduitShared] {
                let Some(c) = rate(find(imp, Mode::Thr, size, cores)) else {
                    continue;
                };
                for (base, target) in [(Impl::ConduitInline, 2.0), (Impl::IpcChannel, 1.0)] {
                    if let Some(b) = rate(find(base, Mode::Thr, size, cores)) {
                        let _ = writeln!(
                            out,
                            "{} MiB stream, cores {cores}: {imp} {c:.0} MB/s, {base} {b:.0} MB/s, ratio {:.2} (target >= {target}): {}",
                            size >> 20,
                            c / b,
                            if c >= target * b { "met" } else { "MISSED" }
                        );
                    }
                }
            }
        }
    }
    out
}
