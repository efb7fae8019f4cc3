//! Descriptors inside messages, over Unix sockets (`SCM_RIGHTS`).
//!
//! # Wire form, between conduit peers only
//!
//! A conduit channel over a Unix socket announces [`PROPERTY`] in its READY. To
//! a peer that announced it too, a message with descriptors (or with frames in
//! shared memory, see `shm`) goes out as:
//!
//! 1. a command named [`ATTACH_COMMAND`] with no body, then
//! 2. the message with one more frame in front: the attachment header
//!    (`version 1 | user descriptors u8 | ledger u8 | shared frames u16 | per
//!    shared frame: index u32, offset u64, length u64, slot u32`, big-endian;
//!    see `shm_pool` for the ledger and slots),
//!
//! all in one `sendmsg` whose ancillary data carries the descriptors: the
//! user's, the ledger if the header says so, then one per shared frame. Linux attaches them to the first byte of
//! that write, so they arrive with the read that brings the command's first byte,
//! before the command is decoded; and a read never returns descriptors of two
//! writes, so each read brings at most one group. libzmq peers never announce the
//! property, so they never see the command or the header.
//!
//! # What the receiving side guarantees
//!
//! - Descriptors arrive close-on-exec (`MSG_CMSG_CLOEXEC`).
//! - A group is claimed by the command, and given to the message right behind
//!   it, under the reader's lock, so concurrent receivers cannot swap them.
//! - At most one unclaimed group is kept: a peer that sends descriptors without
//!   the command has the older ones closed. A message dropped after receiving
//!   closes its descriptors with it (they are `OwnedFd`s from arrival on).
//! - A header that does not match the descriptors that came breaks the channel
//!   with a protocol-level error; nothing is left open.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use conduit_proto::Message;

use crate::error::Error;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

/// The READY property a conduit channel over a Unix socket announces: it can
/// receive descriptors and shared-memory frames in the form above.
pub(crate) const PROPERTY: &str = "X-Conduit-Attach";

/// The version of the wire form this code speaks, the property's value.
pub(crate) const VERSION: u8 = 1;

/// The command ahead of a message with attachments.
pub(crate) const ATTACH_COMMAND: &[u8] = b"X-ATTACH";

/// Most descriptors a message may carry from the user.
pub const MAX_FDS_PER_MESSAGE: usize = 64;

/// Most frames of one message that may travel in shared memory.
pub(crate) const MAX_SHARED_FRAMES: usize = 64;

/// Room for one group: the kernel's own limit per message (`SCM_MAX_FD`) is 253;
/// we never send more than this, and a larger group is cut short by the kernel
/// (then refused by us).
const MAX_GROUP: usize = MAX_FDS_PER_MESSAGE + MAX_SHARED_FRAMES;

/// Descriptors received on a stream, waiting for the message they belong to;
/// and, for the sending side, how much shared memory the peer has not read yet.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    state: Mutex<InboxState>,
    /// Bytes of shared regions sent since the peer was last seen to have read
    /// everything (see [`Inbox::before_shared_send`]).
    shared_unread: std::sync::atomic::AtomicUsize,
    /// Sending side: regions reused once the peer released them.
    pub(crate) pool: Mutex<crate::shm_pool::Pool>,
    /// Receiving side: the peer's ledger, once it sent one.
    ledger: Mutex<Option<std::sync::Arc<crate::shm_pool::Ledger>>>,
    /// Receiving side: the peer's pooled regions, mapped once.
    kept: Mutex<crate::shm::Kept>,
}

/// Shared regions the peer may leave unread before a sender waits: a region in
/// flight costs memory that the socket buffer's size does not bound (its bytes
/// in the socket are a few dozen), so without this a fast sender could pin
/// memory without end.
pub(crate) const SHARED_UNREAD_BUDGET: usize = 128 << 20;

#[derive(Debug, Default)]
struct InboxState {
    /// Groups that arrived and whose command has not been decoded yet.
    arrived: VecDeque<Vec<OwnedFd>>,
    /// The group claimed by the last command, for the next message.
    claimed: Option<Vec<OwnedFd>>,
    /// A group came cut short (`MSG_CTRUNC`): the next claim fails.
    truncated: bool,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, InboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn arrive(&self, group: Vec<OwnedFd>, truncated: bool) {
        let mut st = self.lock();
        st.truncated |= truncated;
        if group.is_empty() {
            return;
        }
        // A conduit peer's group is claimed before the next read; anything older
        // is a peer sending descriptors on its own: close them.
        st.arrived.clear();
        st.arrived.push_back(group);
    }

