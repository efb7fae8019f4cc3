//! READY metadata, as `Properties::parse` sees it.
//!
//! Checks: no panic; a parsed property list encodes back to exactly the input
//! bytes, `encoded_len` says how many, and it parses again to the same list; every
//! name is one `insert` accepts, and `get` finds the first property of a name
//! whatever its case; every rejection is a malformed READY.
#![no_main]

use bytes::{Bytes, BytesMut};
use conduit_proto::{Properties, ProtocolError};
use conduit_proto_fuzz::check_error_reason;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let props = match Properties::parse(input) {
        Ok(props) => props,
        Err(err) => {
            assert!(
                matches!(&err, ProtocolError::MalformedCommand { command, .. } if command == "READY"),
                "{err:?}"
            );
            check_error_reason(&err);
            return;
        }
    };
    let mut out = BytesMut::new();
    props.encode(&mut out);
    assert_eq!(&out[..], data, "encode(parse(x)) != x");
    assert_eq!(props.encoded_len(), data.len());
    assert_eq!(Properties::parse(out.freeze()).expect("re-parse"), props);

    for (name, _) in props.iter() {
        let first = props
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        assert_eq!(props.get(&name.to_ascii_uppercase()), first);
        assert_eq!(props.get(&name.to_ascii_lowercase()), first);
        Properties::new()
            .insert(name, Bytes::new())
            .expect("a parsed name is one insert accepts");
    }
});
