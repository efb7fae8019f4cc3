//! The security options every socket, `send` and `recv` command takes (and
//! each side of `conduit proxy`, with `--front-` or `--back-`), and
//! `conduit keygen`.

use std::path::{Path, PathBuf};

/// Characters in a CURVE key's Z85 text.
const KEY_Z85_LEN: usize = 40;

use anyhow::{Context, Result, bail};
use clap::Args;
use conduit::{AuthPolicy, Certificate, CurveKeyPair, CurveSecretKey, Mechanism, Security};

/// Defines a set of the security options under a flag prefix: `""` for the
/// socket, `send` and `recv` commands, `front-` and `back-` for the two sides
/// of `conduit proxy`. One definition, so the three cannot drift apart; clap
/// IDs carry the prefix too (`front_curve_server`), since a proxy flattens two
/// sets into one command.
macro_rules! security_args {
    ($(#[$doc:meta])* $name:ident, $long:literal, $id:literal, $heading:literal, $whose:literal) => {
        $(#[$doc])*
        #[derive(Debug, Args, Default)]
        #[command(next_help_heading = $heading)]
        pub struct $name {
            #[arg(
                help = concat!("Be a CURVE server, with the key pair of --", $long, "curve-secret-key"),
                id = concat!($id, "curve_server"),
                long = concat!($long, "curve-server"),
                requires = concat!($id, "curve_secret_key"),
                conflicts_with_all = [
                    concat!($id, "curve_server_key"),
                    concat!($id, "plain_user"),
                    concat!($id, "plain_server"),
                ]
            )]
            pub curve_server: bool,
            #[arg(
                help = concat!($whose, " CURVE public key: checked against the secret key when given"),
                id = concat!($id, "curve_public_key"),
                long = concat!($long, "curve-public-key"),
                value_name = "KEY|FILE",
            )]
            pub curve_public_key: Option<String>,
            #[arg(
                help = concat!($whose, " CURVE secret key (a client without one uses a new key pair)"),
                id = concat!($id, "curve_secret_key"),
                long = concat!($long, "curve-secret-key"),
                value_name = "KEY|FILE",
            )]
            pub curve_secret_key: Option<String>,
            /// Be a CURVE client of the server with this public key
            #[arg(
                id = concat!($id, "curve_server_key"),
                long = concat!($long, "curve-server-key"),
                value_name = "KEY|FILE",
                conflicts_with_all = [concat!($id, "plain_user"), concat!($id, "plain_server")]
            )]
            pub curve_server_key: Option<String>,
            /// CURVE server: let in only the clients whose public certificates
            /// (`*.key`) are in DIR
            #[arg(
                id = concat!($id, "curve_allow"),
                long = concat!($long, "curve-allow"),
                value_name = "DIR",
                requires = concat!($id, "curve_server"),
            )]
            pub curve_allow: Option<PathBuf>,
            /// Be a PLAIN client with this user name (sent in clear: trusted networks only)
            #[arg(
                id = concat!($id, "plain_user"),
                long = concat!($long, "plain-user"),
                value_name = "USER",
                requires = concat!($id, "plain_password"),
                conflicts_with = concat!($id, "plain_server"),
            )]
            pub plain_user: Option<String>,
            /// The PLAIN client's password
            #[arg(
                id = concat!($id, "plain_password"),
                long = concat!($long, "plain-password"),
                value_name = "PASSWORD",
                requires = concat!($id, "plain_user"),
            )]
            pub plain_password: Option<String>,
            #[arg(
                help = concat!("Be a PLAIN server, letting in the users of --", $long, "plain-users"),
                id = concat!($id, "plain_server"),
                long = concat!($long, "plain-server"),
                requires = concat!($id, "plain_users"),
            )]
            pub plain_server: bool,
            /// PLAIN users, one `user=password` per line
            #[arg(
                id = concat!($id, "plain_users"),
                long = concat!($long, "plain-users"),
                value_name = "FILE",
                requires = concat!($id, "plain_server"),
            )]
            pub plain_users: Option<PathBuf>,
            /// Let in only peers at ADDR: an IP address, or over ipc the peer
            /// process's uid:N, gid:N or pid:N (repeatable)
            #[arg(
                id = concat!($id, "allow"),
                long = concat!($long, "allow"),
                value_name = "ADDR",
            )]
            pub allow: Vec<String>,
            #[arg(
                help = concat!("Keep out peers at ADDR (repeatable; ignored with --", $long, "allow)"),
                id = concat!($id, "deny"),
                long = concat!($long, "deny"),
                value_name = "ADDR",
            )]
            pub deny: Vec<String>,
        }

        impl $name {
            /// The security these options ask for; `None`: the default, NULL
            /// and everyone.
            pub fn security(&self) -> Result<Option<Security>> {
                Given {
                    flag: $long,
                    curve_server: self.curve_server,
                    curve_public_key: self.curve_public_key.as_deref(),
                    curve_secret_key: self.curve_secret_key.as_deref(),
                    curve_server_key: self.curve_server_key.as_deref(),
                    curve_allow: self.curve_allow.as_deref(),
                    plain_user: self.plain_user.as_deref(),
                    plain_password: self.plain_password.as_deref(),
                    plain_server: self.plain_server,
                    plain_users: self.plain_users.as_deref(),
                    allow: &self.allow,
                    deny: &self.deny,
                }
                .security()
            }
        }
    };
}