    /// The command arrived: the next message owns the group that came with it.
    pub(crate) fn claim(&self) -> Result<(), Error> {
        let mut st = self.lock();
        if std::mem::take(&mut st.truncated) {
            st.arrived.clear();
            return Err(bad(
                "the peer sent more descriptors than a message may carry",
            ));
        }
        let group = st.arrived.pop_front().unwrap_or_default();
        // A claim nobody took (the peer sent a command without a message) is
        // replaced, closing its descriptors.
        st.claimed = Some(group);
        Ok(())
    }

    /// Takes the claimed group, if the next message has one.
    pub(crate) fn take_claimed(&self) -> Option<Vec<OwnedFd>> {
        self.lock().claimed.take()
    }

    /// Before sending `len` bytes in shared memory on `fd`: if the regions sent
    /// and not yet read by the peer would pass [`SHARED_UNREAD_BUDGET`], waits
    /// (within `wait`) until the peer has read everything sent so far.
    ///
    /// The kernel tells how many bytes the peer has not read (`TIOCOUTQ`), not
    /// which ones; so the count of unread regions is reset whenever that is 0.
    pub(crate) fn before_shared_send(
        &self,
        fd: BorrowedFd<'_>,
        len: usize,
        wait: crate::transport::Wait,
    ) -> Result<(), Error> {
        use crate::transport::Wait;
        use std::sync::atomic::Ordering;
        let mut pause = std::time::Duration::from_micros(20);
        loop {
            if unread_bytes(fd)? == 0 {
                self.shared_unread.store(0, Ordering::Relaxed);
            }
            let unread = self.shared_unread.load(Ordering::Relaxed);
            if unread == 0 || unread.saturating_add(len) <= SHARED_UNREAD_BUDGET {
                self.shared_unread.fetch_add(len, Ordering::Relaxed);
                return Ok(());
            }
            let timed_out = || {
                Error::io(
                    "the peer is not reading its shared memory",
                    io::ErrorKind::TimedOut.into(),
                )
            };
            match wait {
                Wait::Never => return Err(timed_out()),
                Wait::Until(deadline) if std::time::Instant::now() >= deadline => {
                    return Err(timed_out());
                }
                _ => {}
            }
            // A hung-up peer reads nothing more: the send itself will fail.
            if peer_gone(fd) {
                return Ok(());
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(1));
        }
    }

    /// The peer's ledger's descriptor, if it sent one: it goes along with a
    /// channel handed to another process.
    pub(crate) fn ledger_fd(&self) -> Option<OwnedFd> {
        self.ledger
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .dup_fd()
    }

    /// Takes on the peer's ledger in a process the channel was handed to.
    pub(crate) fn adopt_ledger(&self, fd: OwnedFd) -> Result<(), Error> {
        let ledger = crate::shm_pool::Ledger::open(fd)?;
        *self.ledger.lock().unwrap_or_else(|e| e.into_inner()) = Some(ledger);
        Ok(())
    }

    /// Whether descriptors are waiting (a channel with them cannot be handed over).
    pub(crate) fn is_empty(&self) -> bool {
        let st = self.lock();
        st.arrived.is_empty() && st.claimed.is_none()
    }
}

/// Bytes written on a Unix socket that its peer has not read yet.
pub(crate) fn unread_bytes(fd: BorrowedFd<'_>) -> Result<usize, Error> {
    let mut n: libc::c_int = 0;
    // SAFETY: TIOCOUTQ writes one int through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
    if rc < 0 {
        return Err(Error::io(
            "cannot see what the peer has read",
            io::Error::last_os_error(),
        ));
    }
    Ok(n.max(0) as usize)
}

/// Whether the peer hung up.
fn peer_gone(fd: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::empty())];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).is_ok()
        && fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
}

fn bad(what: &str) -> Error {
    Error::Attachment(what.to_string())
}

/// Space for the control message of one group.
const CMSG_SPACE: usize = {
    // CMSG_SPACE(n * 4) on Linux: header (16 bytes on 64-bit, 12 on 32-bit,
    // rounded up to the word) plus the data rounded up to the word.
    let word = std::mem::size_of::<usize>();
    let header = std::mem::size_of::<libc::cmsghdr>().div_ceil(word) * word;
    header + (MAX_GROUP * 4).div_ceil(word) * word
};

#[repr(C, align(8))]
struct CmsgBuf([MaybeUninit<u8>; CMSG_SPACE]);

