//! The 64-byte greeting, parsed as it arrives.
//!
//! Checks: no panic; once a prefix is rejected, every longer prefix is rejected
//! with the same error (the verdict never changes as bytes arrive); a complete
//! greeting is accepted only with the signature, version 3 or later and the NULL
//! mechanism, and reports the version bytes; bytes after the 64th are ignored;
//! error reasons are sendable.
#![no_main]

use conduit_proto::{GREETING_LEN, Greeting, ProtocolError};
use conduit_proto_fuzz::check_error_reason;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut first_error: Option<(usize, ProtocolError)> = None;
    for n in 0..=data.len().min(GREETING_LEN) {
        match Greeting::parse(&data[..n]) {
            Ok(None) => {
                assert!(
                    n < GREETING_LEN,
                    "a whole greeting is neither accepted nor refused"
                );
                assert!(first_error.is_none(), "prefix {n} accepted after a refusal");
            }
            Ok(Some(g)) => {
                assert_eq!(n, GREETING_LEN, "accepted before the greeting was complete");
                assert!(first_error.is_none(), "accepted after a refusal");
                assert_eq!((g.major, g.minor), (data[10], data[11]));
                assert!(g.major >= 3);
                assert_eq!(data[0], 0xFF);
                assert_eq!(data[9], 0x7F);
                assert_eq!(&data[12..16], b"NULL");
                assert!(data[16..32].iter().all(|&b| b == 0));
                assert_eq!(g.is_3_1(), g.major > 3 || g.minor >= 1);
            }
            Err(e) => {
                check_error_reason(&e);
                match &first_error {
                    Some((_, first)) => assert_eq!(&e, first, "the error changed at prefix {n}"),
                    None => {
                        // Fails as early as the bytes allow.
                        match e {
                            ProtocolError::BadSignature {
                                offset,
                                found,
                                expected,
                            } => {
                                assert_eq!(n, offset + 1);
                                assert_eq!(data[offset], found);
                                assert_ne!(found, expected);
                            }
                            ProtocolError::UnsupportedVersion { major } => {
                                assert_eq!(n, 11);
                                assert!(major < 3);
                            }
                            ProtocolError::MechanismMismatch { ref peer } => {
                                assert_eq!(n, GREETING_LEN);
                                assert!(!peer.chars().any(char::is_control));
                            }
                            ref other => panic!("unexpected greeting error {other:?}"),
                        }
                        first_error = Some((n, e));
                    }
                }
            }
        }
    }
    if data.len() > GREETING_LEN {
        assert_eq!(
            Greeting::parse(data),
            Greeting::parse(&data[..GREETING_LEN]),
            "bytes after the greeting changed the verdict"
        );
    }
});
