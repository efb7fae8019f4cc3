//! Request-reply envelopes (RFC 28 / libzmq's REQ and REP).
//!
//! A REQ socket puts an empty delimiter frame before the body of each request;
//! with request correlation it puts a 4-byte request id before the delimiter. A
//! REP socket keeps every frame up to and including the delimiter (the
//! envelope, which routers on the way extend with identities), hands the body to
//! the application, and puts the envelope back in front of the reply.

use bytes::Bytes;

use crate::message::Message;

/// Splits `msg` at its first empty frame: (envelope with the delimiter, body).
/// None if there is no delimiter: not a request a REP can answer.
///
/// ```
/// use conduit_proto::{Message, envelope};
/// let (env, body) = envelope::split(Message::from_frames(["id", "", "hi"])).unwrap();
/// assert_eq!(env, vec!["id", ""]);
/// assert_eq!(body, Message::from("hi"));
/// ```
pub fn split(msg: Message) -> Option<(Vec<Bytes>, Message)> {
    let at = msg.frames().iter().position(Bytes::is_empty)?;
    let mut frames = msg.into_frames();
    let body = frames.split_off(at + 1);
    Some((frames, Message::from(body)))
}

/// `envelope` followed by the frames of `body`.
pub fn wrap(envelope: &[Bytes], body: Message) -> Message {
    envelope.iter().cloned().chain(body.into_frames()).collect()
}

/// A REQ request: `[request id (if correlating)], "", body...`.
pub fn request(body: Message, request_id: Option<u32>) -> Message {
    let mut msg = body;
    msg.push_front(Bytes::new());
    if let Some(id) = request_id {
        msg.push_front(Bytes::copy_from_slice(&id.to_be_bytes()));
    }
    msg
}

/// The body of a reply to a REQ request, or None if the reply is not one (no
/// delimiter, or a request id other than `request_id` when correlating): libzmq
/// drops such replies, and so do we.
pub fn reply_body(msg: Message, request_id: Option<u32>) -> Option<Message> {
    let mut frames = msg.into_frames().into_iter();
    if let Some(id) = request_id {
        if frames.next()? != id.to_be_bytes()[..] {
            return None;
        }
    }
    if !frames.next()?.is_empty() {
        return None;
    }
    Some(frames.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip() {
        let req = request(Message::from_frames(["a", "b"]), None);
        assert_eq!(req, Message::from_frames(["", "a", "b"]));
        let (env, body) = split(req).unwrap();
        assert_eq!(env, vec![Bytes::new()]);
        let reply = wrap(&env, body);
        assert_eq!(
            reply_body(reply, None),
            Some(Message::from_frames(["a", "b"]))
        );
    }

    #[test]
    fn correlated_requests_carry_their_id() {
        let req = request(Message::from("x"), Some(7));
        assert_eq!(req.frames()[0], &[0, 0, 0, 7][..]);
        let (env, body) = split(req).unwrap();
        let reply = wrap(&env, body);
        assert_eq!(reply_body(reply.clone(), Some(7)), Some(Message::from("x")));
        assert_eq!(reply_body(reply, Some(8)), None);
    }

    #[test]
    fn messages_without_a_delimiter_are_not_requests_or_replies() {
        assert!(split(Message::from_frames(["a", "b"])).is_none());
        assert_eq!(reply_body(Message::from("no delimiter"), None), None);
        assert_eq!(reply_body(Message::new(), None), None);
    }

    #[test]
    fn router_identities_stay_in_the_envelope() {
        let (env, body) = split(Message::from_frames(["peer-1", "client-7", "", "q"])).unwrap();
        assert_eq!(env.len(), 3);
        assert_eq!(wrap(&env, Message::from("r")).frames()[..3], env[..]);
        assert_eq!(body, Message::from("q"));
    }
}
