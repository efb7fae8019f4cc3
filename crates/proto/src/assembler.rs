//! Frames into messages, within the limits every message is held to.
//!
//! Clear traffic ([`Decoder`](crate::Decoder)) and CURVE's MESSAGE boxes
//! ([`Opener`](crate::Opener)) read their frames differently but build
//! messages from them by the same rules; those rules live here, once. The
//! callers decide when to check (the decoder before it buffers a frame, the
//! opener partly after it has opened the box), so the checks are separate
//! from [`push`](Assembler::push), which assumes they passed.

use bytes::Bytes;
use smallvec::SmallVec;

use crate::decoder::{Item, MAX_FRAMES};
use crate::error::ProtocolError;
use crate::message::Message;

/// The frames of the message under way and what they add up to.
#[derive(Debug)]
pub(crate) struct Assembler {
    max_message_size: usize,
    /// Frames received of a multipart message; empty between messages (a
    /// one-frame message never lands here).
    frames: SmallVec<[Bytes; 1]>,
    /// Bytes in `frames`.
    message_size: u64,
}

impl Assembler {
    /// Refuses messages larger than `max_message_size` bytes in total.
    pub(crate) fn new(max_message_size: usize) -> Assembler {
        Assembler {
            max_message_size,
            frames: SmallVec::new(),
            message_size: 0,
        }
    }

    pub(crate) fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    pub(crate) fn set_max_message_size(&mut self, bytes: usize) {
        self.max_message_size = bytes;
    }

    /// Whether no frames of a multipart message are held: a stream that ends
    /// while this is false was truncated.
    #[inline]
    pub(crate) fn is_between_messages(&self) -> bool {
        self.frames.is_empty()
    }

    /// A command may only come between messages: ZMTP has no way to carry one
    /// inside a multipart message.
    #[inline]
    pub(crate) fn check_command(&self) -> Result<(), ProtocolError> {
        if !self.frames.is_empty() {
            return Err(ProtocolError::CommandInsideMessage);
        }
        Ok(())
    }

