//! The 64-byte greeting both peers send first (ZMTP 3.1, "Formal Grammar").
//!
//! | offset | len | field |
//! |---|---|---|
//! | 0 | 1 | `0xFF` |
//! | 1 | 8 | padding (not significant) |
//! | 9 | 1 | `0x7F` |
//! | 10 | 1 | major version |
//! | 11 | 1 | minor version |
//! | 12 | 20 | mechanism, NUL-padded |
//! | 32 | 1 | as-server |
//! | 33 | 31 | filler |

use crate::error::ProtocolError;

/// Length of a ZMTP 3 greeting.
pub const GREETING_LEN: usize = 64;

const MECHANISM: std::ops::Range<usize> = 12..32;
const AS_SERVER: usize = 32;

/// What a peer's greeting told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    /// Major version (3 for every peer we accept, or higher).
    pub major: u8,
    /// Minor version: 0 for a ZMTP 3.0 peer, 1 or more for 3.1.
    pub minor: u8,
}

impl Greeting {
    /// Whether the peer speaks ZMTP 3.1 or later, and so understands the SUBSCRIBE,
    /// CANCEL, PING and PONG commands.
    pub fn is_3_1(&self) -> bool {
        self.major > 3 || self.minor >= 1
    }

    /// Our own greeting: ZMTP 3.1, NULL mechanism, zero padding and filler.
    pub fn ours() -> [u8; GREETING_LEN] {
        Greeting::ours_for("NULL", false)
    }

    /// Our greeting for a mechanism (`NULL`, `PLAIN`, `CURVE`: at most 20
    /// bytes) and role.
    pub fn ours_for(mechanism: &str, as_server: bool) -> [u8; GREETING_LEN] {
        let mut g = [0u8; GREETING_LEN];
        g[0] = 0xFF;
        g[9] = 0x7F;
        g[10] = 3;
        g[11] = 1;
        let name = &mechanism.as_bytes()[..mechanism.len().min(MECHANISM.len())];
        g[MECHANISM.start..MECHANISM.start + name.len()].copy_from_slice(name);
        g[AS_SERVER] = u8::from(as_server);
        g
    }

    /// Checks as much of a peer's greeting as has arrived, failing as early as the
    /// bytes allow: byte 0 rules out most non-ZMTP peers (an HTTP request fails on its
    /// first byte), byte 10 an older ZMTP.
    ///
    /// Returns `Ok(None)` until all 64 bytes are there.
    pub fn parse(src: &[u8]) -> Result<Option<Greeting>, ProtocolError> {
        Ok(Greeting::parse_for(src, "NULL")?.map(|(g, _)| g))
    }

    /// As [`parse`](Self::parse), for a peer that must use `mechanism`; also
    /// returns the peer's as-server flag.
    pub fn parse_for(
        src: &[u8],
        mechanism_name: &str,
    ) -> Result<Option<(Greeting, bool)>, ProtocolError> {
        let expect = |offset: usize, expected: u8| match src.get(offset) {
            Some(&found) if found != expected => Err(ProtocolError::BadSignature {
                offset,
                found,
                expected,
            }),
            _ => Ok(()),
        };
        expect(0, 0xFF)?;
        // ZMTP 1.0 peers have a length here with bit 0 clear; 2.0 and 3.x send 0x7F.
        expect(9, 0x7F)?;
        if let Some(&major) = src.get(10) {
            if major < 3 {
                return Err(ProtocolError::UnsupportedVersion { major });
            }
        }
        if src.len() < GREETING_LEN {
            return Ok(None);
        }
        let mechanism = &src[MECHANISM];
        let name_end = mechanism
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(mechanism.len());
        if &mechanism[..name_end] != mechanism_name.as_bytes()
            || mechanism[name_end..].iter().any(|&b| b != 0)
        {
            return Err(ProtocolError::MechanismMismatch {
                peer: String::from_utf8_lossy(&mechanism[..name_end])
                    .chars()
                    .filter(|c| !c.is_control())
                    .collect(),
            });
        }
        // as-server must be 0 for NULL; libzmq ignores it there, and so do we.
        Ok(Some((
            Greeting {
                major: src[10],
                minor: src[11],
            },
            src[AS_SERVER] != 0,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [u8; 64] = [
        0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x7F, 3, 1, b'N', b'U', b'L', b'L', 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn our_greeting_wire_bytes() {
        assert_eq!(Greeting::ours(), OURS);
    }

    #[test]
    fn accepts_3_0_3_1_and_later_with_any_padding() {
        for (major, minor, is_3_1) in [(3, 0, false), (3, 1, true), (3, 7, true), (4, 0, true)] {
            let mut g = OURS;
            g[1..9].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
            g[10] = major;
            g[11] = minor;
            let parsed = Greeting::parse(&g).unwrap().unwrap();
            assert_eq!(
                (parsed.major, parsed.minor, parsed.is_3_1()),
                (major, minor, is_3_1)
            );
        }
    }

    #[test]
    fn incomplete_greeting_is_not_an_error_at_any_length() {
        for n in 0..GREETING_LEN {
            assert_eq!(Greeting::parse(&OURS[..n]), Ok(None), "{n} bytes");
        }
    }

    #[test]
    fn http_fails_on_the_first_byte() {
        assert_eq!(
            Greeting::parse(b"G"),
            Err(ProtocolError::BadSignature {
                offset: 0,
                found: b'G',
                expected: 0xFF
            })
        );
    }

    #[test]
    fn zmtp_1_and_2_are_refused_early() {
        // ZMTP 1.0 long-form length: 0xFF, 8-byte length with bit 0 of byte 9 clear.
        let zmtp1 = [0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0x02];
        assert!(matches!(
            Greeting::parse(&zmtp1),
            Err(ProtocolError::BadSignature { offset: 9, .. })
        ));
        // ZMTP 2.0: revision 1 at byte 10.
        let zmtp2 = [0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 0x7F, 1];
        assert_eq!(
            Greeting::parse(&zmtp2),
            Err(ProtocolError::UnsupportedVersion { major: 1 })
        );
    }

    #[test]
    fn older_versions_are_named_for_the_log() {
        // Byte 10 is ZMTP 2.0's revision: 1 means 2.0, not "1.x".
        let named = |major| ProtocolError::UnsupportedVersion { major }.to_string();
        assert_eq!(named(1), "peer speaks ZMTP 2.0; conduit needs 3.0 or later");
        assert_eq!(named(0), "peer speaks ZMTP 1.0; conduit needs 3.0 or later");
        assert_eq!(
            named(2),
            "peer speaks a ZMTP older than 3.0 (version byte 2); conduit needs 3.0 or later"
        );
    }

    #[test]
    fn other_mechanisms_are_a_mismatch() {
        for mech in [&b"PLAIN"[..], b"CURVE", b"NULLX", b""] {
            let mut g = OURS;
            g[12..32].fill(0);
            g[12..12 + mech.len()].copy_from_slice(mech);
            assert!(
                matches!(
                    Greeting::parse(&g),
                    Err(ProtocolError::MechanismMismatch { .. })
                ),
                "{mech:?}"
            );
        }
        // Garbage after the NUL padding is not NULL either.
        let mut g = OURS;
        g[20] = b'X';
        assert!(Greeting::parse(&g).is_err());
    }
}
