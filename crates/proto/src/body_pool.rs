//! Buffers for large frame bodies, used again once the application drops them.
//!
//! A large body is read into a buffer of its own ([`crate::LARGE_BODY`]). A new
//! allocation of a megabyte is fresh pages from the kernel, each faulted in and
//! zeroed as the read first touches it: on a 1 MiB TCP stream that was a fifth
//! of the receiver's time (perf: `clear_page_erms`, `exc_page_fault`). So when
//! the last `Bytes` of a body goes, its buffer comes back here, and the next
//! body of about its size is read into it: pages already mapped, and often
//! still in the cache.
//!
//! One pool per process, small and bounded: a stream of large messages needs
//! only the buffer being read and the one the application holds. Bodies
//! larger than [`MAX_POOLED`] are not kept; neither is a buffer that would take
//! the pool past [`POOL_BYTES`].

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};

/// Most bytes the pool keeps.
const POOL_BYTES: usize = 8 << 20;

/// Most buffers the pool keeps.
const POOL_BUFFERS: usize = 4;

/// The largest body whose buffer is kept.
const MAX_POOLED: usize = 4 << 20;

/// The process's pool.
static POOL: BodyPool = BodyPool::new();

/// An empty buffer for a body of `len` bytes, from the process's pool or new.
pub(crate) fn take(len: usize) -> BytesMut {
    POOL.take(len)
}

/// The body as `Bytes`; its buffer returns to the process's pool when the
/// last `Bytes` of it is dropped.
pub(crate) fn freeze(body: BytesMut) -> Bytes {
    POOL.freeze(body)
}

/// Buffers waiting to be used again.
struct BodyPool {
    buffers: Mutex<Vec<BytesMut>>,
}

impl BodyPool {
    const fn new() -> BodyPool {
        BodyPool {
            buffers: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<BytesMut>> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pooled buffer of at least `len` bytes' capacity and at most twice
    /// that, or a new one.
    fn take(&self, len: usize) -> BytesMut {
        if len <= MAX_POOLED {
            let mut pool = self.lock();
            if let Some(i) = pool
                .iter()
                .position(|b| b.capacity() >= len && b.capacity() / 2 <= len)
            {
                return pool.swap_remove(i);
            }
        }
        BytesMut::with_capacity(len)
    }

    fn freeze(&'static self, body: BytesMut) -> Bytes {
        if body.capacity() > MAX_POOLED {
            return body.freeze();
        }
        Bytes::from_owner(Pooled { body, pool: self })
    }

    fn give_back(&self, mut buf: BytesMut) {
        buf.clear();
        let mut pool = self.lock();
        let held: usize = pool.iter().map(BytesMut::capacity).sum();
        if pool.len() < POOL_BUFFERS && held + buf.capacity() <= POOL_BYTES {
            pool.push(buf);
        }
    }
}

/// A body that goes back to its pool when dropped.
struct Pooled {
    body: BytesMut,
    pool: &'static BodyPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.body
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool of the test's own: tests run at once in one process.
    fn pool() -> &'static BodyPool {
        Box::leak(Box::new(BodyPool::new()))
    }

    const LEN: usize = crate::LARGE_BODY * 3;

    #[test]
    fn a_body_comes_back_only_after_its_last_bytes_go() {
        let pool = pool();
        let mut body = pool.take(LEN);
        body.extend_from_slice(&[1; LEN]);
        let at = body.as_ptr();
        let bytes = pool.freeze(body);
        let part = bytes.slice(10..20);
        drop(bytes);
        // Still read through `part`: never handed out again meanwhile.
        assert_ne!(pool.take(LEN).as_ptr(), at);
        assert_eq!(&part[..], [1; 10]);
        drop(part);
        let again = pool.take(LEN);
        assert_eq!(
            again.as_ptr(),
            at,
            "the dropped body's buffer is used again"
        );
        assert!(again.is_empty());
        // Not for a body much smaller: it would pin twice its memory.
        let again = pool.freeze(again);
        drop(again);
        assert_ne!(pool.take(LEN / 3).as_ptr(), at);
    }

    #[test]
    fn the_pool_is_bounded_and_keeps_no_huge_buffer() {
        let pool = pool();
        drop(pool.freeze(BytesMut::from(&vec![0u8; MAX_POOLED + 1][..])));
        assert!(pool.lock().is_empty());
        let bodies: Vec<Bytes> = (0..POOL_BUFFERS + 3)
            .map(|_| {
                let mut body = pool.take(MAX_POOLED);
                body.extend_from_slice(&vec![2; MAX_POOLED]);
                pool.freeze(body)
            })
            .collect();
        drop(bodies);
        let held = pool.lock();
        assert!(!held.is_empty() && held.len() <= POOL_BUFFERS);
        assert!(held.iter().map(BytesMut::capacity).sum::<usize>() <= POOL_BYTES);
    }
}
