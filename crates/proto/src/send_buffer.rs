//! Encoded bytes waiting to be written, shaped for one `writev` per batch.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::command::Command;
use crate::frame::{FrameHeader, MAX_HEADER_LEN};
use crate::mechanism::Sealer;
use crate::message::Message;

/// Bodies up to this size take a one-byte size field.
const SHORT_MAX: usize = 255;

/// Frame bodies at least this large are queued by reference rather than copied:
/// past this size one more iovec costs less than the copy.
pub const COPY_LIMIT: usize = 8 << 10;

/// A tail grown past this (by sealed large messages, which are written from
/// it) is let go once everything in it is written.
const RETAIN_MAX: usize = 4 << 20;

/// A FIFO of encoded frames.
///
/// Small frames are copied into one contiguous tail, so a batch of many small
/// messages is a single iovec. Large bodies stay where the caller's [`Bytes`] put
/// them and are written straight from there.
///
/// ```
/// use conduit_proto::{Message, SendBuffer};
///
/// let mut buf = SendBuffer::new();
/// buf.push_message(&Message::from("hi"));
/// let mut slices = [std::io::IoSlice::new(&[]); 4];
/// let n = buf.io_slices(&mut slices);
/// assert_eq!(&*slices[0], b"\x00\x02hi");
/// assert_eq!(n, 1);
/// buf.advance(4);
/// assert!(buf.is_empty());
/// ```
#[derive(Debug, Default)]
pub struct SendBuffer {
    /// Complete chunks, written before `tail`.
    chunks: VecDeque<Bytes>,
    /// Small frames accumulate here.
    tail: BytesMut,
    len: usize,
}

