//! A command frame's body, as `Command::parse` sees it.
//!
//! Checks: no panic; a parsed command encodes to a command frame whose body parses
//! to the same command (an ERROR reason that a lossy UTF-8 conversion made longer
//! than 255 bytes comes back cut at a character boundary), and again to the same
//! bytes (encode is stable); commands
//! that keep all their bytes (READY, PING, PONG, SUBSCRIBE, CANCEL) encode to
//! exactly the body they were parsed from; the frame decoder agrees; every
//! rejection is a MalformedCommand (or a READY property error) and is sendable.
#![no_main]

use bytes::{Bytes, BytesMut};
use conduit_proto::{Command, FrameHeader, Item, ProtocolError};
use conduit_proto_fuzz::{after_the_wire, check_error_reason, check_reencodes};
use libfuzzer_sys::fuzz_target;

/// Encodes `cmd` and splits the frame into header and body.
fn encode(cmd: &Command) -> Bytes {
    let mut out = BytesMut::new();
    cmd.encode(&mut out);
    let (header, header_len) = FrameHeader::parse(&out)
        .expect("our own header parses")
        .expect("our own header is complete");
    assert!(header.command && !header.more, "{header:?}");
    assert_eq!(
        header.len as usize,
        out.len() - header_len,
        "header length lies"
    );
    out.split_off(header_len).freeze()
}

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let cmd = match Command::parse(input.clone()) {
        Ok(cmd) => cmd,
        Err(err) => {
            assert!(
                matches!(err, ProtocolError::MalformedCommand { .. }),
                "parse failed with {err:?}"
            );
            check_error_reason(&err);
            return;
        }
    };
    let _ = cmd.name();

    let body = encode(&cmd);
    let again = Command::parse(body.clone()).expect("an encoded command parses");
    let Item::Command(expected) = after_the_wire(&Item::Command(cmd.clone())) else {
        unreachable!()
    };
    assert_eq!(
        again, expected,
        "parse -> encode -> parse changed the command"
    );
    assert_eq!(encode(&again), body, "encode is not stable");
    if matches!(
        cmd,
        Command::Ready(_)
            | Command::Ping { .. }
            | Command::Pong { .. }
            | Command::Subscribe(_)
            | Command::Cancel(_)
    ) {
        assert_eq!(body, input, "re-encoding changed the bytes");
    }
    check_reencodes(&Item::Command(cmd), 0);
});
