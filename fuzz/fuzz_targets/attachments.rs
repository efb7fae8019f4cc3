//! The receiving side of a message with attachments, with real descriptors: an
//! attachment header from the peer, the frames behind it and a group of
//! descriptors of every kind a peer could send (pooled and sealed regions of
//! any size, an unsealed memfd, a pipe, a file), unpacked as a channel does.
//!
//! Input: byte 0: frames behind the header (`% 5`); byte 1: the largest
//! message allowed, `(byte + 1)` KiB; byte 2: descriptors (`% 7`), then 3 bytes
//! each (kind `% 5`, size as a big-endian u16); then one byte per frame (its
//! inline length, `% 8`); the rest is the header.
//!
//! Checks: no panic; a header is accepted only with what it claims (descriptor
//! count, frame indices in order and present, total within the limit, slots in
//! the ledger) and encodes back to exactly its bytes; unpacking accepts only
//! what the header parser accepts, and then gives the user's descriptors, every
//! frame, and each shared frame's bytes from its region at its offset; a
//! second message with the same header and duplicates of the descriptors, on
//! the same receiver (now holding kept mappings and maybe a ledger), ends the
//! same way with the same bytes; and once everything is dropped, no descriptor
//! is left open.
#![no_main]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use bytes::Bytes;
use conduit::Message;
use conduit::fuzzing::{self, Receiver};
use libfuzzer_sys::fuzz_target;

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// The byte at `offset` of a region made with `salt`; `None`: a region of
/// zeros (ledger-sized).
fn pattern(offset: usize, salt: Option<u8>) -> u8 {
    salt.map_or(0, |salt| (offset % 251) as u8 ^ salt)
}

fn filled(size: usize, salt: u8) -> Vec<u8> {
    (0..size).map(|i| pattern(i, Some(salt))).collect()
}

/// What a descriptor holds if it is a region that maps: see [`pattern`].
type Content = Option<Option<u8>>;

/// A descriptor of kind `kind`, and what it holds.
fn descriptor(kind: u8, size: usize) -> (OwnedFd, Content) {
    match kind % 5 {
        0 => {
            let fd = fuzzing::pooled_region(size).unwrap();
            let data = filled(size, kind);
            // SAFETY: writes `data.len()` bytes from a live buffer to a memfd.
            let n = unsafe { libc::pwrite(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), 0) };
            assert_eq!(n as usize, data.len());
            (fd, Some(Some(kind)))
        }
        1 => (
            fuzzing::fresh_region(&filled(size, kind)).unwrap(),
            Some(Some(kind)),
        ),
        2 => {
            // A memfd without seals: a sender could shrink it under a reader.
            // SAFETY: memfd_create with a NUL-terminated name.
            let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
            assert!(raw >= 0);
            // SAFETY: a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: resizes our own memfd.
            assert_eq!(unsafe { libc::ftruncate(raw, size as libc::off_t) }, 0);
            (fd, None)
        }
        3 => (std::io::pipe().unwrap().0.into(), None),
        _ => (
            fuzzing::pooled_region(fuzzing::LEDGER_LEN).unwrap(),
            Some(None),
        ),
    }
}

/// What an unpack gave: the user's descriptor count and the frames' bytes.
fn outcome(r: &Result<(Message, Vec<OwnedFd>), conduit::Error>) -> Option<(usize, Vec<Bytes>)> {
    r.as_ref()
        .ok()
        .map(|(m, fds)| (fds.len(), m.frames().to_vec()))
}

fuzz_target!(|data: &[u8]| {
    let [frames, max_kib, fds, rest @ ..] = data else {
        return;
    };
    let frames = usize::from(*frames % 5);
    let max_size = (usize::from(*max_kib) + 1) * 1024;
    let fds = usize::from(*fds % 7);
    if rest.len() < fds * 3 + frames {
        return;
    }
    let (specs, rest) = rest.split_at(fds * 3);
    let (lens, header) = rest.split_at(frames);

    let before = open_descriptors();
    let mut group = Vec::new();
    let mut salts = Vec::new();
    for spec in specs.chunks(3) {
        let size = usize::from(u16::from_be_bytes([spec[1], spec[2]]));
        let (fd, salt) = descriptor(spec[0], size);
        group.push(fd);
        salts.push(salt);
    }
    let inline: Vec<Bytes> = lens
        .iter()
        .map(|l| Bytes::from(vec![0xEE; usize::from(l % 8)]))
        .collect();

    let parsed = fuzzing::decode_header(header, frames, fds, max_size);
    if let Ok((user, ledger, shared)) = &parsed {
        assert_eq!(user + usize::from(*ledger) + shared.len(), fds);
        assert!(*user <= fuzzing::MAX_USER_FDS && shared.len() <= fuzzing::MAX_SHARED_FRAMES);
        assert!(shared.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(shared.iter().all(|s| s.0 < frames));
        assert!(shared.iter().map(|s| s.2).sum::<usize>() <= max_size);
        assert!(
            shared
                .iter()
                .all(|s| s.3 == fuzzing::NO_SLOT || (s.3 as usize) < fuzzing::SLOTS)
        );
        let again = fuzzing::encode_header(*user, *ledger, shared.clone());
        assert_eq!(&again[..], header, "a header encodes back to its bytes");
    }

    let message = Message::from_frames(
        std::iter::once(Bytes::copy_from_slice(header)).chain(inline.iter().cloned()),
    );
    let copies: Vec<OwnedFd> = group.iter().map(|f| f.try_clone().unwrap()).collect();
    let receiver = Receiver::default();
    let first = receiver.unpack(message.clone(), group, max_size);
    match (&parsed, &first) {
        (Err(_), Ok(_)) => panic!("unpacked a message whose header is refused"),
        (Ok((user, ledger, shared)), Ok((msg, user_fds))) => {
            assert_eq!(user_fds.len(), *user);
            assert_eq!(msg.frame_count(), frames);
            let mut next = 0;
            for (i, frame) in msg.frames().iter().enumerate() {
                match shared.iter().position(|s| s.0 == i) {
                    Some(k) => {
                        let (_, offset, len, _) = shared[k];
                        assert_eq!(frame.len(), len);
                        let salt =
                            salts[user + usize::from(*ledger) + k].expect("only regions map");
                        // Every page, and the last byte.
                        for j in (0..len).step_by(4096).chain(len.checked_sub(1)) {
                            assert_eq!(frame[j], pattern(offset + j, salt));
                        }
                    }
                    None => assert_eq!(frame, &inline[i]),
                }
                next += 1;
            }
            assert_eq!(next, frames);
        }
        _ => {}
    }
    let second = receiver.unpack(message, copies, max_size);
    assert_eq!(outcome(&first), outcome(&second), "the same message twice");
    drop((first, second, receiver));
    assert_eq!(open_descriptors(), before, "a descriptor was left open");
});
