//! Keys and certificates on disk, and what the transport tells an
//! authenticator about a peer.
//!
//! Certificate files are the ones czmq's `zcert` and pyzmq's `zmq.auth` write
//! (ZPL text, RFC 4): a public one, `NAME.key`, and a secret one,
//! `NAME.key_secret`, each with a `curve` section holding `public-key` (and in
//! the secret one `secret-key`) as 40 Z85 characters in quotes.

use std::os::fd::BorrowedFd;
use std::path::Path;

use conduit_proto::{CurveKeyPair, CurvePublicKey, CurveSecretKey, PeerAddress, PeerProcess};

use crate::error::Error;

/// What the OS knows about the peer of a connected socket: its address, and
/// over a Unix socket its process's credentials.
pub(crate) fn peer_address(fd: BorrowedFd<'_>) -> PeerAddress {
    let sock = socket2::SockRef::from(&fd);
    let address = match sock.peer_addr() {
        Ok(addr) => match addr.as_socket() {
            Some(ip) => ip.ip().to_string(),
            None => addr
                .as_pathname()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        },
        Err(_) => String::new(),
    };
    let process = rustix::net::sockopt::socket_peercred(fd)
        .ok()
        .map(|c| PeerProcess {
            pid: c.pid.as_raw_nonzero().get() as u32,
            uid: c.uid.as_raw(),
            gid: c.gid.as_raw(),
        });
    PeerAddress { address, process }
}

/// A CURVE certificate: a public key, and in a secret certificate the secret
/// key too.
///
/// ```
/// use conduit::{Certificate, CurveKeyPair};
///
/// let dir = std::env::temp_dir().join(format!("conduit-doc-cert-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let pair = CurveKeyPair::generate();
/// Certificate::save(&pair, &dir.join("server"))?;       // server.key, server.key_secret
/// let public = Certificate::load(dir.join("server.key"))?;
/// assert_eq!(public.public, pair.public);
/// assert!(public.secret.is_none());
/// let secret = Certificate::load(dir.join("server.key_secret"))?;
/// assert_eq!(secret.key_pair().unwrap().public, pair.public);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Certificate {
    /// The public key.
    pub public: CurvePublicKey,
    /// The secret key, in a secret certificate.
    pub secret: Option<CurveSecretKey>,
}

impl Certificate {
    /// Reads a certificate file (`*.key` or `*.key_secret`).
    pub fn load(path: impl AsRef<Path>) -> Result<Certificate, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read certificate {}", path.display()), e))?;
        let bad =
            |what: &str| Error::BadCredentials(format!("certificate {}: {what}", path.display()));
        let mut section = "";
        let (mut public, mut secret) = (None, None);
        for line in text.lines() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            // ZPL: a section name starts in column 0; its properties are indented.
            if !line.starts_with([' ', '\t']) {
                section = trimmed;
                continue;
            }
            let Some((name, value)) = trimmed.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match (section, name.trim()) {
                ("curve", "public-key") => {
                    public = Some(
                        value
                            .parse::<CurvePublicKey>()
                            .map_err(|e| bad(&e.to_string()))?,
                    )
                }
                ("curve", "secret-key") => {
                    secret = Some(
                        value
                            .parse::<CurveSecretKey>()
                            .map_err(|e| bad(&e.to_string()))?,
                    )
                }
                _ => {}
            }
        }
        let public = public.ok_or_else(|| bad("no curve public-key"))?;
        if let Some(secret) = &secret {
            if secret.public_key() != public {
                return Err(bad("the secret key does not belong to the public key"));
            }
        }
        Ok(Certificate { public, secret })
    }

    /// The key pair of a secret certificate.
    pub fn key_pair(&self) -> Option<CurveKeyPair> {
        self.secret.clone().map(CurveKeyPair::from_secret)
    }

    /// Writes `pair` as `BASE.key` (public, mode 0644) and `BASE.key_secret`
    /// (secret, mode 0600), in the format pyzmq's `zmq.auth` reads.
    pub fn save(pair: &CurveKeyPair, base: &Path) -> Result<(), Error> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let write = |suffix: &str, secret: bool| -> Result<(), Error> {
            let mut path = base.as_os_str().to_owned();
            path.push(suffix);
            let mut text = String::from("#   ****  Generated by conduit  ****\n");
            text += if secret {
                "#   ZeroMQ CURVE **Secret** Certificate\n#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
            } else {
                "#   ZeroMQ CURVE Public Certificate\n#   Exchange securely, or use a secure mechanism to verify the contents\n#   of this file after exchange. Store public certificates in your home\n#   directory, in the .curve subdirectory.\n\n"
            };
            text += "metadata\ncurve\n";
            text += &format!("    public-key = \"{}\"\n", pair.public);
            if secret {
                text += &format!("    secret-key = \"{}\"\n", pair.secret.to_z85());
            }
            let context = || format!("cannot write {}", Path::new(&path).display());
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(if secret { 0o600 } else { 0o644 })
                .open(&path)
                .map_err(|e| Error::io(context(), e))?;
            file.write_all(text.as_bytes())
                .map_err(|e| Error::io(context(), e))
        };
        write(".key", false)?;
        write(".key_secret", true)
    }
}

