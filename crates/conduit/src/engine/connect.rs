//! Connecting without blocking the I/O thread: start the connect, and finish
//! it when the socket becomes writable.

use std::io;

use socket2::{Domain, SockAddr, Socket, Type};

use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::transport::socket::{Family, SocketStream};

/// A connect under way.
#[derive(Debug)]
pub(crate) struct Connecting {
    pub(crate) stream: SocketStream,
    /// Connected already (Unix sockets, usually): no need to wait for writability.
    pub(crate) done: bool,
}

/// Starts connecting to `endpoint`. A TCP host name is resolved here, on the
/// I/O thread; `localhost` and literal addresses cost nothing.
pub(crate) fn start(endpoint: &Endpoint) -> Result<Connecting, Error> {
    let context = || format!("cannot connect to {endpoint}");
    let (addr, family) = match endpoint {
        // Linked in engine/inproc.rs, never connected here.
        Endpoint::Inproc(_) => {
            return Err(Error::InvalidEndpoint {
                endpoint: endpoint.to_string(),
                reason: "inproc:// has no connection to make".into(),
            });
        }
        Endpoint::Tcp { .. } => {
            let addr = endpoint.tcp_addrs()?[0];
            (SockAddr::from(addr), Family::Tcp)
        }
        Endpoint::Ipc(path) => (
            SockAddr::unix(path).map_err(|e| Error::io(context(), e))?,
            Family::Unix,
        ),
        Endpoint::IpcAbstract(name) => {
            // A leading NUL byte makes it an abstract address.
            let mut path = std::ffi::OsString::from("\0");
            path.push(name);
            (
                SockAddr::unix(path).map_err(|e| Error::io(context(), e))?,
                Family::Unix,
            )
        }
    };
    let domain = match family {
        Family::Unix => Domain::UNIX,
        Family::Tcp => Domain::for_address(addr.as_socket().expect("an IP address")),
    };
    // socket2 makes the descriptor close-on-exec.
    let socket = Socket::new(domain, Type::STREAM, None).map_err(|e| Error::io(context(), e))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::io(context(), e))?;
    if family == Family::Tcp {
        // We batch ourselves; Nagle's algorithm would only delay replies.
        socket
            .set_tcp_nodelay(true)
            .map_err(|e| Error::io("cannot set TCP_NODELAY", e))?;
    }
    let done = match socket.connect(&addr) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
        Err(e) => return Err(Error::io(context(), e)),
    };
    Ok(Connecting {
        stream: SocketStream::new(socket.into(), family),
        done,
    })
}

/// After a connect in progress reported writability: whether it succeeded.
pub(crate) fn finish(stream: &SocketStream, endpoint: &Endpoint) -> Result<(), Error> {
    let fd = std::os::fd::AsFd::as_fd(stream);
    match rustix::net::sockopt::socket_error(fd) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(errno)) => Err(Error::io(
            format!("cannot connect to {endpoint}"),
            io::Error::from(errno),
        )),
        Err(errno) => Err(Error::io(
            format!("cannot connect to {endpoint}"),
            io::Error::from(errno),
        )),
    }
}
