//! Commands: `name-length (1) | name | data` in a command frame (ZMTP 3.1, "Commands").

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;
use crate::frame::put_frame;
use crate::properties::Properties;

/// The longest PING context (ZMTP 3.1, "Connection Heartbeating").
pub const MAX_PING_CONTEXT: usize = 16;

/// A ZMTP command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Ends the NULL handshake, carrying the sender's metadata.
    Ready(Properties),
    /// The sender gives up on the connection, with a reason for the log.
    Error(String),
    /// Heartbeat request: answer with PONG carrying the same context.
    Ping {
        /// How long, in tenths of a second, the receiver may wait for traffic
        /// before deciding the sender is gone (0: no opinion).
        ttl: u16,
        /// Opaque bytes to echo back, at most 16.
        context: Bytes,
    },
    /// Heartbeat reply.
    Pong {
        /// The context of the PING being answered.
        context: Bytes,
    },
    /// A subscriber subscribes to messages starting with these bytes.
    Subscribe(Bytes),
    /// A subscriber cancels one earlier subscription to these bytes.
    Cancel(Bytes),
    /// A command this implementation does not know; ZMTP says to ignore it.
    Unknown {
        /// Its name.
        name: Bytes,
    },
}

fn malformed(command: &str, reason: &'static str) -> ProtocolError {
    ProtocolError::MalformedCommand {
        command: command.into(),
        reason,
    }
}

impl Command {
    /// The command's wire name.
    pub fn name(&self) -> &str {
        match self {
            Command::Ready(_) => "READY",
            Command::Error(_) => "ERROR",
            Command::Ping { .. } => "PING",
            Command::Pong { .. } => "PONG",
            Command::Subscribe(_) => "SUBSCRIBE",
            Command::Cancel(_) => "CANCEL",
            Command::Unknown { name } => std::str::from_utf8(name).unwrap_or("(unknown)"),
        }
    }

    /// Parses a command frame's body.
    pub fn parse(mut body: Bytes) -> Result<Command, ProtocolError> {
        if !body.has_remaining() {
            return Err(malformed("unnamed", "empty command frame"));
        }
        let name_len = usize::from(body.get_u8());
        if name_len == 0 {
            return Err(malformed("unnamed", "command name is empty"));
        }
        if body.remaining() < name_len {
            return Err(malformed("unnamed", "command name runs past the end"));
        }
        let name = body.split_to(name_len);
        let mut data = body;
        Ok(match &name[..] {
            b"READY" => Command::Ready(Properties::parse(data)?),
            b"ERROR" => {
                // error = ... error-reason; error-reason = short-size 0*255VCHAR.
                // Take what is there even if the length lies: the peer is leaving anyway
                // and the reason is only for the log.
                let reason = if data.has_remaining() {
                    let len = usize::from(data.get_u8()).min(data.remaining());
                    String::from_utf8_lossy(&data[..len]).into_owned()
                } else {
                    String::new()
                };
                Command::Error(reason)
            }
            b"PING" => {
                if data.remaining() < 2 {
                    return Err(malformed("PING", "missing the 2-byte TTL"));
                }
                let ttl = data.get_u16();
                if data.remaining() > MAX_PING_CONTEXT {
                    return Err(malformed("PING", "context longer than 16 bytes"));
                }
                Command::Ping { ttl, context: data }
            }
            b"PONG" => {
                if data.remaining() > MAX_PING_CONTEXT {
                    return Err(malformed("PONG", "context longer than 16 bytes"));
                }
                Command::Pong { context: data }
            }
            b"SUBSCRIBE" => Command::Subscribe(data),
            b"CANCEL" => Command::Cancel(data),
            _ => Command::Unknown { name },
        })
    }

