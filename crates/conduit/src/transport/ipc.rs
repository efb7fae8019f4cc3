//! Unix domain sockets (`ipc://`): connecting and listening.
//!
//! A listening socket's file is made owner-only right after it is bound (change it
//! with the builder's `ipc_mode`), and removed when the listener closes, unless
//! another socket has taken the path since. A file left behind by a process that
//! crashed is reclaimed: if nothing accepts connections on it, it is removed and
//! bound again. A path that is not a socket is never removed.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::socket::{Family, SocketStream};
use crate::endpoint::Endpoint;
use crate::error::Error;

fn address(endpoint: &Endpoint) -> io::Result<SocketAddr> {
    match endpoint {
        Endpoint::Ipc(path) => SocketAddr::from_pathname(path),
        Endpoint::IpcAbstract(name) => SocketAddr::from_abstract_name(name.as_bytes()),
        Endpoint::Tcp { .. } | Endpoint::Inproc(_) => unreachable!("ipc address of {endpoint}"),
    }
}

pub(crate) fn connect(endpoint: &Endpoint) -> Result<SocketStream, Error> {
    let context = || format!("cannot connect to {endpoint}");
    let addr = address(endpoint).map_err(|e| Error::io(context(), e))?;
    let stream = UnixStream::connect_addr(&addr).map_err(|e| Error::io(context(), e))?;
    Ok(SocketStream::new(stream.into(), Family::Unix))
}

#[derive(Debug)]
pub(crate) struct IpcListen {
    listener: UnixListener,
    endpoint: Endpoint,
    /// The file we created, identified by device and inode so that we never remove
    /// a file some other process bound after us.
    file: Option<(PathBuf, u64, u64)>,
}

pub(crate) fn bind(endpoint: &Endpoint, mode: u32) -> Result<IpcListen, Error> {
    let context = || format!("cannot bind {endpoint}");
    let addr = address(endpoint).map_err(|e| Error::io(context(), e))?;
    let listener = match UnixListener::bind_addr(&addr) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let Endpoint::Ipc(path) = endpoint else {
                return Err(Error::io(context(), e));
            };
            reclaim_stale(path).map_err(|e| Error::io(context(), e))?;
            UnixListener::bind_addr(&addr)
        }
        other => other,
    }
    .map_err(|e| Error::io(context(), e))?;
    let file = match endpoint {
        Endpoint::Ipc(path) => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
                Error::io(
                    format!("cannot set the permissions of {}", path.display()),
                    e,
                )
            })?;
            let meta = std::fs::metadata(path).map_err(|e| Error::io(context(), e))?;
            Some((path.clone(), meta.dev(), meta.ino()))
        }
        _ => None,
    };
    Ok(IpcListen {
        listener,
        endpoint: endpoint.clone(),
        file,
    })
}

/// Removes `path` if it is a socket nobody listens on; otherwise says why not.
fn reclaim_stale(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "address in use: another process is listening there",
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(e),
    }
}

impl IpcListen {
    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub(crate) fn accept(&self) -> Result<(SocketStream, String), Error> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // A connecting Unix socket rarely has an address; the peer's
                    // process id is what tells connections apart.
                    let from = rustix::net::sockopt::socket_peercred(&stream).map_or_else(
                        |_| "a local peer".to_owned(),
                        |c| format!("pid {}", c.pid.as_raw_nonzero()),
                    );
                    return Ok((SocketStream::new(stream.into(), Family::Unix), from));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("cannot accept on {}", self.endpoint), e)),
            }
        }
    }
}

impl AsFd for IpcListen {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }
}

impl Drop for IpcListen {
    fn drop(&mut self) {
        if let Some((path, dev, ino)) = &self.file {
            let ours =
                std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino);
            if ours {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
