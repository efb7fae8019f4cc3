//! Typed values as `recv_value` decodes them (postcard, with conduit's bound on
//! nesting), into a type that recurses in every way serde can: enums, options,
//! boxes, sequences, maps, tuples, strings, chars.
//!
//! Checks: no panic and no stack overflow (a value nested past the bound is
//! refused, however deep the input goes); every refusal is `Error::Decode`;
//! what decodes encodes (as `send_value` does) to bytes that decode to the same
//! value and encode again to the same bytes.
#![no_main]

use std::collections::BTreeMap;

use bytes::Bytes;
use conduit::fuzzing;
use conduit::{Error, Message};
use libfuzzer_sys::fuzz_target;
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Tree {
    Unit,
    Flag(bool),
    Number(u64),
    Signed(i32),
    Text(String),
    Bytes(Vec<u8>),
    Node(Vec<Tree>),
    Maybe(Option<Box<Tree>>),
    Map(BTreeMap<u16, Tree>),
    Pair(Box<(Tree, Tree)>),
    Named { tag: char, child: Box<Tree> },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Value {
    id: u32,
    tree: Tree,
    tail: Option<(char, i8)>,
}

fuzz_target!(|data: &[u8]| {
    let message = Message::from_frames([Bytes::copy_from_slice(data)]);
    match fuzzing::decode_value::<Value>(message) {
        Ok(value) => {
            let frame = fuzzing::encode_value(&value).unwrap();
            let back: Value = fuzzing::decode_value(Message::from_frames([frame.clone()])).unwrap();
            assert_eq!(back, value);
            assert_eq!(fuzzing::encode_value(&back).unwrap(), frame);
        }
        Err(Error::Decode(_)) => {}
        Err(other) => panic!("a refusal other than Decode: {other:?}"),
    }
});
