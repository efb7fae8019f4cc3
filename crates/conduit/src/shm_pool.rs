//! Reusing shared regions between a sender and its reader.
//!
//! A fresh memfd per large frame costs the kernel a page allocation, page-cache
//! insertion and freeing per 4 KiB: most of the time of a 1 MiB send (perf: the
//! copy itself is a fifth). So a sender keeps a small pool of regions per
//! channel and copies each frame into one its reader has released.
//!
//! Release is counted in a ledger: one page of `AtomicU32`s that the sender
//! creates and sends once, and that both sides map writable. Slot `i` counts how
//! often the reader has let go of region `i` (the last `Bytes` of a frame in it
//! dropped); the sender counts how often it sent it, and reuses it only when the
//! two agree. The reader's count goes up once nothing of its own reads the
//! frame any more (`Release`), the sender reads it with `Acquire`, so the
//! sender never writes while the reader can still read. The reader keeps its
//! mapping of a pooled region from one frame to the next (`shm::Kept`): mapping
//! 1 MiB and unmapping it again cost as much as copying it.
//!
//! The sender does not run ahead of its reader: while the reader has messages
//! left to read and more than a few MiB of regions wait for it, the sender
//! waits for a release (a futex on the ledger's release count), for a few
//! milliseconds at most, instead of taking a new region. A sender that ran ahead would fill new regions, long
//! out of the cache once the reader gets to them; kept to a few, the reader
//! finds what it maps where the sender's copy left it, and the sender copies
//! into memory it wrote a moment ago.
//!
//! Pooled regions are sealed against shrinking and growing (so a mapping can
//! never fault) but not against writing, since the sender writes them again:
//! their bytes are unchanged for as long as the reader holds them only because
//! the sender keeps to the ledger. Fresh regions (the pool is full, or its
//! regions are all held) are sealed against writing too, as before.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::Error;

/// Slots in a ledger: one page of counters, less the two words for waiting.
pub(crate) const SLOTS: usize = 1022;

/// The ledger's word counting every release, to wait on (a futex).
const RELEASES: usize = SLOTS;

/// The ledger's word that is 1 while the sender waits for a release.
const WAITING: usize = SLOTS + 1;

/// A shared frame's slot when its region is not pooled.
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// Most bytes of pooled regions one channel keeps.
const POOL_MAX_BYTES: usize = 128 << 20;

/// Seals of a pooled region and of the ledger: the size is fixed.
pub(crate) const FIXED_SIZE: SealFlags = SealFlags::SHRINK.union(SealFlags::GROW);

pub(crate) const LEDGER_LEN: usize = (SLOTS + 2) * 4;

/// Bytes of pooled regions the reader may have to read before the sender waits
/// for it (when the reader has not yet read every message): a sender that runs
/// ahead over fresh regions copies into memory long out of the cache, and the
/// reader reads it from there; kept within a few regions, the bytes a reader
/// maps are still in the cache the sender wrote them through. At least two
/// regions are always allowed, so that a large frame can be written while the
/// reader reads the last one.
const IN_FLIGHT_MAX: usize = 4 << 20;

/// Longest single wait for a release before looking again whether the reader
/// is behind at all (it may hold what it read, and release nothing).
const WAIT_SLICE: std::time::Duration = std::time::Duration::from_millis(1);

/// Longest the sender waits for a release before it takes a new region after
/// all. Waiting is for the cache, not back-pressure (the queue limit and
/// `SHARED_UNREAD_BUDGET` are that): a reader that is not reading at all (it
/// sends first, on the same thread, or is busy) must not block the sender, or
/// two peers sending each other large frames before reading would deadlock.
/// A reader that reads releases a 1 MiB frame within tens of microseconds,
/// and 64 MiB within a few milliseconds.
const PATIENCE: std::time::Duration = std::time::Duration::from_millis(10);

fn failed(what: &str, e: rustix::io::Errno) -> Error {
    Error::io(what, e.into())
}

/// A writable shared mapping of a whole memfd, unmapped when dropped.
#[derive(Debug)]
struct Writable {
    ptr: *mut std::ffi::c_void,
    len: usize,
}

// SAFETY: the mapping is plain memory; who writes it when is governed by the
// ledger (regions) or is atomic (the ledger).
unsafe impl Send for Writable {}
unsafe impl Sync for Writable {}

impl Writable {
    fn new(fd: &OwnedFd, len: usize) -> Result<Writable, Error> {
        // SAFETY: a fresh shared mapping of a memfd at least `len` long whose
        // size is sealed; no Rust reference aliases it yet.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | MapFlags::POPULATE,
                fd.as_fd(),
                0,
            )
        }
        .map_err(|e| failed("cannot map a shared memory region", e))?;
        Ok(Writable { ptr, len })
    }
}

impl Drop for Writable {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing else unmaps it.
        let _ = unsafe { rustix::mm::munmap(self.ptr, self.len) };
    }
}

