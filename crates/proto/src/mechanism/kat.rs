//! Known-answer tests: CURVE handshake bytes recorded from libzmq 4.3.5
//! (through pyzmq) by `crates/proto/tests/data/record_curve.py`.

use bytes::BytesMut;

use super::curve::{CurveClient, CurveServer};
use super::*;

/// The server key pair the recordings used (one of libzmq's test pairs).
fn server_keys() -> CurveKeyPair {
    let secret: CurveSecretKey = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs".parse().unwrap();
    let pair = CurveKeyPair::from_secret(secret);
    assert_eq!(
        pair.public.to_string(),
        "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
    );
    pair
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn context<'a>(
    security: &'a Security,
    peer: &'a PeerAddress,
    metadata: &'a Properties,
) -> Context<'a> {
    Context {
        security,
        peer,
        metadata,
    }
}

/// `record_curve.py hello`: a libzmq client's HELLO frame.
const LIBZMQ_HELLO: &str = "04c80548454c4c4f010000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000022e1900e43a16872bad04d4c2c0dc11e2cf53d5646b3604a24d62f16b5aee454000000000000000129d922155b46df45c12b0cc3b25ff8892fc5721f158c6289e197a74c054984719f48ea3fb10580d851096714186644d0a28fec57fefd64400c9848b5de8102a1c7e97026e01a655a5fe1f343559f02da";

#[test]
fn our_server_opens_a_libzmq_hello_and_answers_welcome() {
    let frame = hex(LIBZMQ_HELLO);
    let mut server = CurveServer::new(server_keys());
    let security = Security::default();
    let (peer, metadata) = (PeerAddress::default(), Properties::new());
    let mut out = SendBuffer::new();
    let done = server
        .handle(
            bytes::Bytes::copy_from_slice(&frame[2..]),
            &context(&security, &peer, &metadata),
            &mut out,
        )
        .unwrap();
    assert!(done.is_none());
    let welcome = out.to_vec();
    assert_eq!(&welcome[..10], b"\x04\xa8\x07WELCOME", "a 168-byte WELCOME");
    assert_eq!(welcome.len(), 2 + 168);

    // Any other server key cannot open it.
    let mut other = CurveServer::new(CurveKeyPair::generate());
    assert!(matches!(
        other.handle(
            bytes::Bytes::copy_from_slice(&frame[2..]),
            &context(&security, &peer, &metadata),
            &mut SendBuffer::new()
        ),
        Err(ProtocolError::Cryptographic(_))
    ));
}

/// The short-term secret key of the HELLO below.
const SHORT_SECRET: [u8; 32] = [0x42; 32];

/// Our HELLO with `SHORT_SECRET`: deterministic, and accepted by libzmq (it
/// answered with `LIBZMQ_WELCOME`).
const OUR_HELLO: &str = "04c80548454c4c4f0100000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000132c442be010fbd57e72603328aa76e71fccc1503aae219327d14d9c9993f472000000000000000171abf900174c3fd7d9b182a4f9ab2b7a37c34ba3b3c4ad8ac1909c26e2f775df0e279d2ac77dd1f6ea11cc81ba48d09d43de3496bb0bc4e4e66fb8bae9702162109820573405182005ca7a631995bc52";

/// `record_curve.py welcome OUR_HELLO`: libzmq's answer.
const LIBZMQ_WELCOME: &str = "04a80757454c434f4d454528f7d8a35d25a92c394713a1118c89a4c55374ea5d14fe6ebf2c7403f2404122e6b7a789ee05034ae07d825bb69dcc109b80ec6b8480fc008fcd51cc6fbf036f6d979be85b2d079fb7858d3e9f0dccd47e79f78a33451f7e4907f616e132fa5bc1f25035dff9e2fd71231bc79edb1411dfa3e184969f48c97c7c12d1c5acf3dcf840d4a19a8a731e8eb3ebfda8f0a7d32406ac5fef5c203e80ea15a971120f";

fn kat_client() -> CurveClient {
    CurveClient::with_short_secret(server_keys().public, CurveKeyPair::generate(), SHORT_SECRET)
}

#[test]
fn our_hello_is_byte_for_byte_the_recorded_one() {
    let mut out = SendBuffer::new();
    kat_client().start(&mut out);
    assert_eq!(hex_of(&out.to_vec()), OUR_HELLO);
}

#[test]
fn our_client_opens_a_libzmq_welcome_and_answers_initiate() {
    let mut client = kat_client();
    let security = Security::default();
    let (peer, metadata) = (PeerAddress::default(), Properties::new());
    let frame = hex(LIBZMQ_WELCOME);
    let mut out = SendBuffer::new();
    let done = client
        .handle(
            bytes::Bytes::copy_from_slice(&frame[2..]),
            &context(&security, &peer, &metadata),
            &mut out,
        )
        .unwrap();
    assert!(done.is_none());
    let initiate = out.to_vec();
    // flags, 8-byte size, "\x08INITIATE", cookie (96), nonce 2, box.
    assert_eq!(&initiate[..1], b"\x06");
    assert_eq!(&initiate[9..18], b"\x08INITIATE");
    assert_eq!(&initiate[18 + 96..18 + 104], &2u64.to_be_bytes());

    // With another short-term key the WELCOME does not open.
    let mut other = CurveClient::new(server_keys().public, None);
    let mut input = BytesMut::from(&frame[2..]);
    let body = input.split().freeze();
    assert!(matches!(
        other.handle(
            body,
            &context(&security, &peer, &metadata),
            &mut SendBuffer::new()
        ),
        Err(ProtocolError::Cryptographic(_))
    ));
}
