//! Endpoints: `tcp://host:port`, `ipc://path` and `inproc://name`, as ZeroMQ
//! writes them.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// Longest path a Unix socket address holds (`sun_path` less its terminating NUL).
const MAX_IPC_PATH: usize = 107;

/// Where to bind or connect.
///
/// | form | meaning |
/// |---|---|
/// | `tcp://127.0.0.1:5555` | TCP, IPv4 |
/// | `tcp://[::1]:5555` | TCP, IPv6 |
/// | `tcp://localhost:5555` | TCP, name resolved when connecting |
/// | `tcp://*:5555` | bind: every IPv4 interface |
/// | `tcp://127.0.0.1:*` or `:0` | bind: a port the OS picks (see the listener's endpoint) |
/// | `ipc:///tmp/feed.sock` | Unix domain socket at a path |
/// | `ipc://@feed` | Linux abstract socket (no file) |
/// | `inproc://jobs` | sockets of this process, by name (no system call; [`Socket`](crate::Socket) only) |
///
/// ```
/// use conduit::Endpoint;
/// let ep: Endpoint = "tcp://127.0.0.1:5555".parse().unwrap();
/// assert_eq!(ep.to_string(), "tcp://127.0.0.1:5555");
/// assert!("udp://x:1".parse::<Endpoint>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// A TCP address; `host` is a name, an address, or `*` for every interface.
    Tcp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port; 0 asks the OS for one when binding.
        port: u16,
    },
    /// A Unix domain socket at a filesystem path.
    Ipc(PathBuf),
    /// A Linux abstract-namespace Unix socket (written `ipc://@name`).
    IpcAbstract(String),
    /// Sockets of this process, linked by name without the kernel (written
    /// `inproc://name`). Only [`Socket`](crate::Socket)s bind and connect it.
    Inproc(String),
}

impl Endpoint {
    /// The TCP socket addresses this endpoint names, resolving host names.
    pub(crate) fn tcp_addrs(&self) -> Result<Vec<SocketAddr>, Error> {
        let Endpoint::Tcp { host, port } = self else {
            unreachable!("tcp_addrs on a non-TCP endpoint");
        };
        let host = if host == "*" {
            "0.0.0.0"
        } else {
            host.as_str()
        };
        let addrs: Vec<SocketAddr> = (host, *port)
            .to_socket_addrs()
            .map_err(|e| Error::io(format!("cannot resolve {self}"), e))?
            .collect();
        if addrs.is_empty() {
            return Err(Error::InvalidEndpoint {
                endpoint: self.to_string(),
                reason: "host name resolves to no address".into(),
            });
        }
        Ok(addrs)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            Endpoint::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Endpoint::Ipc(path) => write!(f, "ipc://{}", path.display()),
            Endpoint::IpcAbstract(name) => write!(f, "ipc://@{name}"),
            Endpoint::Inproc(name) => write!(f, "inproc://{name}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Endpoint, Error> {
        let invalid = |reason: &str| Error::InvalidEndpoint {
            endpoint: s.to_owned(),
            reason: reason.to_owned(),
        };
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| invalid("expected tcp://host:port"))?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(invalid("missing host (use * to bind every interface)"));
            }
            if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(invalid("not an IPv6 address"));
            }
            let port = match port {
                "*" => 0,
                p => p
                    .parse::<u16>()
                    .map_err(|_| invalid("port must be a number from 0 to 65535, or *"))?,
            };
            return Ok(Endpoint::Tcp {
                host: host.to_owned(),
                port,
            });
        }
        if let Some(rest) = s.strip_prefix("ipc://") {
            if let Some(name) = rest.strip_prefix('@') {
                if name.is_empty() || name.len() > MAX_IPC_PATH - 1 {
                    return Err(invalid("abstract name must be 1 to 106 bytes"));
                }
                return Ok(Endpoint::IpcAbstract(name.to_owned()));
            }
            if rest.is_empty() {
                return Err(invalid("missing path"));
            }
            if rest.len() > MAX_IPC_PATH {
                return Err(invalid(
                    "path longer than the 107 bytes a Unix socket address holds",
                ));
            }
            return Ok(Endpoint::Ipc(PathBuf::from(rest)));
        }
        if let Some(name) = s.strip_prefix("inproc://") {
            if name.is_empty() {
                return Err(invalid("missing name"));
            }
            return Ok(Endpoint::Inproc(name.to_owned()));
        }
        Err(invalid(
            "unknown transport (expected tcp://, ipc:// or inproc://)",
        ))
    }
}

/// What `bind` and `connect` take: an endpoint as text (`"tcp://host:port"`,
/// `"ipc:///path"`), or an [`Endpoint`], such as the one `bind` returned.
///
/// ```
/// use conduit::{Socket, SocketType};
///
/// let pull = Socket::new(SocketType::Pull)?;
/// let endpoint = pull.bind("tcp://127.0.0.1:*")?;
/// let push = Socket::new(SocketType::Push)?;
/// push.connect(&endpoint)?; // or "tcp://127.0.0.1:5555", or a String
/// # Ok::<(), conduit::Error>(())
/// ```
pub trait ToEndpoint {
    /// The endpoint, parsed if it is text.
    fn to_endpoint(&self) -> Result<Endpoint, Error>;
}

impl ToEndpoint for str {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        self.parse()
    }
}

impl ToEndpoint for String {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        self.parse()
    }
}

impl ToEndpoint for Endpoint {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        Ok(self.clone())
    }
}

impl<T: ToEndpoint + ?Sized> ToEndpoint for &T {
    fn to_endpoint(&self) -> Result<Endpoint, Error> {
        (**self).to_endpoint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_zeromq_forms() {
        for s in [
            "tcp://127.0.0.1:5555",
            "tcp://localhost:1",
            "tcp://*:5555",
            "tcp://[::1]:80",
            "ipc:///tmp/x.sock",
            "ipc://relative.sock",
            "ipc://@abstract",
            "inproc://workers",
        ] {
            assert_eq!(s.parse::<Endpoint>().unwrap().to_string(), s);
        }
        assert_eq!(
            "tcp://127.0.0.1:*".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 0
            }
        );
    }

    #[test]
    fn rejects_with_a_reason() {
        for (s, reason) in [
            ("udp://1.2.3.4:5", "unknown transport"),
            ("tcp://1.2.3.4", "expected tcp://host:port"),
            ("tcp://:5", "missing host"),
            ("tcp://h:99999", "port must be"),
            ("tcp://h:x", "port must be"),
            ("tcp://[::zz]:1", "not an IPv6"),
            ("ipc://", "missing path"),
            ("ipc://@", "abstract name"),
            ("inproc://", "missing name"),
        ] {
            let err = s.parse::<Endpoint>().unwrap_err().to_string();
            assert!(err.contains(reason), "{s}: {err}");
        }
        let long = format!("ipc:///{}", "a".repeat(120));
        assert!(long.parse::<Endpoint>().is_err());
    }

    #[test]
    fn star_binds_every_interface() {
        let ep: Endpoint = "tcp://*:0".parse().unwrap();
        assert_eq!(ep.tcp_addrs().unwrap()[0].ip().to_string(), "0.0.0.0");
    }
}
