//! Property tests: whatever we encode decodes to the same thing, whatever the
//! split points of the bytes, and no input makes the parsers panic.

use bytes::{Bytes, BytesMut};
use conduit_proto::*;
use proptest::prelude::*;

fn frame() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(any::<u8>(), 250..300),
        1 => proptest::collection::vec(any::<u8>(), COPY_LIMIT..COPY_LIMIT + 10),
    ]
    .prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    proptest::collection::vec(frame(), 1..5).prop_map(Message::from)
}

fn command() -> impl Strategy<Value = Command> {
    let bytes = |max| proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from);
    prop_oneof![
        (any::<u16>(), bytes(17)).prop_map(|(ttl, context)| Command::Ping { ttl, context }),
        bytes(17).prop_map(|context| Command::Pong { context }),
        bytes(300).prop_map(Command::Subscribe),
        bytes(300).prop_map(Command::Cancel),
        "[ -~]{0,255}".prop_map(Command::Error),
        proptest::collection::vec(("[A-Za-z0-9_.+-]{1,20}", bytes(40)), 0..4).prop_map(|props| {
            let mut p = Properties::new();
            for (name, value) in props {
                p.insert(&name, value).unwrap();
            }
            Command::Ready(p)
        }),
    ]
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![4 => message().prop_map(Item::Message), 1 => command().prop_map(Item::Command)]
}

/// Decodes `wire` delivered in pieces whose sizes cycle through `pieces`.
fn decode_all(wire: &[u8], pieces: &[usize]) -> Result<Vec<Item>, ProtocolError> {
    let mut decoder = Decoder::new(DEFAULT_MAX_MESSAGE_SIZE);
    let mut src = BytesMut::new();
    let mut items = Vec::new();
    let mut at = 0;
    for &piece in pieces.iter().cycle() {
        if at == wire.len() {
            break;
        }
        let end = (at + piece).min(wire.len());
        src.extend_from_slice(&wire[at..end]);
        at = end;
        while let Some(item) = decoder.decode(&mut src)? {
            items.push(item);
        }
    }
    assert!(decoder.is_between_messages());
    Ok(items)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn items_round_trip_at_any_split_points(
        items in proptest::collection::vec(item(), 1..8),
        pieces in proptest::collection::vec(1usize..400, 1..6),
    ) {
        let mut buf = SendBuffer::new();
        for item in &items {
            match item {
                Item::Message(m) => buf.push_message(m),
                Item::Command(c) => buf.push_command(c),
            }
        }
        let wire = buf.to_vec();
        // The contiguous encoder agrees with the scatter-gather one.
        let mut flat = BytesMut::new();
        for item in &items {
            match item {
                Item::Message(m) => put_message(&mut flat, m),
                Item::Command(c) => c.encode(&mut flat),
            }
        }
        prop_assert_eq!(&flat[..], &wire[..]);
        prop_assert_eq!(decode_all(&wire, &pieces)?, items);
    }

    #[test]
    fn decoder_never_panics_and_never_over_reserves(
        input in proptest::collection::vec(any::<u8>(), 0..600),
        step in 1usize..64,
    ) {
        let mut decoder = Decoder::new(4096);
        let mut src = BytesMut::new();
        for piece in input.chunks(step) {
            src.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut src) {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(_) => return Ok(()),
                }
            }
            // Never more than the limit plus one header, however the sizes lie.
            prop_assert!(src.capacity() <= MAX_COMMAND_SIZE + 4096 + 1024);
        }
    }

    #[test]
    fn handshake_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut hs = Handshake::new(LocalInfo::new(SocketType::Pair));
        let mut with_greeting = BytesMut::from(&Greeting::ours()[..]);
        with_greeting.extend_from_slice(&input);
        let _ = hs.handle_input(&mut with_greeting);
        let mut hs = Handshake::new(LocalInfo::new(SocketType::Pair));
        let _ = hs.handle_input(&mut BytesMut::from(&input[..]));
    }

    #[test]
    fn properties_round_trip(
        props in proptest::collection::vec(("[A-Za-z0-9_.+-]{1,255}", proptest::collection::vec(any::<u8>(), 0..64)), 0..6)
    ) {
        let mut p = Properties::new();
        for (name, value) in props {
            p.insert(&name, value).unwrap();
        }
        let mut out = BytesMut::new();
        p.encode(&mut out);
        prop_assert_eq!(out.len(), p.encoded_len());
        prop_assert_eq!(Properties::parse(out.freeze())?, p);
    }
}