pub(crate) fn sized_memfd(len: usize) -> Result<OwnedFd, Error> {
    let fd = rustix::fs::memfd_create("conduit", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| failed("cannot create a shared memory region", e))?;
    rustix::fs::ftruncate(&fd, len as u64)
        .map_err(|e| failed("cannot size a shared memory region", e))?;
    rustix::fs::fcntl_add_seals(&fd, FIXED_SIZE)
        .map_err(|e| failed("cannot seal a shared memory region", e))?;
    Ok(fd)
}

/// The page of release counters, mapped by both sides.
#[derive(Debug)]
pub(crate) struct Ledger {
    map: Writable,
    /// The peer's ledger keeps its descriptor: a channel handed to another
    /// process takes it along.
    fd: Option<OwnedFd>,
}

impl Ledger {
    fn slot(&self, i: usize) -> &AtomicU32 {
        assert!(i < SLOTS + 2);
        // SAFETY: the mapping is LEDGER_LEN bytes, page-aligned, so slot `i` is an
        // aligned u32 inside it, only ever accessed atomically.
        unsafe { &*(self.map.ptr.cast::<AtomicU32>().add(i)) }
    }

    /// Maps a ledger the peer sent, after checking its size cannot change.
    pub(crate) fn open(fd: OwnedFd) -> Result<Arc<Ledger>, Error> {
        let bad = |what: &str| Error::Attachment(format!("shared ledger refused: {what}"));
        let seals = rustix::fs::fcntl_get_seals(&fd).map_err(|_| bad("not a sealable region"))?;
        if !seals.contains(FIXED_SIZE) {
            return Err(bad("its size is not sealed"));
        }
        let size = rustix::fs::fstat(&fd)
            .map_err(|e| failed("cannot inspect a shared memory region", e))?
            .st_size;
        if u64::try_from(size).unwrap_or(0) < LEDGER_LEN as u64 {
            return Err(bad("too small"));
        }
        Ok(Arc::new(Ledger {
            map: Writable::new(&fd, LEDGER_LEN)?,
            fd: Some(fd),
        }))
    }

    /// A duplicate of the descriptor of a ledger the peer sent.
    pub(crate) fn dup_fd(&self) -> Option<OwnedFd> {
        self.fd.as_ref()?.try_clone().ok()
    }

    /// Counts one release of `slot` (the reader's mapping of it is gone), and
    /// wakes the sender if it waits for one.
    pub(crate) fn release(&self, slot: u32) {
        self.slot(slot as usize).fetch_add(1, Ordering::Release);
        // With `wait_release`'s SeqCst pair: either the sender sees this count
        // before it sleeps, or we see it waiting and wake it.
        self.slot(RELEASES).fetch_add(1, Ordering::SeqCst);
        if self.slot(WAITING).load(Ordering::SeqCst) != 0 {
            futex(self.slot(RELEASES), libc::FUTEX_WAKE, i32::MAX as u32, None);
        }
    }

    /// How many releases the reader has counted in all.
    fn releases(&self) -> u32 {
        self.slot(RELEASES).load(Ordering::SeqCst)
    }

    /// How often the reader released `slot`.
    #[cfg(test)]
    pub(crate) fn released(&self, slot: u32) -> u32 {
        self.slot(slot as usize).load(Ordering::Acquire)
    }

    /// Waits at most `timeout` for the reader's next release, unless `ready`
    /// (asked after announcing the wait, so no release is missed) says a
    /// region is free already.
    fn wait_release(&self, timeout: std::time::Duration, ready: impl FnOnce() -> bool) {
        self.slot(WAITING).store(1, Ordering::SeqCst);
        let seen = self.slot(RELEASES).load(Ordering::SeqCst);
        if !ready() {
            futex(self.slot(RELEASES), libc::FUTEX_WAIT, seen, Some(timeout));
        }
        self.slot(WAITING).store(0, Ordering::SeqCst);
    }
}

/// `futex(2)` on a word of the ledger: shared between processes, so not
/// `FUTEX_PRIVATE_FLAG`. Errors (a changed word, a timeout, a signal) all mean
/// "look again", which every caller does.
fn futex(word: &AtomicU32, op: libc::c_int, val: u32, timeout: Option<std::time::Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs() as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is an aligned u32 in a mapping that outlives the call; the
    // timeout, if any, lives on this stack frame.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

#[derive(Debug)]
struct Pooled {
    fd: OwnedFd,
    map: Writable,
    slot: u32,
    /// Times sent; free when the ledger's count has caught up.
    sent: u32,
}

/// A sender's regions for one channel.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    /// The ledger and its descriptor, once made.
    ledger: Option<(Arc<Ledger>, OwnedFd)>,
    /// Whether the peer has been sent the ledger.
    ledger_sent: bool,
    /// The ledger's release count when the reader last made the sender wait
    /// [`PATIENCE`] in vain: no more waiting until it releases something.
    stalled: Option<u32>,
    regions: Vec<Pooled>,
    bytes: usize,
}

