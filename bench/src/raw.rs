//! The baseline: the same OS channel, no library. A message is a 4-byte
//! little-endian length and the payload, sent with one `write` per message (the
//! simplest sender, and what the `raw` column has always meant); the receiver
//! reads whatever has arrived, up to its whole buffer (at least 256 KiB), with
//! one `read`, and takes every whole message out of it before reading again, as
//! a careful C program would: one system call per batch, not per message
//! (strace, 64 B over ipc across cores: 2,939 reads for 6,144 messages while the
//! sender made one write each). So a small-message stream is limited by the
//! sender's write per message; `raw-batch` lifts that.
//!
//! The `raw-spin` variant reads without blocking in a loop that never sleeps
//! (round trips only): what busy-polling can reach.
//!
//! The `raw-batch` variant sends 64 messages per `writev` instead: the ceiling
//! for a library that batches small messages. With `--sockbuf` both ask for
//! that SO_SNDBUF and SO_RCVBUF, as every implementation then does.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};

use anyhow::{Context, Result, bail};

use crate::case::{Case, Impl, Mode, Role, Transport};
use crate::measure::Link;
use crate::peer::{Meet, announce};

const PREFIX: usize = 4;

/// Messages per `writev` for `raw-batch`.
pub const BATCH: usize = 64;

struct RawLink {
    rd: File,
    wr: File,
    /// Prefix and payload of the message we send, built once.
    out: Vec<u8>,
    /// Messages per write (1, or BATCH), and how many are waiting for it.
    batch: usize,
    waiting: usize,
    /// `raw-spin`: read without blocking, again and again, until bytes come.
    spin: bool,
    /// Received bytes; `buf[start..end]` is not consumed yet.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl RawLink {
    fn new(rd: OwnedFd, wr: OwnedFd, size: usize, batch: usize, spin: bool) -> RawLink {
        let mut out = Vec::with_capacity(PREFIX + size);
        out.extend_from_slice(&(size as u32).to_le_bytes());
        out.resize(PREFIX + size, 0xA5);
        RawLink {
            rd: File::from(rd),
            wr: File::from(wr),
            out,
            batch,
            waiting: 0,
            spin,
            buf: vec![0; (2 * (PREFIX + size)).max(256 << 10)],
            start: 0,
            end: 0,
        }
    }

    /// Receives one message; returns where its frame (prefix included) lies in `buf`.
    fn recv_frame(&mut self) -> Result<Option<(usize, usize)>> {
        loop {
            let have = self.end - self.start;
            if have >= PREFIX {
                let len = u32::from_le_bytes(
                    self.buf[self.start..self.start + PREFIX]
                        .try_into()
                        .expect("4 bytes"),
                ) as usize;
                let frame = PREFIX + len;
                if have >= frame {
                    let at = self.start;
                    self.start += frame;
                    return Ok(Some((at, frame)));
                }
                if frame > self.buf.len() {
                    bail!("a {len}-byte message does not fit the receive buffer");
                }
                if self.start + frame > self.buf.len() {
                    self.compact();
                }
            } else if self.start + PREFIX > self.buf.len() {
                self.compact();
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            }
            let n = if self.spin {
                self.read_spinning()?
            } else {
                self.rd.read(&mut self.buf[self.end..])?
            };
            if n == 0 {
                if self.start != self.end {
                    bail!("the stream ended inside a message");
                }
                return Ok(None);
            }
            self.end += n;
        }
    }

    /// Reads without blocking until something (or the end) comes.
    fn read_spinning(&mut self) -> Result<usize> {
        loop {
            match rustix::net::recv(
                &self.rd,
                &mut self.buf[self.end..],
                rustix::net::RecvFlags::DONTWAIT,
            ) {
                Ok((n, _)) => return Ok(n),
                Err(rustix::io::Errno::AGAIN) => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Moves the unconsumed bytes to the front of the buffer.
    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}

impl Link for RawLink {
    fn send(&mut self) -> Result<()> {
        if self.batch == 1 {
            return Ok(self.wr.write_all(&self.out)?);
        }
        self.waiting += 1;
        if self.waiting == self.batch {
            self.waiting = 0;
            let mut slices = [IoSlice::new(&self.out); BATCH];
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                let n = self.wr.write_vectored(slices)?;
                IoSlice::advance_slices(&mut slices, n);
            }
        }
        Ok(())
    }

    fn recv(&mut self) -> Result<Option<usize>> {
        Ok(self.recv_frame()?.map(|(_, frame)| frame - PREFIX))
    }

    fn echo(&mut self) -> Result<bool> {
        let Some((at, frame)) = self.recv_frame()? else {
            return Ok(false);
        };
        // The frame as it arrived, prefix and all, goes straight back.
        self.wr.write_all(&self.buf[at..at + frame])?;
        Ok(true)
    }
}

/// Connects a raw link for `case`.
pub fn open(case: &Case, role: Role, meet: Meet) -> Result<Box<dyn Link>> {
    let sockbuf = meet.sockbuf;
    let (rd, wr): (OwnedFd, OwnedFd) = match case.transport {
        Transport::Pipe => match case.mode {
            Mode::Lat => {
                let [rd, wr] = meet
                    .fds
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("need 2 fds"))?;
                (rd, wr)
            }
            // One pipe, one direction: the unused half is a placeholder.
            Mode::Thr => {
                let fd = meet.fds.into_iter().next().context("need a pipe end")?;
                (fd.try_clone()?, fd)
            }
        },
        Transport::Ipc => {
            let stream = match role {
                Role::Local => {
                    let path = meet.dir.join("raw.sock");
                    let listener = UnixListener::bind(&path)
                        .with_context(|| format!("bind {}", path.display()))?;
                    announce(&path.display().to_string());
                    listener.accept()?.0
                }
                Role::Remote => UnixStream::connect(meet.endpoint()?)?,
            };
            let fd = OwnedFd::from(stream);
            (fd.try_clone()?, fd)
        }
        Transport::Tcp => {
            let stream = match role {
                Role::Local => {
                    let listener = TcpListener::bind("127.0.0.1:0")?;
                    announce(&listener.local_addr()?.to_string());
                    listener.accept()?.0
                }
                Role::Remote => TcpStream::connect(meet.endpoint()?)?,
            };
            // Like conduit and libzmq: no Nagle delay on small writes.
            stream.set_nodelay(true)?;
            let fd = OwnedFd::from(stream);
            (fd.try_clone()?, fd)
        }
    };
    if sockbuf > 0 && case.transport != Transport::Pipe {
        rustix::net::sockopt::set_socket_send_buffer_size(&wr, sockbuf)?;
        rustix::net::sockopt::set_socket_recv_buffer_size(&wr, sockbuf)?;
    }
    let batch = if case.imp == Impl::RawBatch { BATCH } else { 1 };
    let spin = case.imp == Impl::RawSpin;
    Ok(Box::new(RawLink::new(rd, wr, case.size, batch, spin)))
}
