//! Messages: one or more frames, delivered whole or not at all.

use std::fmt;

use bytes::Bytes;
use smallvec::SmallVec;

/// A message: an ordered list of frames (byte buffers).
///
/// Most messages have one frame, which is stored inline without a second
/// allocation. Frames are [`Bytes`], so cloning a message or splitting it off a
/// receive buffer copies no payload.
///
/// ```
/// use conduit_proto::Message;
/// let single = Message::from("hello");
/// assert_eq!(single.frame_count(), 1);
///
/// let multi = Message::from_frames(["key", "value"]);
/// assert_eq!(multi.frames()[1], "value");
/// assert_eq!(multi.frame_count(), 2);
/// assert_eq!(multi.byte_len(), 8);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Message {
    frames: SmallVec<[Bytes; 1]>,
}

impl Message {
    /// A message with no frames yet; add them with [`push_back`](Self::push_back).
    ///
    /// A message must have at least one frame to be sent.
    pub fn new() -> Message {
        Message::default()
    }

    /// A message made of the given frames, in order.
    pub fn from_frames<I, F>(frames: I) -> Message
    where
        I: IntoIterator<Item = F>,
        F: Into<Bytes>,
    {
        Message {
            frames: frames.into_iter().map(Into::into).collect(),
        }
    }

    /// The frames, in order.
    pub fn frames(&self) -> &[Bytes] {
        &self.frames
    }

    /// Takes the frames out of the message.
    pub fn into_frames(self) -> Vec<Bytes> {
        self.frames.into_vec()
    }

    /// The number of frames (the same as `frames().len()`).
    ///
    /// There is no `len`: the `zmq` crate's `Message::len` counts bytes, and
    /// a message here is a list of frames, so each count says its unit. For
    /// bytes, see [`byte_len`](Self::byte_len).
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// Whether the message has no frames at all (a message with one empty frame is
    /// not empty).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Total payload bytes over all frames (what the `zmq` crate's `len`
    /// gives for a one-frame message).
    pub fn byte_len(&self) -> usize {
        match self.frames.as_slice() {
            [only] => only.len(),
            many => many.iter().map(Bytes::len).sum(),
        }
    }

    /// Appends a frame.
    pub fn push_back(&mut self, frame: impl Into<Bytes>) {
        self.frames.push(frame.into());
    }

    /// Prepends a frame (an envelope, such as a ROUTER identity).
    pub fn push_front(&mut self, frame: impl Into<Bytes>) {
        self.frames.insert(0, frame.into());
    }

    /// Removes and returns the first frame.
    pub fn pop_front(&mut self) -> Option<Bytes> {
        if self.frames.is_empty() {
            None
        } else {
            Some(self.frames.remove(0))
        }
    }

    /// The first frame, if any.
    pub fn first(&self) -> Option<&Bytes> {
        self.frames.first()
    }

    /// All frames joined into one buffer (for single-frame messages, the frame itself,
    /// without copying).
    pub fn concat(&self) -> Bytes {
        match self.frames.as_slice() {
            [] => Bytes::new(),
            [only] => only.clone(),
            many => many.concat().into(),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.frames.iter()).finish()
    }
}

impl From<Bytes> for Message {
    fn from(frame: Bytes) -> Message {
        Message {
            frames: smallvec::smallvec![frame],
        }
    }
}

impl From<Vec<u8>> for Message {
    fn from(frame: Vec<u8>) -> Message {
        Message::from(Bytes::from(frame))
    }
}

impl From<&[u8]> for Message {
    fn from(frame: &[u8]) -> Message {
        Message::from(Bytes::copy_from_slice(frame))
    }
}

impl<const N: usize> From<&[u8; N]> for Message {
    fn from(frame: &[u8; N]) -> Message {
        Message::from(&frame[..])
    }
}

impl From<&str> for Message {
    fn from(frame: &str) -> Message {
        Message::from(frame.as_bytes())
    }
}

impl From<String> for Message {
    fn from(frame: String) -> Message {
        Message::from(Bytes::from(frame))
    }
}

impl From<Vec<Bytes>> for Message {
    fn from(frames: Vec<Bytes>) -> Message {
        Message {
            frames: SmallVec::from_vec(frames),
        }
    }
}

impl FromIterator<Bytes> for Message {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Message {
        Message {
            frames: iter.into_iter().collect(),
        }
    }
}

impl<'a> IntoIterator for &'a Message {
    type Item = &'a Bytes;
    type IntoIter = std::slice::Iter<'a, Bytes>;

    fn into_iter(self) -> Self::IntoIter {
        self.frames.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_operations_keep_order() {
        let mut m = Message::from("body");
        m.push_front("");
        m.push_front("id");
        assert_eq!(m.frames(), &[&b"id"[..], b"", b"body"]);
        assert_eq!(m.pop_front().unwrap(), "id");
        assert_eq!(m.frame_count(), 2);
        assert_eq!(m.byte_len(), 4);
        assert_eq!(m.concat(), "body");
    }

    #[test]
    fn empty_frame_is_not_an_empty_message() {
        let m = Message::from("");
        assert!(!m.is_empty());
        assert!(Message::new().is_empty());
    }
}
