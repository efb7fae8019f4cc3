//! `AuthPolicy`: the usual server-side rules (what libzmq's ZAP handlers such
//! as czmq's `zauth` and pyzmq's `zmq.auth` do) as an [`Authenticator`].

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use conduit_proto::{AuthRequest, Authenticator, Credentials, CurvePublicKey, Password};
use subtle::ConstantTimeEq;

use crate::error::Error;

type PlainCheck = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Allow and deny lists a server checks every peer against.
///
/// - **Address**: with any [`allow`](Self::allow)ed address, only those get in;
///   otherwise everyone but the [`deny`](Self::deny)ed ones. Addresses are IPs
///   as text (`127.0.0.1`, `::1`); an ipc peer rarely has an address (its
///   address is then empty), so judge it by its process instead.
/// - **Process** (ipc): with any uid, gid or pid allowed, a Unix-socket peer
///   must match one of them (`SO_PEERCRED`).
/// - **CURVE**: with any client key allowed ([`allow_curve_key`](Self::allow_curve_key),
///   [`allow_curve_keys_in`](Self::allow_curve_keys_in)), only those; otherwise any
///   client that completes the handshake (encryption without authentication).
///   The user id is the key in Z85.
/// - **PLAIN**: the user name and password must match a [`plain_user`](Self::plain_user)
///   (or the file's) or satisfy the [`plain_check`](Self::plain_check); with none,
///   every PLAIN client is refused. The user id is the user name.
///
/// ```
/// use conduit::{AuthPolicy, Channel};
///
/// let policy = AuthPolicy::new().allow("127.0.0.1").plain_user("admin", "secret");
/// let server = Channel::builder()
///     .plain_server()
///     .authenticator(policy)
///     .listen("tcp://127.0.0.1:*")?;
/// let endpoint = server.endpoint().to_string();
/// let t = std::thread::spawn(move || {
///     let ch = server.accept()?;
///     let user = ch.peer().unwrap().user_id.clone();
///     Ok::<_, conduit::Error>((user, ch.recv().unwrap()))
/// });
/// let client = Channel::builder().plain_client("admin", "secret").connect(&endpoint)?;
/// client.send("hi")?;
/// let (user, msg) = t.join().unwrap()?;
/// assert_eq!(user.as_deref(), Some("admin"));
/// assert_eq!(msg.concat(), "hi");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct AuthPolicy {
    allow: HashSet<String>,
    deny: HashSet<String>,
    uids: HashSet<u32>,
    gids: HashSet<u32>,
    pids: HashSet<u32>,
    curve_keys: HashSet<CurvePublicKey>,
    plain_users: HashMap<String, Password>,
    plain_check: Option<PlainCheck>,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPolicy")
            .field("allow", &self.allow)
            .field("deny", &self.deny)
            .field("uids", &self.uids)
            .field("gids", &self.gids)
            .field("pids", &self.pids)
            .field("curve_keys", &self.curve_keys.len())
            .field("plain_users", &self.plain_users.len())
            .finish_non_exhaustive()
    }
}

impl AuthPolicy {
    /// A policy that lets everyone in, except PLAIN clients.
    pub fn new() -> AuthPolicy {
        AuthPolicy::default()
    }

    /// Lets peers at this address in (and, once any is allowed, no others).
    pub fn allow(mut self, address: &str) -> Self {
        self.allow.insert(address.to_owned());
        self
    }

    /// Keeps peers at this address out (ignored once any address is allowed).
    pub fn deny(mut self, address: &str) -> Self {
        self.deny.insert(address.to_owned());
        self
    }

    /// Lets Unix-socket peers running as this user id in.
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.uids.insert(uid);
        self
    }

    /// Lets Unix-socket peers running with this group id in.
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.gids.insert(gid);
        self
    }

    /// Lets the Unix-socket peer with this process id in.
    pub fn allow_pid(mut self, pid: u32) -> Self {
        self.pids.insert(pid);
        self
    }

    /// Lets the CURVE client with this long-term public key in.
    pub fn allow_curve_key(mut self, key: CurvePublicKey) -> Self {
        self.curve_keys.insert(key);
        self
    }

    /// Lets in the CURVE clients whose public certificates (`*.key`) are in
    /// `dir`, as pyzmq's `configure_curve(location=dir)` does.
    pub fn allow_curve_keys_in(mut self, dir: impl AsRef<Path>) -> Result<Self, Error> {
        self.curve_keys
            .extend(crate::security::load_public_keys(dir)?);
        Ok(self)
    }

    /// A PLAIN user and its password.
    pub fn plain_user(mut self, username: &str, password: &str) -> Self {
        self.plain_users
            .insert(username.to_owned(), Password::from(password));
        self
    }

    /// PLAIN users from a file of `user=password` lines (`#` starts a comment),
    /// the format of czmq's `zauth` password files.
    pub fn plain_users_file(mut self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, password)) = line.split_once('=') else {
                return Err(Error::BadCredentials(format!(
                    "{} line {}: expected user=password",
                    path.display(),
                    n + 1
                )));
            };
            self = self.plain_user(user.trim(), password.trim());
        }
        Ok(self)
    }

    /// Asks `check(user, password)` about PLAIN clients no listed user matches.
    pub fn plain_check(
        mut self,
        check: impl Fn(&str, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.plain_check = Some(Arc::new(check));
        self
    }

    fn check_address(&self, request: &AuthRequest<'_>) -> Result<(), String> {
        let address = &request.peer.address;
        if !self.allow.is_empty() {
            if !self.allow.contains(address) {
                return Err(format!("address {address} is not allowed"));
            }
        } else if self.deny.contains(address) {
            return Err(format!("address {address} is denied"));
        }
        if !(self.uids.is_empty() && self.gids.is_empty() && self.pids.is_empty()) {
            let Some(p) = request.peer.process else {
                return Err("the peer's process credentials are unknown".into());
            };
            if !(self.uids.contains(&p.uid)
                || self.gids.contains(&p.gid)
                || self.pids.contains(&p.pid))
            {
                return Err(format!(
                    "process {} (uid {}, gid {}) is not allowed",
                    p.pid, p.uid, p.gid
                ));
            }
        }
        Ok(())
    }
}

