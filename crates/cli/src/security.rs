//! The security options every socket, `send` and `recv` command takes, and
//! `conduit keygen`.

use std::path::PathBuf;

/// Characters in a CURVE key's Z85 text.
const KEY_Z85_LEN: usize = 40;

use anyhow::{Context, Result, bail};
use clap::Args;
use conduit::{AuthPolicy, Certificate, CurveKeyPair, CurveSecretKey, Mechanism, Security};

/// CURVE, PLAIN and who gets in. Keys are 40 Z85 characters or the path of a
/// certificate file (`*.key`, `*.key_secret`, as `conduit keygen --cert` and
/// pyzmq's `zmq.auth` write them).
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Security")]
pub struct SecurityArgs {
    /// Be a CURVE server, with the key pair of --curve-secret-key
    #[arg(long, requires = "curve_secret_key", conflicts_with_all = ["curve_server_key", "plain_user", "plain_server"])]
    pub curve_server: bool,
    /// Our CURVE public key: checked against the secret key when given
    #[arg(long, value_name = "KEY|FILE")]
    pub curve_public_key: Option<String>,
    /// Our CURVE secret key (a client without one uses a new key pair)
    #[arg(long, value_name = "KEY|FILE")]
    pub curve_secret_key: Option<String>,
    /// Be a CURVE client of the server with this public key
    #[arg(long, value_name = "KEY|FILE", conflicts_with_all = ["plain_user", "plain_server"])]
    pub curve_server_key: Option<String>,
    /// CURVE server: let in only the clients whose public certificates
    /// (`*.key`) are in DIR
    #[arg(long, value_name = "DIR", requires = "curve_server")]
    pub curve_allow: Option<PathBuf>,
    /// Be a PLAIN client with this user name (sent in clear: trusted networks only)
    #[arg(
        long,
        value_name = "USER",
        requires = "plain_password",
        conflicts_with = "plain_server"
    )]
    pub plain_user: Option<String>,
    /// The PLAIN client's password
    #[arg(long, value_name = "PASSWORD", requires = "plain_user")]
    pub plain_password: Option<String>,
    /// Be a PLAIN server, letting in the users of --plain-users
    #[arg(long, requires = "plain_users")]
    pub plain_server: bool,
    /// PLAIN users, one `user=password` per line
    #[arg(long, value_name = "FILE", requires = "plain_server")]
    pub plain_users: Option<PathBuf>,
    /// Let in only peers at ADDR: an IP address, or over ipc the peer
    /// process's uid:N, gid:N or pid:N (repeatable)
    #[arg(long, value_name = "ADDR")]
    pub allow: Vec<String>,
    /// Keep out peers at ADDR (repeatable; ignored with --allow)
    #[arg(long, value_name = "ADDR")]
    pub deny: Vec<String>,
}

impl SecurityArgs {
    /// The security these options ask for; `None`: the default, NULL and
    /// everyone.
    pub fn security(&self) -> Result<Option<Security>> {
        let mechanism = if self.curve_server {
            let keys = self
                .key_pair()?
                .context("--curve-server needs --curve-secret-key")?;
            Mechanism::CurveServer { keys }
        } else if let Some(server) = &self.curve_server_key {
            let server_key = conduit::parse_key(server)
                .with_context(|| format!("bad --curve-server-key {server:?}"))?
                .public;
            Mechanism::CurveClient {
                server_key,
                keys: self.key_pair()?,
            }
        } else if let (Some(user), Some(password)) = (&self.plain_user, &self.plain_password) {
            Mechanism::PlainClient {
                username: user.clone(),
                password: password.as_str().into(),
            }
        } else if self.plain_server {
            Mechanism::PlainServer
        } else {
            if self.curve_secret_key.is_some() || self.curve_public_key.is_some() {
                bail!("a CURVE key needs --curve-server or --curve-server-key");
            }
            Mechanism::Null
        };
        let mut policy = AuthPolicy::new();
        let mut checks = false;
        for addr in &self.allow {
            let id = |prefix: &str| -> Result<Option<u32>> {
                addr.strip_prefix(prefix)
                    .map(|n| n.parse().with_context(|| format!("bad --allow {addr:?}")))
                    .transpose()
            };
            policy = if let Some(uid) = id("uid:")? {
                policy.allow_uid(uid)
            } else if let Some(gid) = id("gid:")? {
                policy.allow_gid(gid)
            } else if let Some(pid) = id("pid:")? {
                policy.allow_pid(pid)
            } else {
                policy.allow(addr)
            };
            checks = true;
        }
        for addr in &self.deny {
            policy = policy.deny(addr);
            checks = true;
        }
        if let Some(dir) = &self.curve_allow {
            policy = policy
                .allow_curve_keys_in(dir)
                .with_context(|| format!("bad --curve-allow {}", dir.display()))?;
            checks = true;
        }
        if let Some(file) = &self.plain_users {
            policy = policy
                .plain_users_file(file)
                .with_context(|| format!("bad --plain-users {}", file.display()))?;
            checks = true;
        }
        if matches!(mechanism, Mechanism::Null) && !checks {
            return Ok(None);
        }
        Ok(Some(Security {
            mechanism,
            authenticator: checks.then(|| std::sync::Arc::new(policy) as _),
        }))
    }

    /// Our key pair from --curve-secret-key, checked against --curve-public-key.
    fn key_pair(&self) -> Result<Option<CurveKeyPair>> {
        let Some(text) = &self.curve_secret_key else {
            return Ok(None);
        };
        let secret = if text.len() == KEY_Z85_LEN && !std::path::Path::new(text).exists() {
            text.parse::<CurveSecretKey>()
                .context("bad --curve-secret-key")?
        } else {
            Certificate::load(text)?
                .secret
                .with_context(|| format!("{text} holds no secret key (use the .key_secret file)"))?
        };
        let keys = CurveKeyPair::from_secret(secret);
        if let Some(public) = &self.curve_public_key {
            let public = conduit::parse_key(public)
                .context("bad --curve-public-key")?
                .public;
            if public != keys.public {
                bail!("--curve-public-key does not belong to --curve-secret-key");
            }
        }
        Ok(Some(keys))
    }
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Also write the pair as certificate files: BASE.key (public) and
    /// BASE.key_secret (secret, mode 0600), as pyzmq's zmq.auth reads them
    #[arg(long, value_name = "BASE")]
    pub cert: Option<PathBuf>,
}

/// `conduit keygen`: prints a new CURVE key pair.
pub fn keygen(args: KeygenArgs) -> Result<crate::Outcome> {
    let pair = CurveKeyPair::generate();
    if let Some(base) = &args.cert {
        Certificate::save(&pair, base)?;
    }
    println!("public-key = \"{}\"", pair.public);
    println!("secret-key = \"{}\"", pair.secret.to_z85());
    Ok(crate::Outcome::Done)
}
