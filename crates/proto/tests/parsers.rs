//! Property tests for the parsers that read peer input, on inputs that are
//! mostly *not* what our encoders produce: the same checks the fuzz targets make
//! (`fuzz/`), for a bounded number of cases on every test run.
//!
//! 1. A command body that parses re-encodes to a body that parses to the same
//!    command (an ERROR reason cut to what ERROR can carry), and encodes the same
//!    again; unknown names and reasons that are not ASCII or not UTF-8 included.
//! 2. Any bytes, valid or not, decode to the same items and the same end (the
//!    same error, or the same leftover) whole or in pieces.
//! 3. `Properties::encode(parse(x)) == x` for every `x` that parses.
//! 4. Once `Greeting::parse` refuses a prefix, every longer prefix is refused
//!    with the same error.

use bytes::{Bytes, BytesMut};
use conduit_proto::*;
use proptest::prelude::*;

/// Bytes from a small alphabet that hits the interesting cases often: printable
/// ASCII, NUL, continuation and lead bytes of UTF-8, bytes that are never UTF-8.
fn tricky_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => 0x20u8..0x7F,
            1 => Just(0u8),
            1 => 0x80u8..0xC0,
            1 => 0xC2u8..0xF5,
            1 => 0xF5u8..=0xFF,
            1 => any::<u8>(),
        ],
        0..max,
    )
}

/// A command body: a known or unknown name, then data that may or may not follow
/// the command's grammar, or plain garbage.
fn command_body() -> impl Strategy<Value = Vec<u8>> {
    let name = prop_oneof![
        Just(b"READY".to_vec()),
        Just(b"ERROR".to_vec()),
        Just(b"PING".to_vec()),
        Just(b"PONG".to_vec()),
        Just(b"SUBSCRIBE".to_vec()),
        Just(b"CANCEL".to_vec()),
        tricky_bytes(12),
    ];
    let named = (name, any::<u8>(), tricky_bytes(300)).prop_map(|(name, len_byte, data)| {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(&name);
        if name == b"ERROR" && len_byte % 4 != 0 {
            // Mostly an honest length, sometimes a lying one.
            let n = data.len().min(255);
            body.push(if len_byte % 4 == 1 { len_byte } else { n as u8 });
            body.extend_from_slice(&data[..n]);
        } else if name == b"READY" {
            body.extend_from_slice(&properties_bytes_from(&data));
        } else {
            body.extend_from_slice(&data);
        }
        body
    });
    prop_oneof![4 => named, 1 => tricky_bytes(40)]
}

