//! Shared memory for large frames between conduit peers on one host.
//!
//! A frame at or above the channel's threshold is written once into a memfd,
//! which is then sealed against writing, growing and shrinking, and the memfd
//! travels as a descriptor (see `fd_passing`); the socket carries only the
//! attachment header. The receiver maps it read-only and hands it out as
//! `Bytes` without copying.
//!
//! Why memfd and descriptor passing, not a named region:
//! - Nothing has a name, so nothing can be left behind: the region lives exactly
//!   as long as a descriptor or mapping of it does, in any process. A peer that
//!   dies, a message never read, a `Bytes` dropped: each releases its share, and
//!   the kernel frees the memory with the last one. No cleanup code, no
//!   `/dev/shm` files after a crash.
//! - The seals make the region immutable before the receiver sees it, so the
//!   sender cannot change a `Bytes` under its reader, nor shrink the file and
//!   make the reader's access fault (`SIGBUS`). The receiver refuses a region
//!   without them.

use std::os::fd::{AsFd, OwnedFd};

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::Error;

/// Default size from which a frame travels in shared memory.
pub const DEFAULT_SHM_THRESHOLD: usize = 256 << 10;

/// The seals a region must carry to be mapped.
const REQUIRED: SealFlags = SealFlags::SHRINK
    .union(SealFlags::GROW)
    .union(SealFlags::WRITE)
    .union(SealFlags::SEAL);

fn failed(what: &str, e: rustix::io::Errno) -> Error {
    Error::io(what, e.into())
}

/// A sealed memfd holding `data`.
pub(crate) fn region_with(data: &[u8]) -> Result<OwnedFd, Error> {
    let fd = rustix::fs::memfd_create("conduit", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| failed("cannot create a shared memory region", e))?;
    let mut done = 0;
    while done < data.len() {
        match rustix::io::pwrite(&fd, &data[done..], done as u64) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(failed("cannot fill a shared memory region", e)),
        }
    }
    rustix::fs::fcntl_add_seals(&fd, REQUIRED)
        .map_err(|e| failed("cannot seal a shared memory region", e))?;
    Ok(fd)
}

/// A read-only mapping, unmapped when the last `Bytes` over it is dropped.
#[derive(Debug)]
struct Mapping {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and its memory immutable (sealed), so sharing
// and sending a pointer to it across threads is sound.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives, and
        // the seals keep them unchanged and present.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` is a mapping we made and nothing else unmaps.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

/// Maps a region from the peer as `Bytes` of `len` bytes, after checking that
/// it is sealed and large enough. The descriptor is closed here; the mapping
/// keeps the memory.
pub(crate) fn map(fd: OwnedFd, len: usize) -> Result<Bytes, Error> {
    let bad = |what: &str| Error::Attachment(format!("shared frame refused: {what}"));
    if len == 0 {
        return Err(bad("empty region"));
    }
    let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|_| bad("not a sealable region"))?;
    if !seals.contains(REQUIRED) {
        return Err(bad("region is not sealed"));
    }
    let size = rustix::fs::fstat(&fd)
        .map_err(|e| failed("cannot inspect a shared memory region", e))?
        .st_size;
    if u64::try_from(size).unwrap_or(0) < len as u64 {
        return Err(bad("region is smaller than announced"));
    }
    // SAFETY: a fresh shared read-only mapping of a file we checked is at least
    // `len` bytes long and cannot shrink; no Rust reference aliases it yet.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            ProtFlags::READ,
            MapFlags::SHARED,
            fd.as_fd(),
            0,
        )
    }
    .map_err(|e| failed("cannot map a shared memory region", e))?;
    Ok(Bytes::from_owner(Mapping { ptr, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_maps_back_to_its_bytes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let fd = region_with(&data).unwrap();
        let bytes = map(fd, data.len()).unwrap();
        assert_eq!(&bytes[..], &data[..]);
        // A slice keeps the mapping alive after the original is gone.
        let tail = bytes.slice(99_990..);
        drop(bytes);
        assert_eq!(&tail[..], &data[99_990..]);
    }

    #[test]
    fn unsealed_or_short_regions_are_refused() {
        let fd = rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        assert!(matches!(map(fd, 10), Err(Error::Attachment(_))));
        let fd = region_with(b"short").unwrap();
        assert!(matches!(map(fd, 6), Err(Error::Attachment(_))));
        let fd = region_with(b"short").unwrap();
        assert!(matches!(map(fd, 0), Err(Error::Attachment(_))));
    }
}
