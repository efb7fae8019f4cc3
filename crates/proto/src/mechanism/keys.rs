//! CURVE keys: long-term public and secret keys, printable as Z85.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::z85::{self, Z85Error};

/// Bytes in a CURVE (X25519) key.
pub const KEY_LEN: usize = 32;

/// Characters in a key's Z85 text.
pub const KEY_Z85_LEN: usize = 40;

/// Why a key's text or bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not 40 characters of Z85 (or 32 bytes).
    #[error("a CURVE key is 40 Z85 characters, not {0}")]
    BadLength(usize),
    /// The text is not Z85.
    #[error("not a Z85 key: {0}")]
    Z85(#[from] Z85Error),
}

fn key_bytes(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let text = text.trim();
    if text.len() != KEY_Z85_LEN {
        return Err(KeyError::BadLength(text.len()));
    }
    let bytes = z85::decode(text)?;
    Ok(bytes.try_into().expect("40 Z85 characters are 32 bytes"))
}

/// A CURVE public key: a server's, which clients must know, or a client's, which
/// a server may check against a list.
///
/// ```
/// use conduit_proto::CurvePublicKey;
///
/// let key: CurvePublicKey = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID".parse()?;
/// assert_eq!(key.to_string(), "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID");
/// # Ok::<(), conduit_proto::KeyError>(())
/// ```
#[derive(Clone, Copy, Eq)]
pub struct CurvePublicKey(pub [u8; KEY_LEN]);

impl CurvePublicKey {
    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Compared in constant time: an allow list must not tell, by how long it takes
/// to refuse a key, how much of it was right.
impl PartialEq for CurvePublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for CurvePublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl std::str::FromStr for CurvePublicKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        key_bytes(text).map(CurvePublicKey)
    }
}

impl fmt::Display for CurvePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        z85::display(&self.0, f)
    }
}

impl fmt::Debug for CurvePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurvePublicKey({self})")
    }
}

/// A CURVE secret key. Zeroized when dropped; never printed by `Debug`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct CurveSecretKey([u8; KEY_LEN]);

impl CurveSecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> CurveSecretKey {
        CurveSecretKey(bytes)
    }

    /// The key's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key as Z85 text, for a certificate file.
    pub fn to_z85(&self) -> String {
        z85::encode(&self.0).expect("32 bytes")
    }

    /// The public key that goes with this one.
    pub fn public_key(&self) -> CurvePublicKey {
        let secret = crypto_box::SecretKey::from_bytes(self.0);
        CurvePublicKey(*secret.public_key().as_bytes())
    }

    pub(crate) fn to_box_key(&self) -> crypto_box::SecretKey {
        crypto_box::SecretKey::from_bytes(self.0)
    }
}

impl std::str::FromStr for CurveSecretKey {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        key_bytes(text).map(CurveSecretKey)
    }
}

impl fmt::Debug for CurveSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CurveSecretKey(..)")
    }
}

/// A long-term CURVE key pair.
///
/// ```
/// use conduit_proto::CurveKeyPair;
///
/// let pair = CurveKeyPair::generate();
/// assert_eq!(pair.secret.public_key(), pair.public);
/// assert_eq!(pair.public.to_string().len(), 40);
/// ```
#[derive(Clone, Debug)]
pub struct CurveKeyPair {
    /// The public key, given to peers.
    pub public: CurvePublicKey,
    /// The secret key, kept.
    pub secret: CurveSecretKey,
}

impl CurveKeyPair {
    /// A new random key pair from the operating system's random source.
    pub fn generate() -> CurveKeyPair {
        let secret = crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng);
        CurveKeyPair::from_secret(CurveSecretKey(secret.to_bytes()))
    }

    /// The pair whose secret key is `secret`.
    pub fn from_secret(secret: CurveSecretKey) -> CurveKeyPair {
        CurveKeyPair {
            public: secret.public_key(),
            secret,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_print_as_z85() {
        let text = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
        let key: CurvePublicKey = text.parse().unwrap();
        assert_eq!(key.to_string(), text);
        assert_eq!(
            "short".parse::<CurvePublicKey>(),
            Err(KeyError::BadLength(5))
        );
        assert!(matches!(
            "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\"".parse::<CurvePublicKey>(),
            Err(KeyError::Z85(_))
        ));
    }

    #[test]
    fn secret_key_debug_hides_it() {
        let pair = CurveKeyPair::generate();
        assert_eq!(format!("{:?}", pair.secret), "CurveSecretKey(..)");
        let again: CurveSecretKey = pair.secret.to_z85().parse().unwrap();
        assert_eq!(again.public_key(), pair.public);
    }
}