security_args!(
    /// CURVE, PLAIN and who gets in. Keys are 40 Z85 characters or the path of
    /// a certificate file (`*.key`, `*.key_secret`, as `conduit keygen --cert`
    /// and pyzmq's `zmq.auth` write them).
    SecurityArgs, "", "", "Security", "Our"
);

security_args!(
    /// The security of a proxy's frontend: the options of the socket commands
    /// with `front-` before each.
    FrontSecurityArgs, "front-", "front_", "Frontend security", "The frontend's"
);

security_args!(
    /// The security of a proxy's backend: the options of the socket commands
    /// with `back-` before each.
    BackSecurityArgs, "back-", "back_", "Backend security", "The backend's"
);

/// One set of security options as given, whichever prefix they came with.
struct Given<'a> {
    /// The prefix of their flags, for error messages: "", "front-", "back-".
    flag: &'static str,
    curve_server: bool,
    curve_public_key: Option<&'a str>,
    curve_secret_key: Option<&'a str>,
    curve_server_key: Option<&'a str>,
    curve_allow: Option<&'a Path>,
    plain_user: Option<&'a str>,
    plain_password: Option<&'a str>,
    plain_server: bool,
    plain_users: Option<&'a Path>,
    allow: &'a [String],
    deny: &'a [String],
}

impl Given<'_> {
    fn security(&self) -> Result<Option<Security>> {
        let p = self.flag;
        let mechanism = if self.curve_server {
            let keys = self
                .key_pair()?
                .with_context(|| format!("--{p}curve-server needs --{p}curve-secret-key"))?;
            Mechanism::CurveServer { keys }
        } else if let Some(server) = self.curve_server_key {
            let server_key = conduit::parse_key(server)
                .with_context(|| format!("bad --{p}curve-server-key {server:?}"))?
                .public;
            Mechanism::CurveClient {
                server_key,
                keys: self.key_pair()?,
            }
        } else if let (Some(user), Some(password)) = (self.plain_user, self.plain_password) {
            Mechanism::PlainClient {
                username: user.to_owned(),
                password: password.into(),
            }
        } else if self.plain_server {
            Mechanism::PlainServer
        } else {
            if self.curve_secret_key.is_some() || self.curve_public_key.is_some() {
                bail!("a CURVE key needs --{p}curve-server or --{p}curve-server-key");
            }
            Mechanism::Null
        };
        let mut policy = AuthPolicy::new();
        let mut checks = false;
        for addr in self.allow {
            let id = |prefix: &str| -> Result<Option<u32>> {
                addr.strip_prefix(prefix)
                    .map(|n| {
                        n.parse()
                            .with_context(|| format!("bad --{p}allow {addr:?}"))
                    })
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
        for addr in self.deny {
            policy = policy.deny(addr);
            checks = true;
        }
        if let Some(dir) = self.curve_allow {
            policy = policy
                .allow_curve_keys_in(dir)
                .with_context(|| format!("bad --{p}curve-allow {}", dir.display()))?;
            checks = true;
        }
        if let Some(file) = self.plain_users {
            policy = policy
                .plain_users_file(file)
                .with_context(|| format!("bad --{p}plain-users {}", file.display()))?;
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
        let p = self.flag;
        let Some(text) = self.curve_secret_key else {
            return Ok(None);
        };
        let secret = if text.len() == KEY_Z85_LEN && !Path::new(text).exists() {
            text.parse::<CurveSecretKey>()
                .with_context(|| format!("bad --{p}curve-secret-key"))?
        } else {
            Certificate::load(text)?
                .secret
                .with_context(|| format!("{text} holds no secret key (use the .key_secret file)"))?
        };
        let keys = CurveKeyPair::from_secret(secret);
        if let Some(public) = self.curve_public_key {
            let public = conduit::parse_key(public)
                .with_context(|| format!("bad --{p}curve-public-key"))?
                .public;
            if public != keys.public {
                bail!("--{p}curve-public-key does not belong to --{p}curve-secret-key");
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