    /// Appends the whole command frame, header included, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let mut body = BytesMut::new();
        // An unknown command's name need not be UTF-8: send its own bytes, not the
        // printable stand-in that `name` gives.
        let name = match self {
            Command::Unknown { name } => &name[..],
            _ => self.name().as_bytes(),
        };
        body.put_u8(name.len() as u8);
        body.put_slice(name);
        match self {
            Command::Ready(props) => props.encode(&mut body),
            Command::Error(reason) => {
                // At most 255 bytes, cut on a character boundary so it stays UTF-8.
                let mut len = reason.len().min(255);
                while !reason.is_char_boundary(len) {
                    len -= 1;
                }
                let reason = &reason.as_bytes()[..len];
                body.put_u8(reason.len() as u8);
                body.put_slice(reason);
            }
            Command::Ping { ttl, context } => {
                body.put_u16(*ttl);
                body.put_slice(&context[..context.len().min(MAX_PING_CONTEXT)]);
            }
            Command::Pong { context } => {
                body.put_slice(&context[..context.len().min(MAX_PING_CONTEXT)])
            }
            Command::Subscribe(topic) | Command::Cancel(topic) => body.put_slice(topic),
            Command::Unknown { .. } => {}
        }
        put_frame(out, false, true, &body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::properties::SOCKET_TYPE;

    fn wire(cmd: &Command) -> Vec<u8> {
        let mut out = BytesMut::new();
        cmd.encode(&mut out);
        out.to_vec()
    }

    fn body_of(frame: &[u8]) -> Bytes {
        // These fixtures are short frames: flags, size, body.
        Bytes::copy_from_slice(&frame[2..])
    }

    #[test]
    fn ready_wire_bytes() {
        let mut props = Properties::new();
        props.insert(SOCKET_TYPE, "PAIR").unwrap();
        let cmd = Command::Ready(props);
        let expected = b"\x04\x1a\x05READY\x0bSocket-Type\x00\x00\x00\x04PAIR";
        assert_eq!(wire(&cmd), expected);
        assert_eq!(Command::parse(body_of(expected)).unwrap(), cmd);
    }

    #[test]
    fn ping_pong_subscribe_cancel_error_wire_bytes() {
        let cases = [
            (
                Command::Ping {
                    ttl: 300,
                    context: Bytes::from_static(b"ab"),
                },
                &b"\x04\x09\x04PING\x01\x2cab"[..],
            ),
            (
                Command::Pong {
                    context: Bytes::from_static(b"ab"),
                },
                b"\x04\x07\x04PONGab",
            ),
            (
                Command::Subscribe(Bytes::from_static(b"A")),
                b"\x04\x0b\x09SUBSCRIBEA",
            ),
            (Command::Cancel(Bytes::new()), b"\x04\x07\x06CANCEL"),
            (Command::Error("no".into()), b"\x04\x09\x05ERROR\x02no"),
        ];
        for (cmd, bytes) in cases {
            assert_eq!(wire(&cmd), bytes, "{cmd:?}");
            assert_eq!(Command::parse(body_of(bytes)).unwrap(), cmd);
        }
    }

    #[test]
    fn unknown_commands_parse_so_they_can_be_ignored() {
        let cmd = Command::parse(Bytes::from_static(b"\x04JOINgroup")).unwrap();
        assert_eq!(
            cmd,
            Command::Unknown {
                name: Bytes::from_static(b"JOIN")
            }
        );
    }

    #[test]
    fn unknown_command_with_a_non_utf8_name_keeps_its_name() {
        // Found by the `command` fuzz target: the name was re-encoded as "(unknown)".
        let body = Bytes::from_static(b"\x05R\xe7\xe7\xe7\xe7E");
        let cmd = Command::parse(body).unwrap();
        assert_eq!(
            cmd,
            Command::Unknown {
                name: Bytes::from_static(b"R\xe7\xe7\xe7\xe7")
            }
        );
        assert_eq!(wire(&cmd), b"\x04\x06\x05R\xe7\xe7\xe7\xe7");
        assert_eq!(Command::parse(body_of(&wire(&cmd))).unwrap(), cmd);
    }

    #[test]
    fn a_long_error_reason_is_cut_on_a_character_boundary() {
        // Found by the `command` fuzz target: invalid UTF-8 in a peer's reason grows
        // to 3 bytes per byte as U+FFFD, and encode cut the reason at 255 bytes in
        // the middle of a character, sending bytes that are not UTF-8.
        let body = Bytes::from_static(
            b"\x05ERROR\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\
              \x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\
              \x88\x88\x88\x01\x00\x00\x00\x00\x01\x01\x18\x88\x88\x88\x88\x88\
              \x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\
              \x88\x88\xff\xff\xff\xff\xff\xff\xff\xff\x88\x88\x88\x88\x88\x88\
              \x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\
              \x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\
              \x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x88\x0f\
              \xff\x09SUS",
        );
        let cmd = Command::parse(body).unwrap();
        let Command::Error(reason) = &cmd else {
            panic!("{cmd:?}")
        };
        assert!(reason.len() > 255);
        let sent = wire(&cmd);
        assert_eq!(sent[0], 0x06, "a long command frame");
        let Command::Error(received) = Command::parse(Bytes::copy_from_slice(&sent[9..])).unwrap()
        else {
            panic!("not an ERROR")
        };
        assert!(received.len() > 255 - 4 && received.len() <= 255);
        assert!(reason.starts_with(&received), "{received:?}");
    }

    #[test]
    fn malformed_commands() {
        let cases: [&[u8]; 6] = [
            b"",
            b"\x00",
            b"\x09SHORT",
            b"\x04PING\x01",
            b"\x04PING\x00\x00seventeen bytes!!",
            b"\x04PONGseventeen bytes!!",
        ];
        for case in cases {
            let err = Command::parse(Bytes::from_static(case)).unwrap_err();
            assert!(
                matches!(err, ProtocolError::MalformedCommand { .. }),
                "{case:?}"
            );
        }
    }

    #[test]
    fn error_with_a_lying_length_keeps_what_is_there() {
        let cmd = Command::parse(Bytes::from_static(b"\x05ERROR\xffbye")).unwrap();
        assert_eq!(cmd, Command::Error("bye".into()));
    }
}