/// `recv` on a Unix stream socket that keeps any descriptors in `inbox`,
/// close-on-exec from the start.
pub(crate) fn recv_into(
    fd: BorrowedFd<'_>,
    buf: &mut [MaybeUninit<u8>],
    dontwait: bool,
    inbox: &Inbox,
) -> rustix::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = CmsgBuf([MaybeUninit::uninit(); CMSG_SPACE]);
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = CMSG_SPACE as _;
    let mut flags = libc::MSG_CMSG_CLOEXEC;
    if dontwait {
        flags |= libc::MSG_DONTWAIT;
    }
    // SAFETY: `msg` points at a live iovec over `buf` and at `control`; the kernel
    // writes at most their lengths.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
    if n < 0 {
        return Err(rustix::io::Errno::from_raw_os_error(
            io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ));
    }
    if msg.msg_controllen > 0 {
        let mut group = Vec::new();
        // SAFETY: the kernel filled `msg_controllen` bytes of `control` with
        // well-formed control messages; CMSG_* walk them within that length.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg);
                    let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                    for i in 0..len / 4 {
                        let raw: RawFd = std::ptr::read_unaligned(data.add(i * 4).cast());
                        group.push(OwnedFd::from_raw_fd(raw));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        inbox.arrive(group, msg.msg_flags & libc::MSG_CTRUNC != 0);
    } else if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        inbox.arrive(Vec::new(), true);
    }
    Ok(n as usize)
}

/// `sendmsg` of `bufs` with `fds` attached, never raising `SIGPIPE`.
pub(crate) fn send_with(
    fd: BorrowedFd<'_>,
    bufs: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
    dontwait: bool,
) -> rustix::io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [MaybeUninit::<u8>::uninit(); CMSG_SPACE];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(rustix::io::Errno::INVAL);
    }
    let mut flags = SendFlags::NOSIGNAL;
    if dontwait {
        flags |= SendFlags::DONTWAIT;
    }
    rustix::net::sendmsg(fd, bufs, &mut control, flags)
}

/// Bytes of one shared frame's entry in the header.
const ENTRY: usize = 24;

/// Bytes of the header before the entries.
const PREFIX: usize = 5;

/// The attachment header: how many of a group's descriptors are the user's, and
/// which frames came in shared memory.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) user_fds: usize,
    /// Whether the ledger's descriptor follows the user's.
    pub(crate) ledger: bool,
    /// (frame index among the user's frames, offset in its region, length,
    /// ledger slot or `NO_SLOT`)
    pub(crate) shared: Vec<(usize, usize, usize, u32)>,
}

impl Header {
    pub(crate) fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(PREFIX + ENTRY * self.shared.len());
        out.put_u8(VERSION);
        out.put_u8(self.user_fds as u8);
        out.put_u8(u8::from(self.ledger));
        out.put_u16(self.shared.len() as u16);
        for &(index, offset, len, slot) in &self.shared {
            out.put_u32(index as u32);
            out.put_u64(offset as u64);
            out.put_u64(len as u64);
            out.put_u32(slot);
        }
        out.freeze()
    }

    /// Parses a header and checks it against the frames that follow it and the
    /// descriptors that came: every length from the peer is bounded here.
    pub(crate) fn decode(
        mut frame: &[u8],
        frames: usize,
        fds: usize,
        max_size: usize,
    ) -> Result<Header, Error> {
        if frame.len() < PREFIX || frame[0] != VERSION {
            return Err(bad("malformed attachment header"));
        }
        frame.advance(1);
        let user_fds = frame.get_u8() as usize;
        let ledger = match frame.get_u8() {
            0 => false,
            1 => true,
            _ => return Err(bad("malformed attachment header")),
        };
        let count = frame.get_u16() as usize;
        if user_fds > MAX_FDS_PER_MESSAGE
            || count > MAX_SHARED_FRAMES
            || frame.len() != count * ENTRY
        {
            return Err(bad("malformed attachment header"));
        }
        let announced = user_fds + usize::from(ledger) + count;
        if announced != fds {
            return Err(bad(&format!(
                "the peer announced {announced} descriptors and sent {fds}"
            )));
        }
        let mut shared = Vec::with_capacity(count);
        let mut total = 0usize;
        for _ in 0..count {
            let index = frame.get_u32() as usize;
            let offset = usize::try_from(frame.get_u64()).unwrap_or(usize::MAX);
            let len = usize::try_from(frame.get_u64()).unwrap_or(usize::MAX);
            let slot = frame.get_u32();
            total = total.saturating_add(len);
            if index >= frames || shared.last().is_some_and(|&(i, _, _, _)| i >= index) {
                return Err(bad("attachment header names a frame that is not there"));
            }
            if total > max_size {
                return Err(bad("shared frames larger than the largest message allowed"));
            }
            if slot != crate::shm_pool::NO_SLOT && slot as usize >= crate::shm_pool::SLOTS {
                return Err(bad(
                    "attachment header names a ledger slot that is not there",
                ));
            }
            shared.push((index, offset, len, slot));
        }
        Ok(Header {
            user_fds,
            ledger,
            shared,
        })
    }
}

