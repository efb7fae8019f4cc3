//! Z85 (RFC 32) on arbitrary text and bytes: no panic; what decodes encodes
//! back to the same text; what encodes decodes back to the same bytes.
#![no_main]

use conduit_proto::z85;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(bytes) = z85::decode(text) {
            assert_eq!(z85::encode(&bytes).unwrap(), text);
        }
        if text.len() == 40 {
            if let Ok(key) = text.parse::<conduit_proto::CurvePublicKey>() {
                assert_eq!(key.to_string(), text);
            }
        }
    }
    let whole = &data[..data.len() / 4 * 4];
    let text = z85::encode(whole).unwrap();
    assert_eq!(z85::decode(&text).unwrap(), whole);
});
