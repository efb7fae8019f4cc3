//! Shared memory for large frames between conduit peers on one host.
//!
//! A frame at or above the channel's threshold is written once into a memfd
//! (a pooled one, see `shm_pool`, or a fresh one sealed against writing,
//! growing and shrinking), and the memfd travels as a descriptor (see
//! `fd_passing`); the socket carries only the attachment header. The receiver
//! maps it read-only, all pages at once (`MAP_POPULATE`: one call instead of a
//! fault per page), and hands it out as `Bytes` without copying. A frame that
//! already lies in a region made with [`SharedBytesMut`] is not copied at all:
//! its region and offset are sent.
//!
//! Why memfd and descriptor passing, not a named region:
//! - Nothing has a name, so nothing can be left behind: the region lives exactly
//!   as long as a descriptor or mapping of it does, in any process. A peer that
//!   dies, a message never read, a `Bytes` dropped: each releases its share, and
//!   the kernel frees the memory with the last one. No cleanup code, no
//!   `/dev/shm` files after a crash.
//! - Seals fix what the receiver relies on. Every region's size is sealed, so
//!   the sender cannot shrink it and make the reader's access fault (`SIGBUS`);
//!   the receiver refuses a region without that seal. Fresh regions and
//!   `SharedBytesMut` ones are sealed against writing too, so their bytes
//!   cannot change under a reader; pooled ones are not (the sender writes them
//!   again), and stay unchanged while read because the sender waits for the
//!   reader's release (`shm_pool`).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::Error;
use crate::shm_pool::Ledger;

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
    /// For a pooled region: the ledger slot to count the release in, once
    /// unmapped.
    release: Option<(Arc<Ledger>, u32)>,
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
        // Only now may the sender write the region again.
        if let Some((ledger, slot)) = self.release.take() {
            ledger.release(slot);
        }
    }
}

/// Maps `len` bytes at `offset` of a region from the peer as `Bytes`, after
/// checking that it is sealed and large enough. The descriptor is closed here;
/// the mapping keeps the memory.
///
/// A pooled region (`release` given) needs only its size sealed, and counts
/// its release in the ledger when the mapping goes (see `shm_pool`).
pub(crate) fn map(
    fd: OwnedFd,
    offset: usize,
    len: usize,
    release: Option<(Arc<Ledger>, u32)>,
) -> Result<Bytes, Error> {
    let bad = |what: &str| Error::Attachment(format!("shared frame refused: {what}"));
    if len == 0 {
        return Err(bad("empty region"));
    }
    let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|_| bad("not a sealable region"))?;
    let required = if release.is_some() {
        crate::shm_pool::FIXED_SIZE
    } else {
        REQUIRED
    };
    if !seals.contains(required) {
        return Err(bad("region is not sealed"));
    }
    let size = rustix::fs::fstat(&fd)
        .map_err(|e| failed("cannot inspect a shared memory region", e))?
        .st_size;
    let end = offset
        .checked_add(len)
        .ok_or_else(|| bad("past the region's end"))?;
    if u64::try_from(size).unwrap_or(0) < end as u64 {
        return Err(bad("region is smaller than announced"));
    }
    let start = offset - offset % page_size();
    let mut mapping = Mapping::new(&fd, start, end - start, ProtFlags::READ)?;
    mapping.release = release;
    Ok(Bytes::from_owner(mapping).slice(offset - start..))
}

fn page_size() -> usize {
    // SAFETY: sysconf only reads a system setting.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

impl Mapping {
    /// Maps `len` bytes of `fd` from `offset` (page-aligned), all pages present
    /// at once: one system call instead of a fault per page on first reading.
    fn new(fd: &OwnedFd, offset: usize, len: usize, prot: ProtFlags) -> Result<Mapping, Error> {
        // SAFETY: a fresh shared mapping of a file we checked is at least
        // `offset + len` bytes long (and, read-only, cannot shrink: sealed); no
        // Rust reference aliases it yet.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                MapFlags::SHARED | MapFlags::POPULATE,
                fd.as_fd(),
                offset as u64,
            )
        }
        .map_err(|e| failed("cannot map a shared memory region", e))?;
        Ok(Mapping {
            ptr,
            len,
            release: None,
        })
    }
}

/// Regions this process made with [`SharedBytesMut`], by address: a frame
/// inside one is sent as a reference to it, without copying.
static REGIONS: Mutex<BTreeMap<usize, (usize, RawFd)>> = Mutex::new(BTreeMap::new());

fn regions() -> std::sync::MutexGuard<'static, BTreeMap<usize, (usize, RawFd)>> {
    REGIONS.lock().unwrap_or_else(|e| e.into_inner())
}

/// If `frame` lies inside a region made by [`SharedBytesMut::freeze`], a
/// duplicate of the region's descriptor and the frame's offset in it.
pub(crate) fn find(frame: &[u8]) -> Option<(OwnedFd, usize)> {
    let addr = frame.as_ptr() as usize;
    let regions = regions();
    let (&start, &(len, fd)) = regions.range(..=addr).next_back()?;
    if addr + frame.len() > start + len {
        return None;
    }
    // SAFETY: the entry is removed, under this lock, before its descriptor is
    // closed; so `fd` is open while we hold the lock.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    Some((fd.try_clone_to_owned().ok()?, addr - start))
}

