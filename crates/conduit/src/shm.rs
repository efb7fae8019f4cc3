//! Shared memory for large frames between conduit peers on one host.
//!
//! A frame at or above the channel's threshold is written once into a memfd
//! (a pooled one, see `shm_pool`, or a fresh one sealed against writing,
//! growing and shrinking), and the memfd travels as a descriptor (see
//! `fd_passing`); the socket carries only the attachment header. The receiver
//! maps it read-only, all pages at once (`MAP_POPULATE`: one call instead of a
//! fault per page), and hands it out as `Bytes` without copying; a pooled
//! region it maps once and keeps mapped for the frames that follow in it
//! ([`Kept`]). A frame that
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

/// Most bytes of the peer's pooled regions a reader keeps mapped between
/// messages (as much as a sender pools).
const KEPT_MAX_BYTES: usize = 128 << 20;

/// A reader's mappings of its peer's pooled regions, kept from one message to
/// the next.
///
/// Mapping a 1 MiB region and unmapping it again costs as much as copying it
/// (perf: populating 256 page-table entries, then tearing them down and
/// flushing them), and a sender reuses a few regions over and over. So the
/// first frame in a region maps all of it and keeps the mapping, by ledger
/// slot; later frames in the same region (the same file: device and inode)
/// lease that mapping. A lease counts the release in the ledger when dropped,
/// as an unmapping would: nothing in this process reads the mapping outside a
/// lease, so the sender may write the region again from then on.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    by_slot: std::collections::HashMap<u32, KeptRegion>,
    bytes: usize,
}

#[derive(Debug)]
struct KeptRegion {
    dev: u64,
    ino: u64,
    mapping: Arc<Mapping>,
}

/// A frame's hold on a kept mapping.
struct Lease {
    mapping: Arc<Mapping>,
    ledger: Arc<Ledger>,
    slot: u32,
}

impl AsRef<[u8]> for Lease {
    fn as_ref(&self) -> &[u8] {
        (*self.mapping).as_ref()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.ledger.release(self.slot);
    }
}

impl Kept {
    /// [`map`] for a frame in a pooled region: leases the mapping kept for
    /// this region, or maps the region and keeps it. A region larger than
    /// twice the frame (the sender never pools one) or past
    /// [`KEPT_MAX_BYTES`] is mapped for this frame only.
    pub(crate) fn map(
        &mut self,
        fd: OwnedFd,
        offset: usize,
        len: usize,
        ledger: Arc<Ledger>,
        slot: u32,
    ) -> Result<Bytes, Error> {
        let bad = |what: &str| Error::Attachment(format!("shared frame refused: {what}"));
        let stat = rustix::fs::fstat(&fd)
            .map_err(|e| failed("cannot inspect a shared memory region", e))?;
        let size = usize::try_from(stat.st_size).unwrap_or(0);
        let end = offset
            .checked_add(len)
            .ok_or_else(|| bad("past the region's end"))?;
        if len == 0 || size < end {
            // `map` says which.
            return map(fd, offset, len, Some((ledger, slot)));
        }
        let (dev, ino) = (stat.st_dev as u64, stat.st_ino as u64);
        let lease = |mapping: &Arc<Mapping>, ledger| {
            Bytes::from_owner(Lease {
                mapping: mapping.clone(),
                ledger,
                slot,
            })
            .slice(offset..end)
        };
        if let Some(kept) = self.by_slot.get(&slot) {
            // The same file: its size seal, checked when it was kept, holds
            // for good, and its size is what was mapped.
            if (kept.dev, kept.ino) == (dev, ino) {
                return Ok(lease(&kept.mapping, ledger));
            }
        }
        let replaced = self.by_slot.get(&slot).map_or(0, |k| k.mapping.len);
        if size > len.saturating_mul(2).max(page_size())
            || self.bytes - replaced + size > KEPT_MAX_BYTES
        {
            return map(fd, offset, len, Some((ledger, slot)));
        }
        let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|_| bad("not a sealable region"))?;
        if !seals.contains(crate::shm_pool::FIXED_SIZE) {
            return Err(bad("region is not sealed"));
        }
        let mapping = Arc::new(Mapping::new(&fd, 0, size, ProtFlags::READ)?);
        let bytes = lease(&mapping, ledger);
        self.bytes = self.bytes - replaced + size;
        self.by_slot.insert(slot, KeptRegion { dev, ino, mapping });
        Ok(bytes)
    }
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

    /// A pooled region as a sender makes it, holding `data`.
    fn pooled_with(data: &[u8]) -> OwnedFd {
        let fd = crate::shm_pool::sized_memfd(data.len()).unwrap();
        rustix::io::pwrite(&fd, data, 0).unwrap();
        fd
    }

    #[test]
    fn a_pooled_region_is_mapped_once_and_released_per_frame() {
        let ledger =
            Ledger::open(crate::shm_pool::sized_memfd(crate::shm_pool::LEDGER_LEN).unwrap())
                .unwrap();
        let mut kept = Kept::default();
        let data: Vec<u8> = (0..3 * 4096u32).map(|i| (i / 7) as u8).collect();
        let region = pooled_with(&data);
        let dup = || region.try_clone().unwrap();
        let first = kept.map(dup(), 0, data.len(), ledger.clone(), 3).unwrap();
        let second = kept.map(dup(), 100, 5000, ledger.clone(), 3).unwrap();
        assert_eq!(&first[..], &data[..]);
        assert_eq!(&second[..], &data[100..5100]);
        // The same mapping, leased twice.
        assert_eq!(second.as_ptr() as usize - first.as_ptr() as usize, 100);
        assert_eq!(kept.by_slot.len(), 1);
        drop(first);
        assert_eq!(ledger.released(3), 1);
        drop(second);
        assert_eq!(ledger.released(3), 2);
        // Another region in the same slot replaces the kept one.
        let other = pooled_with(&[9u8; 4096]);
        let third = kept.map(other, 0, 4096, ledger.clone(), 3).unwrap();
        assert!(third.iter().all(|&b| b == 9));
        assert_eq!(kept.by_slot.len(), 1);
        assert_eq!(kept.bytes, 4096);
        drop(third);
        assert_eq!(ledger.released(3), 3);
        // A region far larger than its frame is mapped for the frame only, and
        // still released.
        let large = pooled_with(&vec![1u8; 64 * 4096]);
        let frame = kept.map(large, 4096, 10, ledger.clone(), 4).unwrap();
        assert_eq!(&frame[..], &[1u8; 10]);
        assert!(!kept.by_slot.contains_key(&4));
        drop(frame);
        assert_eq!(ledger.released(4), 1);
        // Hostile: past the end, empty, or not sealed; nothing counted.
        assert!(kept.map(dup(), data.len(), 1, ledger.clone(), 5).is_err());
        assert!(kept.map(dup(), 0, 0, ledger.clone(), 5).is_err());
        assert!(kept.map(dup(), usize::MAX, 2, ledger.clone(), 5).is_err());
        let unsealed = rustix::fs::memfd_create("test", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&unsealed, 4096).unwrap();
        assert!(kept.map(unsealed, 0, 10, ledger.clone(), 5).is_err());
        assert_eq!(ledger.released(5), 0);
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