/// Splits a received message with attachments into the user's message and
/// descriptors, mapping its shared frames.
pub(crate) fn unpack(
    msg: Message,
    group: Vec<OwnedFd>,
    max_size: usize,
    inbox: &Inbox,
) -> Result<(Message, Vec<OwnedFd>), Error> {
    let mut frames = msg.into_frames();
    if frames.is_empty() {
        return Err(bad("message with attachments has no header"));
    }
    let header_frame = frames.remove(0);
    let header = Header::decode(&header_frame, frames.len(), group.len(), max_size)?;
    let mut group = group;
    let mut rest = group.split_off(header.user_fds).into_iter();
    if header.ledger {
        inbox.adopt_ledger(rest.next().expect("counted in decode"))?;
    }
    for (&(index, offset, len, slot), fd) in header.shared.iter().zip(rest) {
        if !frames[index].is_empty() {
            return Err(bad("a shared frame also came inline"));
        }
        frames[index] = if slot == crate::shm_pool::NO_SLOT {
            crate::shm::map(fd, offset, len, None)?
        } else {
            let ledger = inbox
                .ledger
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .ok_or_else(|| bad("a pooled frame came before its ledger"))?;
            let mut kept = inbox.kept.lock().unwrap_or_else(|e| e.into_inner());
            kept.map(fd, offset, len, ledger, slot)?
        };
    }
    let mut out = Message::new();
    for frame in frames {
        out.push_back(frame);
    }
    Ok((out, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            user_fds: 2,
            ledger: true,
            shared: vec![(0, 0, 5, 7), (3, 4096, 7, crate::shm_pool::NO_SLOT)],
        };
        let bytes = h.encode();
        assert_eq!(
            &bytes[..],
            b"\x01\x02\x01\x00\x02\
              \0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x05\0\0\0\x07\
              \0\0\0\x03\0\0\0\0\0\0\x10\0\0\0\0\0\0\0\0\x07\xff\xff\xff\xff"
        );
        assert_eq!(Header::decode(&bytes, 4, 5, 100).unwrap(), h);
    }

    proptest::proptest! {
        #[test]
        fn a_header_from_the_peer_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            frames in 0usize..8,
            fds in 0usize..8,
        ) {
            if let Ok(h) = Header::decode(&bytes, frames, fds, 1 << 20) {
                // What it accepts, it accepted for good reasons.
                proptest::prop_assert_eq!(h.user_fds + usize::from(h.ledger) + h.shared.len(), fds);
                proptest::prop_assert!(h.shared.iter().all(|&(i, _, _, _)| i < frames));
                proptest::prop_assert_eq!(Header::decode(&h.encode(), frames, fds, 1 << 20).unwrap(), h);
            }
        }
    }

    #[test]
    fn header_refuses_what_does_not_fit() {
        let h = Header {
            user_fds: 1,
            ledger: false,
            shared: vec![(2, 0, 5, crate::shm_pool::NO_SLOT)],
        }
        .encode();
        // too few frames, wrong descriptor count, too large, cut short
        assert!(Header::decode(&h, 2, 2, 100).is_err());
        assert!(Header::decode(&h, 3, 1, 100).is_err());
        assert!(Header::decode(&h, 3, 2, 4).is_err());
        assert!(Header::decode(&h[..h.len() - 1], 3, 2, 100).is_err());
        assert!(Header::decode(b"\x02\0\0\0\0", 1, 0, 100).is_err());
        assert!(Header::decode(b"\x01\xff\0\0\0", 1, 255, 100).is_err());
        assert!(Header::decode(b"\x01\0\x02\0\0", 1, 0, 100).is_err());
        // a slot past the ledger
        let mut bad_slot = h.to_vec();
        let n = bad_slot.len();
        bad_slot[n - 4..].copy_from_slice(&5000u32.to_be_bytes());
        assert!(Header::decode(&bad_slot, 3, 2, 100).is_err());
        // every split of a header is refused, never a panic
        for cut in 0..h.len() {
            assert!(Header::decode(&h[..cut], 3, 2, 100).is_err());
        }
    }
}