impl Authenticator for AuthPolicy {
    fn authenticate(&self, request: &AuthRequest<'_>) -> Result<Option<String>, String> {
        self.check_address(request)?;
        match request.credentials {
            Credentials::Plain { username, password } => {
                let listed = self
                    .plain_users
                    .get(username)
                    .is_some_and(|p| bool::from(p.as_str().as_bytes().ct_eq(password.as_bytes())));
                let checked = || {
                    self.plain_check
                        .as_ref()
                        .is_some_and(|c| c(username, password))
                };
                if listed || checked() {
                    Ok(Some(username.to_owned()))
                } else {
                    Err("unknown user or wrong password".into())
                }
            }
            Credentials::Curve { client_key } => {
                if self.curve_keys.is_empty() {
                    Ok(None)
                } else if self.curve_keys.contains(&client_key) {
                    Ok(Some(client_key.to_string()))
                } else {
                    Err(format!("client key {client_key} is not allowed"))
                }
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use conduit_proto::{CurveKeyPair, PeerAddress, PeerProcess};

    use super::*;

    fn ask(
        policy: &AuthPolicy,
        address: &str,
        process: Option<PeerProcess>,
        credentials: Credentials<'_>,
    ) -> Result<Option<String>, String> {
        let peer = PeerAddress {
            address: address.into(),
            process,
        };
        policy.authenticate(&AuthRequest {
            mechanism: "TEST",
            peer: &peer,
            credentials,
        })
    }

    const NULL: Credentials<'static> = Credentials::Null;

    #[test]
    fn allow_lists_win_over_deny_lists() {
        let deny = AuthPolicy::new().deny("10.0.0.1");
        assert_eq!(ask(&deny, "10.0.0.2", None, NULL), Ok(None));
        assert_eq!(
            ask(&deny, "10.0.0.1", None, NULL),
            Err("address 10.0.0.1 is denied".into())
        );
        let allow = deny.allow("10.0.0.1");
        assert_eq!(ask(&allow, "10.0.0.1", None, NULL), Ok(None));
        assert!(ask(&allow, "10.0.0.2", None, NULL).is_err());
    }

    #[test]
    fn process_rules_need_credentials() {
        let policy = AuthPolicy::new().allow_gid(7);
        let process = |gid| {
            Some(PeerProcess {
                pid: 1,
                uid: 2,
                gid,
            })
        };
        assert_eq!(ask(&policy, "", process(7), NULL), Ok(None));
        assert_eq!(
            ask(&policy, "", process(8), NULL),
            Err("process 1 (uid 2, gid 8) is not allowed".into())
        );
        assert_eq!(
            ask(&policy, "127.0.0.1", None, NULL),
            Err("the peer's process credentials are unknown".into())
        );
    }

    #[test]
    fn plain_users_from_a_list_a_file_or_a_callback() {
        let dir = std::env::temp_dir().join(format!("conduit-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("users");
        std::fs::write(&file, "# comment\nbob = builder\n").unwrap();
        let policy = AuthPolicy::new()
            .plain_user("alice", "secret")
            .plain_users_file(&file)
            .unwrap()
            .plain_check(|user, password| user == "carol" && password.len() > 3);
        let plain = |username, password| Credentials::Plain { username, password };
        assert_eq!(
            ask(&policy, "", None, plain("alice", "secret")),
            Ok(Some("alice".into()))
        );
        assert_eq!(
            ask(&policy, "", None, plain("bob", "builder")),
            Ok(Some("bob".into()))
        );
        assert_eq!(
            ask(&policy, "", None, plain("carol", "long enough")),
            Ok(Some("carol".into()))
        );
        for (u, p) in [
            ("alice", "secre"),
            ("alice", "secret!"),
            ("carol", "no"),
            ("dave", ""),
        ] {
            assert_eq!(
                ask(&policy, "", None, plain(u, p)),
                Err("unknown user or wrong password".into()),
                "{u}"
            );
        }
        std::fs::write(&file, "no equals sign\n").unwrap();
        assert!(AuthPolicy::new().plain_users_file(&file).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        // No users at all: every PLAIN client is refused.
        assert!(ask(&AuthPolicy::new(), "", None, plain("x", "y")).is_err());
    }

    #[test]
    fn curve_keys_are_checked_only_when_listed() {
        let (known, other) = (
            CurveKeyPair::generate().public,
            CurveKeyPair::generate().public,
        );
        let curve = |client_key| Credentials::Curve { client_key };
        assert_eq!(ask(&AuthPolicy::new(), "", None, curve(other)), Ok(None));
        let policy = AuthPolicy::new().allow_curve_key(known);
        assert_eq!(
            ask(&policy, "", None, curve(known)),
            Ok(Some(known.to_string()))
        );
        assert_eq!(
            ask(&policy, "", None, curve(other)),
            Err(format!("client key {other} is not allowed"))
        );
    }
}