impl SendBuffer {
    /// An empty buffer.
    pub fn new() -> SendBuffer {
        SendBuffer::default()
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues raw bytes (the greeting).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Queues bytes that are whole frames already, by reference: a batch
    /// of messages encoded once and shared by many queues (a PUB's
    /// subscribers), written from where it is.
    pub fn push_encoded(&mut self, frames: Bytes) {
        if frames.is_empty() {
            return;
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += frames.len();
        self.chunks.push_back(frames);
    }

    /// Queues every frame of `msg`.
    #[inline]
    pub fn push_message(&mut self, msg: &Message) {
        let frames = msg.frames();
        if let [body] = frames {
            if body.len() <= SHORT_MAX {
                // The common small message: a two-byte header and the body, copied.
                self.tail.reserve(2 + body.len());
                self.tail.extend_from_slice(&[0, body.len() as u8]);
                self.tail.extend_from_slice(body);
                self.len += 2 + body.len();
                return;
            }
        }
        for (i, body) in frames.iter().enumerate() {
            let header = FrameHeader {
                more: i + 1 < frames.len(),
                command: false,
                len: body.len() as u64,
            };
            self.push_frame(header, body);
        }
    }

    /// Queues a frame that `write` appends to the contiguous tail (a CURVE
    /// MESSAGE, sealed in place there, whatever its size).
    pub(crate) fn push_in_tail(&mut self, write: impl FnOnce(&mut BytesMut)) {
        let before = self.tail.len();
        write(&mut self.tail);
        self.len += self.tail.len() - before;
    }

    /// Queues a message, sealed in a CURVE MESSAGE box when the connection
    /// has a `sealer` (what every driver of a connection does per message).
    pub fn push_message_via(&mut self, sealer: Option<&mut Sealer>, msg: &Message) {
        match sealer {
            Some(sealer) => sealer.seal_message(msg, self),
            None => self.push_message(msg),
        }
    }

    /// Queues a command, sealed when the connection has a `sealer`.
    pub fn push_command_via(&mut self, sealer: Option<&mut Sealer>, cmd: &Command) {
        match sealer {
            Some(sealer) => sealer.seal_command(cmd, self),
            None => self.push_command(cmd),
        }
    }

    /// Queues a command frame.
    pub fn push_command(&mut self, cmd: &Command) {
        let before = self.tail.len();
        cmd.encode(&mut self.tail);
        self.len += self.tail.len() - before;
    }

    fn push_frame(&mut self, header: FrameHeader, body: &Bytes) {
        let mut encoded = [0; MAX_HEADER_LEN];
        let n = header.encode(&mut encoded);
        self.len += n + body.len();
        if body.len() < COPY_LIMIT {
            self.tail.reserve(n + body.len());
            self.tail.put_slice(&encoded[..n]);
            self.tail.put_slice(body);
        } else {
            self.tail.put_slice(&encoded[..n]);
            self.chunks.push_back(self.tail.split().freeze());
            self.chunks.push_back(body.clone());
        }
    }

    /// Fills `dst` with the pending bytes in order, as many slices as fit, and
    /// returns how many it filled.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let pending = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]))
            .filter(|s| !s.is_empty());
        let mut n = 0;
        for (slot, chunk) in dst.iter_mut().zip(pending) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// Drops everything pending.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
        self.len = 0;
    }

    /// A copy of all pending bytes, in order (for tests and in-memory drivers).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for chunk in &self.chunks {
            out.extend_from_slice(chunk);
        }
        out.extend_from_slice(&self.tail);
        out
    }

    /// Drops the first `n` bytes, which have been written.
    ///
    /// # Panics
    /// If `n` is more than [`len`](Self::len): that is a bug in the caller.
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advance past the end of the send buffer");
        self.len -= n;
        if self.len == 0 && self.tail.capacity() > RETAIN_MAX {
            // Sealed large messages grew the tail; an idle connection does
            // not keep that much.
            self.tail = BytesMut::new();
            return;
        }
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n);
                break;
            };
            if n < front.len() {
                front.advance(n);
                break;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(buf: &mut SendBuffer, max_write: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !buf.is_empty() {
            let mut slices = [IoSlice::new(&[]); 8];
            let n = buf.io_slices(&mut slices);
            let mut written = 0;
            for s in &slices[..n] {
                let take = s.len().min(max_write - written);
                out.extend_from_slice(&s[..take]);
                written += take;
                if written == max_write {
                    break;
                }
            }
            buf.advance(written);
        }
        out
    }

    #[test]
    fn small_and_large_frames_keep_their_order_under_partial_writes() {
        let big = Bytes::from(vec![9u8; COPY_LIMIT]);
        let msgs = [
            Message::from("a"),
            Message::from_frames([
                Bytes::from_static(b"h"),
                big.clone(),
                Bytes::from_static(b"t"),
            ]),
            Message::from("z"),
        ];
        let mut expected = BytesMut::new();
        for m in &msgs {
            crate::frame::put_message(&mut expected, m);
        }
        for max_write in [1, 3, 100, COPY_LIMIT + 7, usize::MAX] {
            let mut buf = SendBuffer::new();
            for m in &msgs {
                buf.push_message(m);
            }
            assert_eq!(buf.len(), expected.len());
            assert_eq!(
                drain(&mut buf, max_write),
                expected,
                "writes of {max_write}"
            );
        }
    }

    #[test]
    fn encoded_batches_keep_their_place_between_copied_frames() {
        let mut batch = BytesMut::new();
        crate::frame::put_message(&mut batch, &Message::from("b1"));
        crate::frame::put_message(&mut batch, &Message::from("b2"));
        let batch = batch.freeze();
        let mut expected = BytesMut::new();
        for m in ["a", "b1", "b2", "c"] {
            crate::frame::put_message(&mut expected, &Message::from(m));
        }
        for max_write in [1, 3, 5, usize::MAX] {
            let mut buf = SendBuffer::new();
            buf.push_message(&Message::from("a"));
            buf.push_encoded(batch.clone());
            buf.push_encoded(Bytes::new());
            buf.push_message(&Message::from("c"));
            assert_eq!(buf.len(), expected.len());
            assert_eq!(
                drain(&mut buf, max_write),
                expected,
                "writes of {max_write}"
            );
        }
        // Shared, not copied: the queue writes from the batch's own memory.
        let mut buf = SendBuffer::new();
        buf.push_encoded(batch.clone());
        let mut slices = [IoSlice::new(&[]); 2];
        assert_eq!(buf.io_slices(&mut slices), 1);
        assert_eq!(slices[0].as_ptr(), batch.as_ptr());
    }

    #[test]
    fn large_bodies_are_not_copied() {
        let big = Bytes::from(vec![1u8; COPY_LIMIT * 2]);
        let mut buf = SendBuffer::new();
        buf.push_message(&Message::from(big.clone()));
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(buf.io_slices(&mut slices), 2);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
    }
}
