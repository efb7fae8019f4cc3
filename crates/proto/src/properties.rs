//! Connection metadata carried by READY (ZMTP 3.1, "The NULL Security Mechanism").
//!
//! `property = name-length (1) | name | value-length (4, big-endian) | value`

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// The property naming the sender's socket type.
pub const SOCKET_TYPE: &str = "Socket-Type";
/// The property carrying the sender's identity (for ROUTER peers).
pub const IDENTITY: &str = "Identity";
/// The property naming the implementation, which conduit sends as `conduit`
/// (ZMTP 3.1 lets implementations add properties; libzmq sends none). It lets a
/// conduit peer skip workarounds meant for other implementations.
pub const IMPLEMENTATION: &str = "Implementation";

/// ZMTP 3.1: a value is at most 2^31-1 bytes.
const MAX_VALUE_LEN: u32 = i32::MAX as u32;

/// An ordered list of named properties; names compare without regard to case.
///
/// ```
/// use conduit_proto::Properties;
/// let mut props = Properties::new();
/// props.insert("Socket-Type", "PAIR").unwrap();
/// props.insert("X-Service", "weather").unwrap();
/// assert_eq!(props.get("socket-type").unwrap(), "PAIR");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    entries: Vec<(String, Bytes)>,
}

/// A property name that ZMTP does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid property name {0:?}: must be 1-255 characters of A-Z, a-z, 0-9, '-', '_', '.', '+'"
)]
pub struct InvalidPropertyName(pub String);

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'+')
}

fn valid_name(name: &[u8]) -> bool {
    (1..=255).contains(&name.len()) && name.iter().copied().all(is_name_char)
}

impl Properties {
    /// No properties.
    pub fn new() -> Properties {
        Properties::default()
    }

    /// Sets `name` to `value`, replacing an existing property of the same name.
    pub fn insert(
        &mut self,
        name: &str,
        value: impl Into<Bytes>,
    ) -> Result<(), InvalidPropertyName> {
        if !valid_name(name.as_bytes()) {
            return Err(InvalidPropertyName(name.to_owned()));
        }
        let value = value.into();
        match self
            .entries
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name.to_owned(), value)),
        }
        Ok(())
    }

    /// The value of `name`, compared without regard to case.
    pub fn get(&self, name: &str) -> Option<&Bytes> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The properties in the order they were received or inserted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the wire form of every property to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        for (name, value) in &self.entries {
            out.reserve(1 + name.len() + 4 + value.len());
            out.put_u8(name.len() as u8);
            out.put_slice(name.as_bytes());
            out.put_u32(value.len() as u32);
            out.put_slice(value);
        }
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(n, v)| 5 + n.len() + v.len())
            .sum()
    }

    /// Parses the metadata part of a READY command.
    ///
    /// Every length is checked against the bytes actually present, so a lying
    /// length can neither allocate nor read past the end.
    pub fn parse(mut data: Bytes) -> Result<Properties, ProtocolError> {
        let malformed = |reason| ProtocolError::MalformedCommand {
            command: "READY".into(),
            reason,
        };
        let mut props = Properties::new();
        while data.has_remaining() {
            let name_len = usize::from(data.get_u8());
            if name_len == 0 {
                return Err(malformed("property name is empty"));
            }
            if data.remaining() < name_len {
                return Err(malformed("property name runs past the end"));
            }
            let name = data.split_to(name_len);
            if !valid_name(&name) {
                return Err(malformed(
                    "property name has characters ZMTP does not allow",
                ));
            }
            if data.remaining() < 4 {
                return Err(malformed("property value length runs past the end"));
            }
            let value_len = data.get_u32();
            if value_len > MAX_VALUE_LEN {
                return Err(malformed("property value longer than 2^31-1 bytes"));
            }
            if data.remaining() < value_len as usize {
                return Err(malformed("property value runs past the end"));
            }
            let value = data.split_to(value_len as usize);
            // valid_name checked the bytes are ASCII.
            let name = String::from_utf8(name.to_vec()).expect("ASCII name");
            props.entries.push((name, value));
        }
        Ok(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_bytes_of_socket_type_and_identity() {
        let mut props = Properties::new();
        props.insert(SOCKET_TYPE, "REQ").unwrap();
        props.insert(IDENTITY, "").unwrap();
        let mut out = BytesMut::new();
        props.encode(&mut out);
        let expected: &[u8] = b"\x0bSocket-Type\x00\x00\x00\x03REQ\x08Identity\x00\x00\x00\x00";
        assert_eq!(&out[..], expected);
        assert_eq!(props.encoded_len(), expected.len());
        assert_eq!(Properties::parse(out.freeze()).unwrap(), props);
    }

    #[test]
    fn names_are_case_insensitive_and_insert_replaces() {
        let mut props = Properties::new();
        props.insert("X-Thing", "a").unwrap();
        props.insert("x-thing", "b").unwrap();
        assert_eq!(props.len(), 1);
        assert_eq!(props.get("X-THING").unwrap(), "b");
    }

    #[test]
    fn invalid_names_are_refused() {
        let mut props = Properties::new();
        assert!(props.insert("", "x").is_err());
        assert!(props.insert("has space", "x").is_err());
        assert!(props.insert(&"a".repeat(256), "x").is_err());
        assert!(props.insert(&"a".repeat(255), "x").is_ok());
    }

    #[test]
    fn lying_lengths_are_malformed() {
        let cases: [&[u8]; 6] = [
            b"\x00",                         // empty name
            b"\x05abc",                      // name past the end
            b"\x03abc\x00\x00",              // value length truncated
            b"\x03abc\x00\x00\x00\x09short", // value past the end
            b"\x03abc\xff\xff\xff\xff",      // value over 2^31-1
            b"\x03a b\x00\x00\x00\x00",      // bad name character
        ];
        for case in cases {
            let err = Properties::parse(Bytes::from_static(case)).unwrap_err();
            assert!(
                matches!(err, ProtocolError::MalformedCommand { .. }),
                "{case:?}: {err}"
            );
        }
    }
}
