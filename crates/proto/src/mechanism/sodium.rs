//! CURVE's data-phase box through libsodium, the library libzmq itself calls:
//! `crypto_box_beforenm` once per connection, then per MESSAGE
//! `crypto_box_detached_afternm` / `crypto_box_open_detached_afternm`
//! (XSalsa20 with its HSalsa20 subkey per nonce, then Poly1305), in place.
//!
//! Why libsodium and not RustCrypto's `crypto_box` (which the handshake still
//! uses): its Salsa20 and Poly1305 pick SSE2/AVX2 code at run time and run at
//! about 1.5 GB/s on the benchmark machine, against 0.45-0.55 GB/s for
//! `salsa20` 0.10 (portable code only) with `poly1305` 0.8, whose AVX2 backend
//! also costs ~1 µs of set-up per small box. See docs/security.md, "Which
//! cryptography". This is the only `unsafe` in the crate: each call passes
//! pointers and lengths of live Rust slices of the sizes libsodium documents.

use std::sync::Once;

use libsodium_sys as ffi;
use zeroize::Zeroizing;

/// Bytes of a box's MAC (`crypto_box_MACBYTES`).
pub(crate) const MAC_LEN: usize = 16;
/// Bytes of a nonce (`crypto_box_NONCEBYTES`).
pub(crate) const NONCE_LEN: usize = 24;

/// `sodium_init` picks the fastest Salsa20 and Poly1305 for this CPU; it must
/// run before any other call, and may run any number of times.
fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: no arguments; thread-safe and idempotent per libsodium's
        // documentation. It returns -1 only when it cannot initialise at all
        // (no usable random source), which the calls we make do not need.
        let rc = unsafe { ffi::sodium_init() };
        assert!(rc >= 0, "libsodium failed to initialise");
    });
}

/// A connection's precomputed box key (`crypto_box_beforenm`): the HSalsa20
/// of the X25519 shared secret of our short-term secret key and the peer's
/// short-term public key. Zeroized on drop.
#[derive(Clone)]
pub(crate) struct SessionKey(Zeroizing<[u8; 32]>);

impl SessionKey {
    /// `None` when the peer's key makes a weak shared secret (a low-order
    /// point: libsodium refuses it, as it does for libzmq).
    pub(crate) fn new(peer_public: &[u8; 32], our_secret: &[u8; 32]) -> Option<SessionKey> {
        init();
        let mut key = Zeroizing::new([0u8; 32]);
        // SAFETY: `key` is 32 writable bytes, the two keys 32 readable bytes
        // each (crypto_box_BEFORENMBYTES, _PUBLICKEYBYTES, _SECRETKEYBYTES).
        let rc = unsafe {
            ffi::crypto_box_beforenm(key.as_mut_ptr(), peer_public.as_ptr(), our_secret.as_ptr())
        };
        (rc == 0).then_some(SessionKey(key))
    }

    /// Encrypts `data` in place and returns its MAC.
    pub(crate) fn seal_in_place(&self, nonce: &[u8; NONCE_LEN], data: &mut [u8]) -> [u8; MAC_LEN] {
        let mut mac = [0u8; MAC_LEN];
        // SAFETY: `data` is readable and writable for its length, which
        // libsodium reads as the message and overwrites with the ciphertext
        // (in place is supported: c == m); `mac` is 16 writable bytes, the
        // nonce 24 readable, the key 32.
        let rc = unsafe {
            ffi::crypto_box_detached_afternm(
                data.as_mut_ptr(),
                mac.as_mut_ptr(),
                data.as_ptr(),
                data.len() as u64,
                nonce.as_ptr(),
                self.0.as_ptr(),
            )
        };
        assert_eq!(rc, 0, "crypto_box_detached_afternm cannot fail");
        mac
    }

    /// Checks `mac` over the ciphertext `data` and decrypts it in place;
    /// `Err` (and `data` untouched) when the box does not open.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        data: &mut [u8],
        mac: &[u8; MAC_LEN],
    ) -> Result<(), ()> {
        // SAFETY: as in `seal_in_place`; libsodium verifies the MAC before it
        // writes anything and supports m == c.
        let rc = unsafe {
            ffi::crypto_box_open_detached_afternm(
                data.as_mut_ptr(),
                data.as_ptr(),
                mac.as_ptr(),
                data.len() as u64,
                nonce.as_ptr(),
                self.0.as_ptr(),
            )
        };
        if rc == 0 { Ok(()) } else { Err(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crypto_box::aead::AeadInPlace;
    use crypto_box::aead::generic_array::GenericArray;
    use crypto_box::{SalsaBox, SecretKey};

    /// libsodium's boxes are byte for byte RustCrypto's `SalsaBox` ones (which
    /// the handshake's known-answer tests tie to libzmq's bytes), both ways,
    /// for sizes around Salsa20's 64-byte blocks and Poly1305's 16-byte ones.
    #[test]
    fn libsodium_boxes_are_rustcryptos_boxes() {
        let ours = SecretKey::from([0x11; 32]);
        let peers = SecretKey::from([0x22; 32]);
        let sodium = SessionKey::new(peers.public_key().as_bytes(), &ours.to_bytes()).unwrap();
        let rust = SalsaBox::new(&ours.public_key(), &peers);
        for len in [
            0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 70_000,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let nonce: [u8; 24] = std::array::from_fn(|i| (i + len) as u8);

            let mut sealed = plain.clone();
            let mac = sodium.seal_in_place(&nonce, &mut sealed);
            let mut rust_sealed = plain.clone();
            let rust_mac = rust
                .encrypt_in_place_detached(&nonce.into(), b"", &mut rust_sealed)
                .unwrap();
            assert_eq!(sealed, rust_sealed, "ciphertext of {len} bytes");
            assert_eq!(mac[..], rust_mac[..], "MAC of {len} bytes");

            let mut opened = rust_sealed.clone();
            sodium.open_in_place(&nonce, &mut opened, &mac).unwrap();
            assert_eq!(opened, plain);
            rust.decrypt_in_place_detached(
                &nonce.into(),
                b"",
                &mut sealed,
                GenericArray::from_slice(&mac),
            )
            .unwrap();
            assert_eq!(sealed, plain);

            // A flipped bit anywhere, or another nonce, and it does not open.
            if len > 0 {
                let mut forged = rust_sealed.clone();
                forged[len / 2] ^= 1;
                assert!(sodium.open_in_place(&nonce, &mut forged, &mac).is_err());
            }
            let mut bad_mac = mac;
            bad_mac[0] ^= 0x80;
            let mut copy = rust_sealed.clone();
            assert!(sodium.open_in_place(&nonce, &mut copy, &bad_mac).is_err());
            assert_eq!(
                copy, rust_sealed,
                "a box that does not open is left as it was"
            );
            let mut other_nonce = nonce;
            other_nonce[23] ^= 1;
            assert!(sodium.open_in_place(&other_nonce, &mut copy, &mac).is_err());
        }
    }

    #[test]
    fn a_low_order_peer_key_is_refused() {
        // The all-zero point: every shared secret with it is zero.
        assert!(SessionKey::new(&[0; 32], &[0x11; 32]).is_none());
    }
}