/// A public key given as 40 Z85 characters or as the path of a certificate
/// file (as the CLI's key options take it).
pub fn parse_key(text_or_path: &str) -> Result<Certificate, Error> {
    if text_or_path.len() == conduit_proto::KEY_Z85_LEN && !Path::new(text_or_path).exists() {
        let public = text_or_path
            .parse::<CurvePublicKey>()
            .map_err(|e| Error::BadCredentials(e.to_string()))?;
        return Ok(Certificate {
            public,
            secret: None,
        });
    }
    Certificate::load(text_or_path)
}

/// The public keys of every certificate (`*.key`) in `dir`, as pyzmq's
/// `zmq.auth.load_certificates` reads a directory of allowed clients.
pub fn load_public_keys(dir: impl AsRef<Path>) -> Result<Vec<CurvePublicKey>, Error> {
    let dir = dir.as_ref();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("cannot read directory {}", dir.display()), e))?;
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io(format!("cannot read directory {}", dir.display()), e))?
            .path();
        if path.extension().is_some_and(|e| e == "key") {
            keys.push(Certificate::load(&path)?.public);
        }
    }
    Ok(keys)
}

/// The security methods of [`ChannelBuilder`](crate::ChannelBuilder) and
/// [`SocketBuilder`](crate::SocketBuilder), the same for both: every
/// connection of a socket runs the handshake the socket is set up for.
macro_rules! security_options {
    ($builder:ty, $example:literal) => {
        impl $builder {
            /// The security mechanism, our role in it, and on a server who gets
            /// in (default: NULL, everyone). The methods below are shorthands.
            ///
            #[doc = $example]
            pub fn security(mut self, security: conduit_proto::Security) -> Self {
                *self.security_mut() = security;
                self
            }

            /// CURVE server with this long-term key pair.
            pub fn curve_server(mut self, keys: conduit_proto::CurveKeyPair) -> Self {
                self.security_mut().mechanism = conduit_proto::Mechanism::CurveServer { keys };
                self
            }

            /// CURVE client of the server whose public key is `server_key`, with
            /// our long-term key pair (`None`: a new one for each connection,
            /// for servers that do not check client keys).
            pub fn curve_client(
                mut self,
                server_key: conduit_proto::CurvePublicKey,
                keys: Option<conduit_proto::CurveKeyPair>,
            ) -> Self {
                self.security_mut().mechanism =
                    conduit_proto::Mechanism::CurveClient { server_key, keys };
                self
            }

            /// PLAIN client sending this user name and password, in clear:
            /// for trusted networks only.
            pub fn plain_client(mut self, username: &str, password: &str) -> Self {
                self.security_mut().mechanism = conduit_proto::Mechanism::PlainClient {
                    username: username.to_owned(),
                    password: password.into(),
                };
                self
            }

            /// PLAIN server, checking user names and passwords with the
            /// [`authenticator`](Self::authenticator) (without one, everyone
            /// gets in, as with libzmq and no ZAP handler).
            pub fn plain_server(mut self) -> Self {
                self.security_mut().mechanism = conduit_proto::Mechanism::PlainServer;
                self
            }

            /// Who gets in, asked once per connection with the peer's address
            /// and what it proved (see [`AuthPolicy`](crate::AuthPolicy)). A
            /// refused peer gets an ERROR with the reason and is dropped; other
            /// connections are not affected.
            pub fn authenticator(
                mut self,
                auth: impl conduit_proto::Authenticator + 'static,
            ) -> Self {
                self.security_mut().authenticator = Some(std::sync::Arc::new(auth));
                self
            }
        }
    };
}

security_options!(
    crate::ChannelBuilder,
    r#"```
use conduit::{Channel, CurveKeyPair};

let server_keys = CurveKeyPair::generate();
let server = Channel::builder()
    .curve_server(server_keys.clone())
    .listen("tcp://127.0.0.1:*")?;
let endpoint = server.endpoint().to_string();
let t = std::thread::spawn(move || server.accept().unwrap().recv().unwrap());
let client = Channel::builder()
    .curve_client(server_keys.public, None) // a new key pair of our own
    .connect(&endpoint)?;
client.send("sealed")?;
assert_eq!(t.join().unwrap().concat(), "sealed");
# Ok::<(), Box<dyn std::error::Error>>(())
```"#
);

security_options!(
    crate::SocketBuilder,
    r#"```
use conduit::{CurveKeyPair, Socket, SocketType};

let server_keys = CurveKeyPair::generate();
let pull = Socket::builder(SocketType::Pull)
    .curve_server(server_keys.clone())
    .build()?;
let endpoint = pull.bind("tcp://127.0.0.1:*")?.to_string();
let push = Socket::builder(SocketType::Push)
    .curve_client(server_keys.public, None)
    .build()?;
push.connect(&endpoint)?;
push.send("sealed")?;
assert_eq!(pull.recv()?.concat(), "sealed");
# Ok::<(), Box<dyn std::error::Error>>(())
```"#
);