/// A frozen region: its read-only mapping and its descriptor.
#[derive(Debug)]
struct Region {
    mapping: Mapping,
    /// Open while the region is, for `find` to duplicate.
    _fd: OwnedFd,
}

impl AsRef<[u8]> for Region {
    fn as_ref(&self) -> &[u8] {
        self.mapping.as_ref()
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // Out of the registry before the descriptor closes (then the mapping
        // goes, in field order), so `find` never sees a closed descriptor.
        regions().remove(&(self.mapping.ptr as usize));
    }
}

/// A buffer in shared memory, to fill in place and then send without a copy.
///
/// A frame of a message sent to a conduit peer on this host normally goes
/// through shared memory by being copied into a fresh region once. A frame
/// made here is already in one: [`freeze`](Self::freeze) turns it into
/// `Bytes` (immutable from then on, sealed), and any frame cut from those
/// `Bytes` is sent as a reference to the region, as often as you like, to as
/// many peers as you like, without copying. Other peers (libzmq, TCP) get the
/// bytes as usual.
///
/// ```
/// let mut buf = conduit::SharedBytesMut::zeroed(1 << 20)?;
/// buf[..5].copy_from_slice(b"hello");
/// let frame = buf.freeze()?;
/// let (a, b) = conduit::Channel::pair()?;
/// a.send(frame.clone())?; // no copy: the peer maps the same memory
/// assert_eq!(&b.recv()?.frames()[0][..5], b"hello");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SharedBytesMut {
    /// At least one byte: a mapping cannot be empty.
    mapping: Mapping,
    /// The length asked for.
    len: usize,
    fd: OwnedFd,
}

impl SharedBytesMut {
    /// A region of `len` zero bytes.
    pub fn zeroed(len: usize) -> Result<SharedBytesMut, Error> {
        let fd =
            rustix::fs::memfd_create("conduit", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
                .map_err(|e| failed("cannot create a shared memory region", e))?;
        let mapped = len.max(1);
        rustix::fs::ftruncate(&fd, mapped as u64)
            .map_err(|e| failed("cannot size a shared memory region", e))?;
        let mapping = Mapping::new(&fd, 0, mapped, ProtFlags::READ | ProtFlags::WRITE)?;
        Ok(SharedBytesMut { mapping, len, fd })
    }

    /// Seals the region (no more writes, from here or anywhere) and returns it
    /// as `Bytes`.
    pub fn freeze(self) -> Result<Bytes, Error> {
        let SharedBytesMut { mapping, len, fd } = self;
        let mapped = mapping.len;
        // Sealing against writes needs the writable mapping gone.
        drop(mapping);
        rustix::fs::fcntl_add_seals(&fd, REQUIRED)
            .map_err(|e| failed("cannot seal a shared memory region", e))?;
        let mapping = Mapping::new(&fd, 0, mapped, ProtFlags::READ)?;
        regions().insert(mapping.ptr as usize, (len, fd.as_raw_fd()));
        Ok(Bytes::from_owner(Region { mapping, _fd: fd }).slice(..len))
    }
}

impl std::ops::Deref for SharedBytesMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.mapping.as_ref()[..self.len]
    }
}

impl std::ops::DerefMut for SharedBytesMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: a writable mapping of at least `len` bytes that only `self`
        // refers to.
        unsafe { std::slice::from_raw_parts_mut(self.mapping.ptr.cast::<u8>(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_region_maps_back_to_its_bytes() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let fd = region_with(&data).unwrap();
        let bytes = map(fd, 0, data.len(), None).unwrap();
        assert_eq!(&bytes[..], &data[..]);
        // A slice keeps the mapping alive after the original is gone.
        let tail = bytes.slice(99_990..);
        drop(bytes);
        assert_eq!(&tail[..], &data[99_990..]);
    }

    #[test]
    fn a_frozen_buffer_is_found_by_address_until_dropped() {
        let mut buf = SharedBytesMut::zeroed(3 * 4096 + 10).unwrap();
        buf[5000] = 42;
        let bytes = buf.freeze().unwrap();
        let part = bytes.slice(4096..8000);
        let (fd, offset) = find(&part).unwrap();
        assert_eq!(offset, 4096);
        let mapped = map(fd, offset, part.len(), None).unwrap();
        assert_eq!(mapped[5000 - 4096], 42);
        assert_eq!(&mapped[..], &part[..]);
        // Heap bytes are not in a region.
        assert!(find(&[0u8; 100]).is_none());
        // Only this test registers regions in this binary.
        let start = bytes.as_ptr() as usize;
        assert!(regions().contains_key(&start));
        drop((bytes, part, mapped));
        assert!(!regions().contains_key(&start));
    }

    #[test]
    fn unsealed_or_short_regions_are_refused() {
        let fd = rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 4096).unwrap();
        assert!(matches!(map(fd, 0, 10, None), Err(Error::Attachment(_))));
        let fd = region_with(b"short").unwrap();
        assert!(matches!(map(fd, 0, 6, None), Err(Error::Attachment(_))));
        let fd = region_with(b"short").unwrap();
        assert!(matches!(map(fd, 0, 0, None), Err(Error::Attachment(_))));
        let fd = region_with(b"short").unwrap();
        assert!(matches!(
            map(fd, usize::MAX, 2, None),
            Err(Error::Attachment(_))
        ));
    }
}
