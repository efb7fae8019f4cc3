//! PLAIN (RFC 24): the client sends a user name and password in clear, the
//! server checks them.
//!
//! ```text
//! C: HELLO (username, password)     S: WELCOME
//! C: INITIATE (metadata)            S: READY (metadata)
//! ```
//! The server may answer HELLO or INITIATE with ERROR instead.

use bytes::Bytes;

use super::{Context, Credentials, Done, Password, push_command, split_command, unexpected};
use crate::error::ProtocolError;
use crate::properties::Properties;
use crate::send_buffer::SendBuffer;

fn malformed(command: &str, reason: &'static str) -> ProtocolError {
    ProtocolError::MalformedCommand {
        command: command.into(),
        reason,
    }
}

#[derive(Debug)]
pub(crate) enum PlainClient {
    ExpectWelcome,
    ExpectReady,
}

impl PlainClient {
    /// Queues HELLO with the user name and password.
    pub(crate) fn start(username: &str, password: &Password, out: &mut SendBuffer) {
        // RFC 24: each is a short string, 0-255 bytes; longer ones are cut.
        let user = &username.as_bytes()[..username.len().min(255)];
        let pass = &password.as_str().as_bytes()[..password.as_str().len().min(255)];
        push_command(
            out,
            b"HELLO",
            &[&[user.len() as u8], user, &[pass.len() as u8], pass],
        );
    }

    pub(crate) fn handle(
        &mut self,
        body: Bytes,
        ctx: &Context<'_>,
        out: &mut SendBuffer,
    ) -> Result<Option<Done>, ProtocolError> {
        let (name, data) = split_command(&body)?;
        match (&*self, &name[..]) {
            (PlainClient::ExpectWelcome, b"WELCOME") => {
                if !data.is_empty() {
                    return Err(malformed("WELCOME", "WELCOME carries no data"));
                }
                let mut metadata = bytes::BytesMut::new();
                ctx.metadata.encode(&mut metadata);
                push_command(out, b"INITIATE", &[&metadata]);
                *self = PlainClient::ExpectReady;
                Ok(None)
            }
            (PlainClient::ExpectReady, b"READY") => Ok(Some(Done {
                properties: Properties::parse(data)?,
                user_id: None,
                cipher: None,
            })),
            (PlainClient::ExpectWelcome, _) => Err(unexpected("WELCOME", &name, &data)),
            (PlainClient::ExpectReady, _) => Err(unexpected("READY", &name, &data)),
        }
    }
}

#[derive(Debug)]
pub(crate) enum PlainServer {
    ExpectHello,
    ExpectInitiate { user_id: Option<String> },
}

impl PlainServer {
    pub(crate) fn handle(
        &mut self,
        body: Bytes,
        ctx: &Context<'_>,
        out: &mut SendBuffer,
    ) -> Result<Option<Done>, ProtocolError> {
        let (name, data) = split_command(&body)?;
        match (&mut *self, &name[..]) {
            (PlainServer::ExpectHello, b"HELLO") => {
                let (username, password) = parse_hello(&data)?;
                let user_id = ctx.security.authenticate(
                    ctx.peer,
                    Credentials::Plain {
                        username: &username,
                        password: password.as_str(),
                    },
                )?;
                push_command(out, b"WELCOME", &[]);
                *self = PlainServer::ExpectInitiate { user_id };
                Ok(None)
            }
            (PlainServer::ExpectInitiate { user_id }, b"INITIATE") => {
                let properties = Properties::parse(data)?;
                let mut metadata = bytes::BytesMut::new();
                ctx.metadata.encode(&mut metadata);
                push_command(out, b"READY", &[&metadata]);
                Ok(Some(Done {
                    properties,
                    user_id: user_id.take(),
                    cipher: None,
                }))
            }
            (PlainServer::ExpectHello, _) => Err(unexpected("HELLO", &name, &data)),
            (PlainServer::ExpectInitiate { .. }, _) => Err(unexpected("INITIATE", &name, &data)),
        }
    }
}

/// HELLO's data: `username-size (1) | username | password-size (1) | password`.
fn parse_hello(data: &[u8]) -> Result<(String, Password), ProtocolError> {
    let short = |at: usize| -> Result<(&[u8], usize), ProtocolError> {
        let len = usize::from(
            *data
                .get(at)
                .ok_or(malformed("HELLO", "truncated before a length"))?,
        );
        let field = data
            .get(at + 1..at + 1 + len)
            .ok_or(malformed("HELLO", "a field runs past the end"))?;
        Ok((field, at + 1 + len))
    };
    let (user, at) = short(0)?;
    let (pass, end) = short(at)?;
    if end != data.len() {
        return Err(malformed("HELLO", "bytes after the password"));
    }
    let text =
        |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| malformed("HELLO", "not UTF-8 text"));
    Ok((text(user)?, Password::from(text(pass)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_fields() {
        let (u, p) = parse_hello(b"\x05alice\x06secret").unwrap();
        assert_eq!((u.as_str(), p.as_str()), ("alice", "secret"));
        for bad in [
            &b""[..],
            b"\x05ali",
            b"\x05alice",
            b"\x05alice\x06sec",
            b"\x01a\x01bX",
        ] {
            assert!(
                matches!(
                    parse_hello(bad),
                    Err(ProtocolError::MalformedCommand { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn libzmq_plain_error_with_its_misencoded_name_is_an_error() {
        // What libzmq 4.3.5's PLAIN server sends for a wrong password.
        let mut client = PlainClient::ExpectWelcome;
        let security = super::super::Security::default();
        let ctx = Context {
            security: &security,
            peer: &Default::default(),
            metadata: &Properties::new(),
        };
        let body = Bytes::from_static(b"\x5eRROR\x03400");
        assert_eq!(
            client
                .handle(body, &ctx, &mut SendBuffer::new())
                .unwrap_err(),
            ProtocolError::PeerError("400".into())
        );
    }

    #[test]
    fn client_hello_wire_bytes() {
        let mut out = SendBuffer::new();
        PlainClient::start("admin", &Password::from("secret"), &mut out);
        assert_eq!(out.to_vec(), b"\x04\x13\x05HELLO\x05admin\x06secret");
    }
}
