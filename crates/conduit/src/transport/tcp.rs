//! TCP: connecting and listening.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};

use super::socket::{Family, SocketStream};
use crate::endpoint::Endpoint;
use crate::error::Error;

/// Connects to the first address of `endpoint` that accepts.
pub(crate) fn connect(endpoint: &Endpoint) -> Result<SocketStream, Error> {
    let mut last = None;
    for addr in endpoint.tcp_addrs()? {
        match TcpStream::connect(addr) {
            Ok(stream) => return stream_of(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        format!("cannot connect to {endpoint}"),
        last.expect("tcp_addrs returns at least one address"),
    ))
}

fn stream_of(stream: TcpStream) -> Result<SocketStream, Error> {
    // We batch ourselves; Nagle's algorithm would only add latency to the direct path.
    stream
        .set_nodelay(true)
        .map_err(|e| Error::io("cannot set TCP_NODELAY", e))?;
    Ok(SocketStream::new(stream.into(), Family::Tcp))
}

#[derive(Debug)]
pub(crate) struct TcpListen {
    listener: TcpListener,
    endpoint: Endpoint,
}

/// Binds a listening socket; `endpoint()` then has the actual port.
pub(crate) fn bind(endpoint: &Endpoint) -> Result<TcpListen, Error> {
    let mut last = None;
    for addr in endpoint.tcp_addrs()? {
        match TcpListener::bind(addr) {
            Ok(listener) => {
                let local = listener
                    .local_addr()
                    .map_err(|e| Error::io("cannot read the bound address", e))?;
                let Endpoint::Tcp { host, .. } = endpoint else {
                    unreachable!()
                };
                let endpoint = Endpoint::Tcp {
                    host: host.clone(),
                    port: local.port(),
                };
                return Ok(TcpListen { listener, endpoint });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(Error::io(
        format!("cannot bind {endpoint}"),
        last.expect("tcp_addrs returns at least one address"),
    ))
}

impl TcpListen {
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn accept(&self) -> Result<(SocketStream, String), Error> {
        loop {
            match self.listener.accept() {
                Ok((stream, from)) => return Ok((stream_of(stream)?, from.to_string())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("cannot accept on {}", self.endpoint), e)),
            }
        }
    }
}

impl AsFd for TcpListen {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}
