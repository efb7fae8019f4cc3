//! Z85, the printable encoding of CURVE keys (ZeroMQ RFC 32/Z85).
//!
//! Four bytes become five characters from an 85-character alphabet that needs no
//! quoting in source code, JSON or a certificate file; a 32-byte key is 40
//! characters.

use std::fmt;

const ALPHABET: &[u8; 85] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Why a Z85 text or byte string could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Z85Error {
    /// Z85 encodes only whole groups of 4 bytes (RFC 32, "Encoding").
    #[error("Z85 encodes multiples of 4 bytes, not {0}")]
    BadByteLength(usize),
    /// Z85 text comes in whole groups of 5 characters.
    #[error("Z85 text has a multiple of 5 characters, not {0}")]
    BadTextLength(usize),
    /// A character outside the Z85 alphabet.
    #[error("{0:?} is not a Z85 character")]
    BadCharacter(char),
    /// Five characters whose value does not fit in 32 bits.
    #[error("Z85 group {0:?} is out of range")]
    Overflow(String),
}

/// Encodes `bytes` (a multiple of 4 long) as Z85 text.
///
/// ```
/// // The test vector of RFC 32.
/// let text = conduit_proto::z85::encode(&[0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
/// assert_eq!(text.unwrap(), "HelloWorld");
/// ```
pub fn encode(bytes: &[u8]) -> Result<String, Z85Error> {
    if bytes.len() % 4 != 0 {
        return Err(Z85Error::BadByteLength(bytes.len()));
    }
    let mut out = String::with_capacity(bytes.len() / 4 * 5);
    for group in bytes.chunks_exact(4) {
        let mut value = u32::from_be_bytes(group.try_into().expect("4 bytes"));
        let mut chars = [0u8; 5];
        for c in chars.iter_mut().rev() {
            *c = ALPHABET[(value % 85) as usize];
            value /= 85;
        }
        out.extend(chars.iter().map(|&c| c as char));
    }
    Ok(out)
}

/// Decodes Z85 text (a multiple of 5 characters long).
///
/// ```
/// let bytes = conduit_proto::z85::decode("HelloWorld").unwrap();
/// assert_eq!(bytes, [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B]);
/// ```
pub fn decode(text: &str) -> Result<Vec<u8>, Z85Error> {
    let text = text.as_bytes();
    if text.len() % 5 != 0 {
        return Err(Z85Error::BadTextLength(text.len()));
    }
    let mut out = Vec::with_capacity(text.len() / 5 * 4);
    for group in text.chunks_exact(5) {
        let mut value: u64 = 0;
        for &c in group {
            let digit = ALPHABET
                .iter()
                .position(|&a| a == c)
                .ok_or(Z85Error::BadCharacter(c as char))?;
            value = value * 85 + digit as u64;
        }
        let value = u32::try_from(value)
            .map_err(|_| Z85Error::Overflow(String::from_utf8_lossy(group).into_owned()))?;
        out.extend_from_slice(&value.to_be_bytes());
    }
    Ok(out)
}

/// Writes `bytes` as Z85 to a formatter, for `Display` impls of keys.
pub(crate) fn display(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match encode(bytes) {
        Ok(text) => f.write_str(&text),
        Err(_) => Err(fmt::Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_32_test_vector() {
        let bytes = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&bytes).unwrap(), "HelloWorld");
        assert_eq!(decode("HelloWorld").unwrap(), bytes);
    }

    #[test]
    fn libzmq_test_keys() {
        // The key pair in libzmq's and pyzmq's CURVE tests (curve_keygen output):
        // the public key is the X25519 base-point multiple of the secret one.
        let public = decode("Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID").unwrap();
        let secret = decode("D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs").unwrap();
        let derived = crypto_box::SecretKey::from_slice(&secret)
            .unwrap()
            .public_key();
        assert_eq!(derived.as_bytes()[..], public[..]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(encode(&[1, 2, 3]), Err(Z85Error::BadByteLength(3)));
        assert_eq!(decode("Hello1"), Err(Z85Error::BadTextLength(6)));
        assert_eq!(decode("Hell\""), Err(Z85Error::BadCharacter('"')));
        assert_eq!(decode("#####"), Err(Z85Error::Overflow("#####".into())));
        assert_eq!(encode(&[0xFF; 4]).unwrap(), "%nSc0");
        assert_eq!(decode("%nSc0").unwrap(), [0xFF; 4]);
    }

    proptest! {
        #[test]
        fn round_trip(words in proptest::collection::vec(any::<[u8; 4]>(), 0..20)) {
            let bytes: Vec<u8> = words.concat();
            let text = encode(&bytes).unwrap();
            prop_assert_eq!(text.len(), bytes.len() / 4 * 5);
            prop_assert_eq!(decode(&text).unwrap(), bytes);
        }
    }
}