    /// Whether a data frame of `len` bytes keeps the message within the
    /// maximum size, counting the frames already held. Meant for a length
    /// read from the wire, before anything is reserved for it.
    #[inline]
    pub(crate) fn check_size(&self, len: u64) -> Result<(), ProtocolError> {
        let size = self.message_size.saturating_add(len);
        if size > self.max_message_size as u64 {
            return Err(ProtocolError::MessageTooLarge {
                size,
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    /// Whether the message has room for one more frame (see [`MAX_FRAMES`]).
    #[inline]
    pub(crate) fn check_frame_count(&self) -> Result<(), ProtocolError> {
        if self.frames.len() >= MAX_FRAMES {
            return Err(ProtocolError::TooManyFrames { max: MAX_FRAMES });
        }
        Ok(())
    }

    /// Both checks a data frame of `len` bytes must pass, size first.
    #[inline]
    pub(crate) fn check_data_frame(&self, len: u64) -> Result<(), ProtocolError> {
        self.check_size(len)?;
        self.check_frame_count()
    }

    /// Adds a data frame that passed [`check_data_frame`](Self::check_data_frame)
    /// (or both of its checks); the message once whole, that is once a frame
    /// without MORE arrives. An [`Item`], not a `Message`, because that is
    /// what both callers return: built in place, not moved into one after.
    ///
    /// Always inlined, so that a one-frame message costs its callers no call:
    /// that call was a tenth of the instructions of decoding an 8-byte message
    /// (callgrind); the multipart path stays out of line.
    #[inline(always)]
    pub(crate) fn push(&mut self, more: bool, frame: Bytes) -> Option<Item> {
        if !more && self.frames.is_empty() {
            // A message of one frame, most of them: no frame list to fill and
            // empty again.
            return Some(Item::Message(Message::from(frame)));
        }
        self.push_part(more, frame)
    }

    /// [`push`](Self::push) for a frame of a multipart message.
    fn push_part(&mut self, more: bool, frame: Bytes) -> Option<Item> {
        self.message_size += frame.len() as u64;
        self.frames.push(frame);
        if more {
            return None;
        }
        self.message_size = 0;
        Some(Item::Message(Message::from_iter(std::mem::take(
            &mut self.frames,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a data frame as the decoder does, then adds it.
    fn feed(a: &mut Assembler, more: bool, frame: &'static str) -> Option<Message> {
        a.check_data_frame(frame.len() as u64).unwrap();
        match a.push(more, Bytes::from_static(frame.as_bytes())) {
            Some(Item::Message(msg)) => Some(msg),
            Some(Item::Command(cmd)) => panic!("a data frame made a command: {cmd:?}"),
            None => None,
        }
    }

    #[test]
    fn a_one_frame_message_comes_out_at_once() {
        let mut a = Assembler::new(10);
        assert_eq!(feed(&mut a, false, "hello"), Some(Message::from("hello")));
        assert!(a.is_between_messages());
        assert_eq!(a.check_command(), Ok(()));
    }

    #[test]
    fn a_multipart_message_comes_out_with_its_last_frame() {
        let mut a = Assembler::new(10);
        assert_eq!(feed(&mut a, true, "ab"), None);
        assert!(!a.is_between_messages());
        assert_eq!(feed(&mut a, true, ""), None);
        assert!(!a.is_between_messages());
        assert_eq!(
            feed(&mut a, false, "cd"),
            Some(Message::from_frames(["ab", "", "cd"]))
        );
        assert!(a.is_between_messages());
    }

    #[test]
    fn the_size_limit_counts_every_frame_of_the_message() {
        let mut a = Assembler::new(10);
        assert_eq!(a.check_size(10), Ok(()));
        assert_eq!(
            a.check_size(11),
            Err(ProtocolError::MessageTooLarge { size: 11, max: 10 })
        );
        feed(&mut a, true, "123456");
        assert_eq!(a.check_size(4), Ok(()));
        assert_eq!(
            a.check_size(5),
            Err(ProtocolError::MessageTooLarge { size: 11, max: 10 })
        );
        assert_eq!(
            a.check_data_frame(5),
            Err(ProtocolError::MessageTooLarge { size: 11, max: 10 })
        );
        // A size announced on the wire may be anything: no overflow.
        assert_eq!(
            a.check_size(u64::MAX),
            Err(ProtocolError::MessageTooLarge {
                size: u64::MAX,
                max: 10
            })
        );
    }

    #[test]
    fn a_finished_message_frees_its_share_of_the_limit() {
        let mut a = Assembler::new(10);
        feed(&mut a, true, "12345");
        feed(&mut a, false, "67890");
        assert_eq!(a.check_size(10), Ok(()));
        // A one-frame message never counted.
        feed(&mut a, false, "1234567890");
        assert_eq!(a.check_size(10), Ok(()));
    }

    #[test]
    fn the_limit_can_change_between_messages() {
        let mut a = Assembler::new(10);
        a.set_max_message_size(3);
        assert_eq!(a.max_message_size(), 3);
        assert_eq!(
            a.check_size(4),
            Err(ProtocolError::MessageTooLarge { size: 4, max: 3 })
        );
    }

    #[test]
    fn frames_are_bounded_even_when_empty() {
        let mut a = Assembler::new(10);
        for _ in 0..MAX_FRAMES - 1 {
            assert_eq!(feed(&mut a, true, ""), None);
        }
        // The last frame allowed.
        assert_eq!(a.check_frame_count(), Ok(()));
        let msg = feed(&mut a, false, "").unwrap();
        assert_eq!(msg.frame_count(), MAX_FRAMES);
        assert!(a.is_between_messages());

        for _ in 0..MAX_FRAMES {
            assert_eq!(feed(&mut a, true, ""), None);
        }
        let too_many = Err(ProtocolError::TooManyFrames { max: MAX_FRAMES });
        assert_eq!(a.check_frame_count(), too_many);
        assert_eq!(a.check_data_frame(0), too_many);
        // The size limit is judged first.
        assert_eq!(
            a.check_data_frame(11),
            Err(ProtocolError::MessageTooLarge { size: 11, max: 10 })
        );
        assert!(!a.is_between_messages());
    }

    #[test]
    fn a_command_inside_a_multipart_message_is_refused() {
        let mut a = Assembler::new(10);
        feed(&mut a, true, "a");
        assert_eq!(a.check_command(), Err(ProtocolError::CommandInsideMessage));
        feed(&mut a, false, "b");
        assert_eq!(a.check_command(), Ok(()));
    }
}