/// READY metadata built from `seed`: mostly well-formed properties, with names
/// that are sometimes invalid and lengths that sometimes lie.
fn properties_bytes_from(seed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in seed.chunks(11) {
        let (&kind, rest) = match chunk.split_first() {
            Some(x) => x,
            None => break,
        };
        let split = rest.len() / 2;
        let (name, value) = rest.split_at(split);
        let name: Vec<u8> = if kind % 3 == 0 {
            name.to_vec() // anything
        } else {
            name.iter()
                .map(|b| b"Ab9-_.+x"[usize::from(*b % 8)])
                .collect()
        };
        let name = if name.is_empty() && kind % 5 != 0 {
            b"X".to_vec()
        } else {
            name
        };
        out.push(name.len() as u8);
        out.extend_from_slice(&name);
        let value_len = if kind % 7 == 0 {
            u32::from(kind) << 20 // a lie
        } else {
            value.len() as u32
        };
        out.extend_from_slice(&value_len.to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// What an ERROR reason is after the wire: at most 255 bytes, cut on a character
/// boundary.
fn sendable(reason: &str) -> &str {
    let mut end = reason.len().min(255);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

/// Encodes `cmd` and returns the frame's body, checking the header on the way.
fn encoded_body(cmd: &Command) -> Result<Bytes, TestCaseError> {
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    let (header, header_len) = FrameHeader::parse(&out)
        .map_err(|e| TestCaseError::fail(format!("our header does not parse: {e}")))?
        .ok_or_else(|| TestCaseError::fail("our header is incomplete"))?;
    prop_assert!(header.command && !header.more);
    prop_assert_eq!(header.len as usize, out.len() - header_len);
    Ok(out.split_off(header_len).freeze())
}

/// How a decode run ended.
#[derive(Debug, PartialEq)]
enum End {
    Pending { rest: Vec<u8>, between: bool },
    Failed(ProtocolError),
}

/// Decodes `wire` in pieces whose sizes cycle through `pieces` (empty: whole).
fn decode(wire: &[u8], pieces: &[usize], max: usize) -> (Vec<Item>, End) {
    let mut decoder = Decoder::new(max);
    let mut src = BytesMut::new();
    let mut items = Vec::new();
    let mut at = 0;
    let mut sizes = pieces.iter().copied().cycle();
    loop {
        let size = sizes.next().unwrap_or(wire.len()).max(1);
        let end = wire.len().min(at + size);
        src.extend_from_slice(&wire[at..end]);
        at = end;
        loop {
            match decoder.decode(&mut src) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, End::Failed(e)),
            }
        }
        if at == wire.len() {
            let rest = src.to_vec();
            let between = decoder.is_between_messages();
            return (items, End::Pending { rest, between });
        }
    }
}

/// Traffic that starts well and may go bad anywhere: encoded messages and
/// commands, interleaved with raw headers (huge sizes, reserved bits, commands
/// with MORE) and garbage.
fn traffic() -> impl Strategy<Value = Vec<u8>> {
    let segment = prop_oneof![
        3 => proptest::collection::vec(tricky_bytes(40), 1..4).prop_map(|frames| {
            let mut out = BytesMut::new();
            put_message(&mut out, &Message::from_iter(frames.into_iter().map(Bytes::from)));
            out.to_vec()
        }),
        1 => proptest::collection::vec(any::<u8>(), 270..300).prop_map(|body| {
            let mut out = BytesMut::new();
            put_frame(&mut out, false, false, &body);
            out.to_vec()
        }),
        1 => command_body().prop_map(|body| {
            let mut out = BytesMut::new();
            put_frame(&mut out, false, true, &body);
            out.to_vec()
        }),
        1 => (any::<u8>(), any::<u64>()).prop_map(|(flags, size)| {
            let mut out = vec![flags | FLAG_LONG];
            out.extend_from_slice(&size.to_be_bytes());
            out
        }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(flags, size)| vec![flags, size]),
        1 => tricky_bytes(20),
    ];
    proptest::collection::vec(segment, 0..8).prop_map(|s| s.concat())
}

/// A greeting that is ours with a few bytes changed, or anything at all.
fn greeting_bytes() -> impl Strategy<Value = Vec<u8>> {
    let mutated = proptest::collection::vec((0usize..70, any::<u8>()), 0..4).prop_map(|edits| {
        let mut g = Greeting::ours().to_vec();
        g.extend_from_slice(b"\x04\x06\x05READY");
        for (at, byte) in edits {
            if let Some(b) = g.get_mut(at) {
                *b = byte;
            }
        }
        g
    });
    prop_oneof![3 => mutated, 1 => proptest::collection::vec(any::<u8>(), 0..80)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn a_parsed_command_survives_encode_and_parse(body in command_body()) {
        let input = Bytes::from(body);
        let cmd = match Command::parse(input.clone()) {
            Ok(cmd) => cmd,
            Err(err) => {
                prop_assert!(matches!(err, ProtocolError::MalformedCommand { .. }), "{:?}", err);
                return Ok(());
            }
        };
        let body = encoded_body(&cmd)?;
        let again = Command::parse(body.clone())
            .map_err(|e| TestCaseError::fail(format!("our encoding does not parse: {e}")))?;
        let expected = match &cmd {
            Command::Error(reason) => Command::Error(sendable(reason).to_owned()),
            other => other.clone(),
        };
        prop_assert_eq!(&again, &expected);
        prop_assert_eq!(encoded_body(&again)?, body.clone(), "encode is not stable");
        match &cmd {
            Command::Ready(_) | Command::Ping { .. } | Command::Pong { .. }
            | Command::Subscribe(_) | Command::Cancel(_) => {
                prop_assert_eq!(body, input, "re-encoding changed the bytes");
            }
            Command::Unknown { name } => {
                // An unknown command keeps its own name, whatever its bytes.
                prop_assert_eq!(&body[1..], &name[..]);
                prop_assert_eq!(&input[1..1 + name.len()], &name[..]);
            }
            Command::Error(reason) => {
                prop_assert!(reason.len() <= 3 * 255, "one byte is at most one U+FFFD");
            }
            _ => {}
        }
    }

    #[test]
    fn any_traffic_decodes_the_same_whole_or_in_pieces(
        wire in traffic(),
        pieces in proptest::collection::vec(1usize..300, 1..6),
        max in prop_oneof![Just(16usize), Just(300), Just(4096), Just(DEFAULT_MAX_MESSAGE_SIZE)],
    ) {
        let whole = decode(&wire, &[], max);
        let one_by_one = decode(&wire, &[1], max);
        let split = decode(&wire, &pieces, max);
        prop_assert_eq!(&whole, &split);
        prop_assert_eq!(&whole, &one_by_one);
        for item in &whole.0 {
            if let Item::Message(m) = item {
                prop_assert!(!m.is_empty() && m.byte_len() <= max);
            }
        }
    }

    #[test]
    fn properties_that_parse_encode_to_their_own_bytes(seed in tricky_bytes(200)) {
        let x = properties_bytes_from(&seed);
        if let Ok(props) = Properties::parse(Bytes::from(x.clone())) {
            let mut out = BytesMut::new();
            props.encode(&mut out);
            prop_assert_eq!(&out[..], &x[..]);
            prop_assert_eq!(props.encoded_len(), x.len());
        }
    }

    #[test]
    fn arbitrary_properties_that_parse_encode_to_their_own_bytes(
        x in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(props) = Properties::parse(Bytes::from(x.clone())) {
            let mut out = BytesMut::new();
            props.encode(&mut out);
            prop_assert_eq!(&out[..], &x[..]);
        }
    }

    #[test]
    fn a_refused_greeting_stays_refused_with_the_same_error(data in greeting_bytes()) {
        let mut first: Option<ProtocolError> = None;
        for n in 0..=data.len() {
            let verdict = Greeting::parse(&data[..n]);
            match (&first, verdict) {
                (None, Err(e)) => first = Some(e),
                (None, _) => {}
                (Some(first), verdict) => prop_assert_eq!(
                    verdict, Err(first.clone()), "prefix of {} bytes", n
                ),
            }
        }
    }
}

#[test]
fn the_property_generator_makes_both_valid_and_invalid_metadata() {
    // The generator is worth something only if it reaches both sides.
    let valid = properties_bytes_from(b"\x01abcdefghij\x02klmnopqrst");
    assert!(Properties::parse(Bytes::from(valid)).is_ok());
    let lying = properties_bytes_from(b"\x07abcdefghij");
    assert!(Properties::parse(Bytes::from(lying)).is_err());
}