/// A frame placed in a pooled region.
#[derive(Debug)]
pub(crate) struct Placed {
    /// A duplicate of the region's descriptor, to send.
    pub(crate) fd: OwnedFd,
    pub(crate) slot: u32,
    /// The ledger's descriptor, when the peer does not have it yet: to send
    /// ahead of the regions.
    pub(crate) ledger: Option<OwnedFd>,
}

impl Pool {
    /// Copies `data` into a released pooled region (or a new one, while the
    /// pool has room); `None` when neither is possible.
    ///
    /// While the reader is behind (`behind`: it has not read every message
    /// yet) and more than [`IN_FLIGHT_MAX`] bytes wait for it, waits for it to
    /// release a region rather than take a new one: until `deadline` (if any),
    /// for at most [`PATIENCE`], and not at all while the reader has released
    /// nothing since it last left the sender waiting that long.
    pub(crate) fn place(
        &mut self,
        data: &[u8],
        behind: impl Fn() -> bool,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<Placed>, Error> {
        if self.ledger.is_none() {
            let fd = sized_memfd(LEDGER_LEN)?;
            let ledger = Arc::new(Ledger {
                map: Writable::new(&fd, LEDGER_LEN)?,
                fd: None,
            });
            self.ledger = Some((ledger, fd));
        }
        let (ledger, ledger_fd) = self.ledger.as_ref().expect("made above");
        let len = data.len();
        let free = |r: &Pooled| ledger.slot(r.slot as usize).load(Ordering::Acquire) == r.sent;
        // A free region no more than twice the frame's size.
        let fits = |r: &Pooled| r.map.len >= len && r.map.len <= len.saturating_mul(2) && free(r);
        let mut found = self.regions.iter().position(fits);
        let mut give_up = None;
        while found.is_none() {
            let (count, bytes) = self
                .regions
                .iter()
                .filter(|r| !free(r))
                .fold((0, 0), |(n, b), r| (n + 1, b + r.map.len));
            let releases = ledger.releases();
            if count < 2
                || bytes + len <= IN_FLIGHT_MAX
                || self.stalled == Some(releases)
                || !behind()
            {
                // Room in flight; the reader is not reading now; or it has
                // read every message and holds on to what is in flight: no
                // reason to wait.
                break;
            }
            let now = std::time::Instant::now();
            let patience = *give_up.get_or_insert(now + PATIENCE);
            if now >= patience {
                self.stalled = Some(releases);
                break;
            }
            let until = deadline.map_or(patience, |d| d.min(patience));
            if now >= until {
                break;
            }
            ledger.wait_release((until - now).min(WAIT_SLICE), || {
                self.regions.iter().any(&fits)
            });
            found = self.regions.iter().position(fits);
        }
        let index = match found {
            Some(i) => i,
            None => {
                if self.regions.len() >= SLOTS || self.bytes + len > POOL_MAX_BYTES {
                    // Full: drop a free region that did not fit, to make room
                    // for sizes in use now.
                    let free = self.regions.iter().position(|r| {
                        ledger.slot(r.slot as usize).load(Ordering::Acquire) == r.sent
                    });
                    match free {
                        Some(i) if self.bytes - self.regions[i].map.len + len <= POOL_MAX_BYTES => {
                            let gone = self.regions.swap_remove(i);
                            self.bytes -= gone.map.len;
                        }
                        _ => return Ok(None),
                    }
                }
                let slot = (0..SLOTS as u32)
                    .find(|s| self.regions.iter().all(|r| r.slot != *s))
                    .expect("fewer regions than slots");
                let fd = sized_memfd(len)?;
                let map = Writable::new(&fd, len)?;
                self.bytes += len;
                // A new slot may hold counts of a region it named before.
                let sent = ledger.slot(slot as usize).load(Ordering::Acquire);
                self.regions.push(Pooled {
                    fd,
                    map,
                    slot,
                    sent,
                });
                self.regions.len() - 1
            }
        };
        let region = &mut self.regions[index];
        // SAFETY: the reader released every earlier use of this region (the
        // ledger's count equals ours), so nobody reads it while we write; the
        // mapping is at least `len` bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), region.map.ptr.cast::<u8>(), len) };
        region.sent = region.sent.wrapping_add(1);
        let fd = region
            .fd
            .try_clone()
            .map_err(|e| Error::io("cannot duplicate a region's descriptor", e))?;
        let ledger = if self.ledger_sent {
            None
        } else {
            self.ledger_sent = true;
            Some(
                ledger_fd
                    .try_clone()
                    .map_err(|e| Error::io("cannot duplicate the ledger's descriptor", e))?,
            )
        };
        Ok(Some(Placed {
            fd,
            slot: self.regions[index].slot,
            ledger,
        }))
    }

    /// Takes back what [`place`](Self::place) counted for a message that was
    /// not sent after all (nothing of it was written).
    pub(crate) fn undo(&mut self, slots: &[u32], ledger: bool) {
        for r in self.regions.iter_mut().filter(|r| slots.contains(&r.slot)) {
            r.sent = r.sent.wrapping_sub(1);
        }
        if ledger {
            self.ledger_sent = false;
        }
    }
}
