//! Rust to Rust on one host: typed values, descriptors inside messages, channels
//! handed to other processes, the one-shot server, and shared memory for large
//! frames. Real child processes throughout; the checks that count descriptors or
//! mappings run in a child of their own, so other tests' threads cannot disturb
//! what they count.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use conduit::process::spawn_with_channel;
use conduit::{Channel, Descriptor, Error, Message, OneShotServer, RecvError};
use serde::{Deserialize, Serialize};

use crate::support::{child_command, child_role};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Reading {
    sensor: String,
    seq: u64,
    celsius: f64,
    samples: Vec<u8>,
    note: Option<String>,
}

fn reading(seq: u64) -> Reading {
    Reading {
        sensor: "hall".into(),
        seq,
        celsius: 21.5,
        samples: (0..1024).map(|i| (i + seq) as u8).collect(),
        note: (seq % 2 == 0).then(|| "even".to_string()),
    }
}

/// Runs `body` in a child process of its own (this test binary again), and
/// fails if it fails: for checks on the whole process's descriptors and maps.
fn isolated(test: &str, body: impl FnOnce()) {
    if child_role(test).as_deref() == Some("isolated") {
        body();
        return;
    }
    if child_role(test).is_some() {
        return;
    }
    let out = child_command(test, "isolated")
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "the isolated run of {test} failed: {text}"
    );
}

/// This process's descriptors, with what each points at.
fn descriptors() -> Vec<String> {
    let mut all: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            Some(format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                target.display()
            ))
        })
        .collect();
    all.sort();
    all
}

/// How many of a process's mappings are conduit's shared regions mapped
/// read-only: what a receiver (or a frozen `SharedBytesMut`) holds. A sender's
/// pooled regions and the ledger are mapped writable.
fn shared_mappings(pid: &str) -> usize {
    memfd_mappings(pid)
        .iter()
        .filter(|l| l.split_whitespace().nth(1) == Some("r--s"))
        .count()
}

/// Every mapping of conduit's shared regions in a process.
fn memfd_mappings(pid: &str) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("memfd:conduit"))
        .map(str::to_owned)
        .collect()
}

/// How many descriptors of process `pid` are conduit's shared regions.
fn process_regions(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| {
            dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|target| target.to_string_lossy().contains("memfd:conduit"))
                .count()
        })
        .unwrap_or(0)
}

/// How many descriptors of this process are conduit's shared regions.
fn shared_descriptors() -> usize {
    descriptors()
        .iter()
        .filter(|d| d.contains("memfd:conduit"))
        .count()
}

#[test]
fn typed_values_cross_to_a_child_and_back() {
    const TEST: &str = "attachments::typed_values_cross_to_a_child_and_back";
    if child_role(TEST).is_some() {
        let parent = Channel::from_parent().unwrap();
        while let Ok(mut r) = parent.recv_value::<Reading>() {
            r.seq += 1000;
            parent.send_value(&r).unwrap();
        }
        return;
    }
    let (mut child, channel) = spawn_with_channel(child_command(TEST, "echo")).unwrap();
    for seq in 0..50 {
        channel.send_value(&reading(seq)).unwrap();
        let back: Reading = channel.recv_value().unwrap();
        assert_eq!(
            back,
            Reading {
                seq: seq + 1000,
                ..reading(seq)
            }
        );
    }
    drop(channel);
    assert!(child.wait().unwrap().success());
}

#[test]
fn hostile_typed_payloads_are_errors_and_the_channel_goes_on() {
    let (a, b) = Channel::pair().unwrap();
    let hostile = [
        // A vector that claims 2^63 elements.
        Message::from(&b"\x04hall\x05\xff\xff\xff\xff\xff\xff\xff\xff\x7f"[..]),
        // Cut short, and empty.
        Message::from(&b"\x04ha"[..]),
        Message::from(&b""[..]),
        // A string that is not UTF-8.
        Message::from(&b"\x02\xff\xfe\x00"[..]),
        // Two frames.
        Message::from_frames(["a", "b"]),
        // A bad enum variant for Option.
        Message::from(&b"\x04hall\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x07"[..]),
    ];
    for m in hostile {
        a.send(m).unwrap();
        match b.recv_value::<Reading>() {
            Err(RecvError::Failed(Error::Decode(_))) => {}
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
    // Leftover bytes after a valid value are refused too.
    let mut frame = postcard_bytes(&reading(1));
    frame.push(0);
    a.send(frame).unwrap();
    assert!(matches!(
        b.recv_value::<Reading>(),
        Err(RecvError::Failed(Error::Decode(_)))
    ));
    a.send_value(&reading(7)).unwrap();
    assert_eq!(b.recv_value::<Reading>().unwrap(), reading(7));
}

/// A list that nests one level per link: in postcard one byte per link.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Chain(Option<Box<Chain>>);

#[test]
fn a_value_nested_too_deeply_by_a_child_is_an_error_not_a_crash() {
    const TEST: &str = "attachments::a_value_nested_too_deeply_by_a_child_is_an_error_not_a_crash";
    if child_role(TEST).is_some() {
        let parent = Channel::from_parent().unwrap();
        // A million links in a megabyte: decoded by recursion with no bound,
        // this runs any thread out of stack and aborts the receiving process.
        let mut hostile = vec![1u8; 1_000_000];
        hostile.push(0);
        parent.send(hostile).unwrap();
        // A chain of a few links is fine.
        parent
            .send_value(&Chain(Some(Box::new(Chain(None)))))
            .unwrap();
        // Wait until the parent is done, so it reads both before the end.
        let _ = parent.recv();
        return;
    }
    let (mut child, channel) = spawn_with_channel(child_command(TEST, "hostile")).unwrap();
    match channel.recv_value::<Chain>() {
        Err(RecvError::Failed(Error::Decode(why))) => {
            assert!(why.contains("nests more than 128 levels"), "{why}")
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(
        channel.recv_value::<Chain>().unwrap(),
        Chain(Some(Box::new(Chain(None))))
    );
    drop(channel);
    assert!(child.wait().unwrap().success());
}

/// A value's bytes as `send_value` would send them (through a channel, to
/// avoid depending on postcard here).
fn postcard_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    let (a, b) = Channel::pair().unwrap();
    a.send_value(value).unwrap();
    b.recv().unwrap().concat().to_vec()
}

#[test]
fn a_message_larger_than_allowed_breaks_before_any_memory_is_taken() {
    let (x, y) = Channel::builder()
        .max_message_size(1000)
        .shared_memory_threshold(None)
        .pair()
        .unwrap();
    x.send_value(&vec![1u8; 5000]).unwrap();
    assert!(matches!(
        y.recv_value::<Vec<u8>>(),
        Err(RecvError::Failed(Error::Protocol(_)))
    ));
}

#[derive(Serialize, Deserialize)]
struct Bundle {
    file: Descriptor,
    back: Descriptor,
    out: Descriptor,
    input: Descriptor,
}

#[test]
fn a_file_a_channel_and_pipe_ends_arrive_open_in_a_child() {
    const TEST: &str = "attachments::a_file_a_channel_and_pipe_ends_arrive_open_in_a_child";
    if child_role(TEST).is_some() {
        let parent = Channel::from_parent().unwrap();
        let bundle: Bundle = parent.recv_value().unwrap();
        let mut file = bundle.file.into_file();
        // Close-on-exec from arrival on.
        // SAFETY: F_GETFD only reads the flags of a descriptor we own.
        let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFD) };
        assert!(
            flags & libc::FD_CLOEXEC != 0,
            "arrived without close-on-exec"
        );
        file.rewind().unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        let back = bundle.back.into_channel().unwrap();
        back.send_value(&format!("file: {text}")).unwrap();
        let out = bundle.out.into_pipe_sender().unwrap();
        out.send_value(&"over the pipe").unwrap();
        let input = bundle.input.into_pipe_receiver().unwrap();
        let word: String = input.recv_value().unwrap();
        back.send_value(&format!("pipe said {word}")).unwrap();
        // A large frame in one of the parent's reused regions: the ledger of
        // those came along with the channel.
        let big = back.recv().unwrap();
        assert!(big.frames()[0].iter().all(|&b| b == 8));
        back.send_value(&(big.byte_len() as u64)).unwrap();
        // And the channel the child was spawned with still works.
        parent.send_value(&"done").unwrap();
        return;
    }
    let mut file = tempfile::tempfile().unwrap();
    file.write_all(b"hello from the parent").unwrap();
    let (mine, theirs) = Channel::pair().unwrap();
    // Shared memory used before the end travels: its reader has the ledger.
    mine.send(vec![7u8; 1 << 20]).unwrap();
    assert_eq!(theirs.recv().unwrap().byte_len(), 1 << 20);
    let (pipe_tx, pipe_rx) = conduit::pipe().unwrap();
    let (in_tx, in_rx) = conduit::pipe().unwrap();
    // Something in flight on the handed-over ends before they travel.
    in_tx.send_value(&"early").unwrap();
    let (mut child, channel) = spawn_with_channel(child_command(TEST, "child")).unwrap();
    channel
        .send_value(&Bundle {
            file: file.into(),
            back: Descriptor::from_channel(theirs).unwrap(),
            out: Descriptor::from_pipe_sender(pipe_tx).unwrap(),
            input: Descriptor::from_pipe_receiver(in_rx).unwrap(),
        })
        .unwrap();
    assert_eq!(
        mine.recv_value::<String>().unwrap(),
        "file: hello from the parent"
    );
    assert_eq!(pipe_rx.recv_value::<String>().unwrap(), "over the pipe");
    assert_eq!(mine.recv_value::<String>().unwrap(), "pipe said early");
    mine.send(vec![8u8; 1 << 20]).unwrap();
    assert_eq!(mine.recv_value::<u64>().unwrap(), 1 << 20);
    assert_eq!(channel.recv_value::<String>().unwrap(), "done");
    // The child's ends closed when it exited: each of ours sees the end.
    assert!(matches!(mine.recv(), Err(RecvError::Closed)));
    assert!(matches!(pipe_rx.recv(), Err(RecvError::Closed)));
    assert!(child.wait().unwrap().success());
}

#[test]
fn descriptors_of_dropped_messages_do_not_leak() {
    const TEST: &str = "attachments::descriptors_of_dropped_messages_do_not_leak";
    isolated(TEST, || {
        let before = descriptors();
        {
            let (a, b) = Channel::pair().unwrap();
            let file = tempfile::tempfile().unwrap();
            let dups = |n: usize| -> Vec<OwnedFd> {
                (0..n).map(|_| file.try_clone().unwrap().into()).collect()
            };
            for i in 0..20 {
                a.send_fds(format!("m{i}"), dups(3)).unwrap();
            }
            // Received and dropped with plain recv; received and dropped with
            // recv_fds; one typed value that takes fewer than came.
            for _ in 0..10 {
                assert_eq!(b.recv().unwrap().frame_count(), 1);
            }
            for _ in 0..5 {
                let (_, fds) = b.recv_fds().unwrap();
                assert_eq!(fds.len(), 3);
            }
            a.send_value(&(Descriptor::from(file.try_clone().unwrap()), 1u8))
                .unwrap();
            // Never received: the channel is dropped with them in flight.
            for _ in 0..3 {
                a.send_fds("unread", dups(2)).unwrap();
            }
            // Too many for one message: refused, and closed.
            assert!(matches!(
                a.send_fds("too many", dups(conduit::MAX_FDS_PER_MESSAGE + 1)),
                Err(Error::Attachment(_))
            ));
        }
        assert_eq!(descriptors(), before);
    });
}

#[test]
fn descriptors_are_refused_by_a_peer_that_did_not_agree() {
    // A channel that does not announce the attachment property (as a libzmq
    // peer would not): the sender refuses, and plain messages still flow.
    let listener = conduit::Listener::bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = listener.endpoint().to_string();
    let t = std::thread::spawn(move || listener.accept().unwrap());
    let a = Channel::connect(&endpoint).unwrap();
    let b = t.join().unwrap();
    let file = tempfile::tempfile().unwrap();
    assert!(matches!(
        a.send_fds("x", vec![file.into()]),
        Err(Error::Attachment(_))
    ));
    // Large frames go inline over TCP.
    let big = vec![7u8; 1 << 20];
    a.send(big.clone()).unwrap();
    assert_eq!(&b.recv().unwrap().concat()[..], &big[..]);
}

#[test]
fn a_one_shot_server_takes_a_child_that_connects_by_name() {
    const TEST: &str = "attachments::a_one_shot_server_takes_a_child_that_connects_by_name";
    if child_role(TEST).is_some() {
        let name = std::env::var("ONE_SHOT_NAME").unwrap();
        let ch = Channel::connect(&name).unwrap();
        ch.send_value(&("hello", std::process::id())).unwrap();
        let n: u64 = ch.recv_value().unwrap();
        ch.send_value(&(n * 2)).unwrap();
        return;
    }
    let (server, name) = OneShotServer::new().unwrap();
    let path = name.strip_prefix("ipc://").unwrap().to_string();
    let mut child = child_command(TEST, "child")
        .env("ONE_SHOT_NAME", &name)
        .spawn()
        .unwrap();
    let (ch, (hello, pid)): (Channel, (String, u32)) = server.accept_value().unwrap();
    assert_eq!((hello.as_str(), pid), ("hello", child.id()));
    // Nothing is left on disk once the peer is in.
    assert!(!std::path::Path::new(&path).exists());
    assert!(!std::path::Path::new(&path).parent().unwrap().exists());
    ch.send_value(&21u64).unwrap();
    assert_eq!(ch.recv_value::<u64>().unwrap(), 42);
    assert!(child.wait().unwrap().success());
    // A second connect to the same name finds nobody.
    assert!(Channel::connect(&name).is_err());
    // A server dropped before anyone came leaves nothing on disk either.
    let (server, name) = OneShotServer::new().unwrap();
    let dir = std::path::PathBuf::from(name.strip_prefix("ipc://").unwrap());
    let dir = dir.parent().unwrap().to_owned();
    assert!(dir.exists());
    drop(server);
    assert!(!dir.exists());
}

#[test]
fn large_frames_travel_in_shared_memory_and_are_reclaimed() {
    const TEST: &str = "attachments::large_frames_travel_in_shared_memory_and_are_reclaimed";
    isolated(TEST, || {
        let before = descriptors();
        let (a, b) = Channel::pair().unwrap();
        let big: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
        a.send(Message::from_frames([
            bytes::Bytes::from_static(b"small head"),
            bytes::Bytes::copy_from_slice(&big),
            bytes::Bytes::copy_from_slice(&big[..1 << 20]),
        ]))
        .unwrap();
        let msg = b.recv().unwrap();
        assert_eq!(&msg.frames()[0][..], b"small head");
        assert_eq!(&msg.frames()[1][..], &big[..]);
        assert_eq!(&msg.frames()[2][..], &big[..1 << 20]);
        // Mapped by the receiver, not copied.
        assert_eq!(shared_mappings("self"), 2);
        let pooled = shared_descriptors();
        assert!(pooled >= 2, "the sender keeps its regions: {pooled}");
        let keep = msg.frames()[1].slice(10..20);
        drop(msg);
        // The 1 MiB frame's region was released: used again, not a new one.
        a.send(vec![7u8; 1 << 20]).unwrap();
        assert_eq!(b.recv().unwrap().concat(), vec![7u8; 1 << 20]);
        assert_eq!(shared_descriptors(), pooled, "a released region is reused");
        // The 4 MiB one is held by a slice: a new 4 MiB frame takes a new
        // region, and the slice still reads what was sent in it.
        a.send(vec![8u8; 4 << 20]).unwrap();
        let other = b.recv().unwrap();
        assert_eq!(other.concat(), vec![8u8; 4 << 20]);
        assert_eq!(
            shared_descriptors(),
            pooled + 1,
            "a held region is not reused"
        );
        assert_eq!(&keep[..], &big[10..20]);
        drop((keep, other));
        // From here on, the sender's regions are used again and again, and the
        // receiver maps each once: neither side takes more.
        let pooled = shared_descriptors();
        let mapped = shared_mappings("self");
        for round in 0..5u8 {
            for len in [4 << 20, 1 << 20] {
                let frame = vec![round; len];
                a.send(frame.clone()).unwrap();
                assert_eq!(&b.recv().unwrap().concat()[..], &frame[..]);
            }
        }
        assert_eq!(shared_descriptors(), pooled);
        assert_eq!(shared_mappings("self"), mapped);
        // A typed value over the threshold takes the same road.
        a.send_value(&big).unwrap();
        assert_eq!(b.recv_value::<Vec<u8>>().unwrap(), big);
        // The channel's pool and ledger go with it.
        drop((a, b));
        assert_eq!(memfd_mappings("self"), Vec::<String>::new());
        assert_eq!(descriptors(), before);
    });
}

#[test]
fn a_killed_peer_leaves_no_shared_region_behind() {
    const TEST: &str = "attachments::a_killed_peer_leaves_no_shared_region_behind";
    if child_role(TEST).as_deref() == Some("flooder") {
        let parent = Channel::from_parent().unwrap();
        let big = vec![1u8; 2 << 20];
        loop {
            if parent.send(big.clone()).is_err() {
                return;
            }
        }
    }
    isolated(TEST, || {
        let (mut child, channel) = spawn_with_channel(child_command(TEST, "flooder")).unwrap();
        let pid = child.id().to_string();
        let first = channel.recv().unwrap();
        assert_eq!(first.concat().len(), 2 << 20);
        assert_eq!(shared_mappings("self"), 1);
        // Regions are in flight in the socket, and in the child, when it dies:
        // wait until the child holds a second region (and its ledger), which
        // it makes only to send a second frame.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while process_regions(&pid) < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never sent a second frame"
            );
            std::thread::yield_now();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
        drop(first);
        drop(channel);
        assert_eq!(memfd_mappings("self"), Vec::<String>::new());
        // The regions in flight went with the socket: nothing maps or holds
        // one here, and their creator is gone, so none is left anywhere.
        assert_eq!(shared_descriptors(), 0);
    });
}

#[test]
fn the_examples_run_by_themselves() {
    for name in ["typed_child", "pass_fd"] {
        let out = Command::new(crate::guide_examples::example(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("child"), "{name}: {text}");
    }
}

/// Writes `bytes` on `stream` with `fds` attached, as a hostile peer would.
fn send_raw(stream: &std::os::unix::net::UnixStream, bytes: &[u8], fds: &[&OwnedFd]) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::os::fd::AsFd;
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [std::mem::MaybeUninit::uninit(); 256];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() {
        assert!(control.push(SendAncillaryMessage::ScmRights(&borrowed)));
    }
    let n = rustix::net::sendmsg(
        stream,
        &[std::io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::empty(),
    )
    .unwrap();
    assert_eq!(n, bytes.len());
}

/// An attachment header: user descriptors, ledger or not, and shared frames
/// as (frame index, offset, length, ledger slot).
fn header(user: u8, ledger: u8, shared: &[(u32, u64, u64, u32)]) -> Vec<u8> {
    let mut out = vec![1, user, ledger];
    out.extend_from_slice(&(shared.len() as u16).to_be_bytes());
    for &(index, offset, len, slot) in shared {
        out.extend_from_slice(&index.to_be_bytes());
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&slot.to_be_bytes());
    }
    out
}

/// A command frame named X-ATTACH, then a two-frame message: `header`, `body`.
fn attach_wire(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = b"\x04\x09\x08X-ATTACH".to_vec();
    out.extend_from_slice(&[0x01, header.len() as u8]);
    out.extend_from_slice(header);
    out.extend_from_slice(&[0x00, body.len() as u8]);
    out.extend_from_slice(body);
    out
}

/// A conduit channel accepted from a raw Unix stream that has done its
/// handshake.
fn raw_peer_link() -> (Channel, std::os::unix::net::UnixStream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/raw.sock", dir.path().display());
    let listener = conduit::Listener::bind(&endpoint).unwrap();
    let mut raw = std::os::unix::net::UnixStream::connect(dir.path().join("raw.sock")).unwrap();
    raw.write_all(&crate::raw_peer::opening("PAIR")).unwrap();
    let channel = listener.accept().unwrap();
    crate::raw_peer::read_opening(&mut raw);
    (channel, raw, dir)
}

#[test]
fn hostile_attachments_break_the_channel_and_leak_nothing() {
    const TEST: &str = "attachments::hostile_attachments_break_the_channel_and_leak_nothing";
    isolated(TEST, || {
        let before = descriptors();
        let file: OwnedFd = tempfile::tempfile().unwrap().into();
        let unsealed: OwnedFd = tempfile::tempfile().unwrap().into();
        let sealed: OwnedFd = {
            use rustix::fs::{MemfdFlags, SealFlags};
            let fd = rustix::fs::memfd_create(
                "conduit",
                MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
            )
            .unwrap();
            rustix::fs::ftruncate(&fd, 4096).unwrap();
            let seals = SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL;
            rustix::fs::fcntl_add_seals(&fd, seals).unwrap();
            fd
        };
        {
            // Descriptors with no command: the message arrives, they are closed.
            let (ch, raw, _dir) = raw_peer_link();
            let mut plain = vec![0x00, 5];
            plain.extend_from_slice(b"plain");
            send_raw(&raw, &plain, &[&file, &file]);
            send_raw(&raw, &plain, &[]);
            let (m, fds) = ch.recv_fds().unwrap();
            assert_eq!((m.concat(), fds.len()), ("plain".into(), 0));
            assert_eq!(ch.recv().unwrap().concat(), "plain");
        }
        const NO_SLOT: u32 = u32::MAX;
        let cases: Vec<(Vec<u8>, Vec<&OwnedFd>)> = vec![
            // Two descriptors announced, one sent.
            (header(2, 0, &[]), vec![&file]),
            // An unknown version.
            (b"\x09\x00\x00\x00\x00".to_vec(), vec![]),
            // A shared frame in a file that is not a sealed region.
            (header(0, 0, &[(0, 0, 4096, NO_SLOT)]), vec![&unsealed]),
            // A shared frame that points past the message's frames.
            (header(0, 0, &[(5, 0, 4096, NO_SLOT)]), vec![&file]),
            // A header cut short.
            (b"\x01\x00\x00".to_vec(), vec![&file]),
            // A sealed region read past its end.
            (header(0, 0, &[(0, 4096, 4096, NO_SLOT)]), vec![&sealed]),
            // A pooled frame with no ledger sent before it.
            (header(0, 0, &[(0, 0, 4096, 0)]), vec![&sealed]),
            // A ledger whose size is not sealed.
            (header(0, 1, &[]), vec![&unsealed]),
            // A ledger slot past the ledger's end.
            (header(0, 0, &[(0, 0, 4096, 5000)]), vec![&sealed]),
        ];
        for (header, fds) in cases {
            let (ch, raw, _dir) = raw_peer_link();
            send_raw(&raw, &attach_wire(&header, b""), &fds);
            match ch.recv_fds() {
                Err(RecvError::Failed(Error::Attachment(_))) => {}
                other => panic!("header {header:?}: expected an attachment error, got {other:?}"),
            }
            // Broken for good: the same error again, not a misaligned message.
            assert!(ch.recv().is_err());
        }
        drop((file, unsealed, sealed));
        assert_eq!(descriptors(), before);
    });
}

#[test]
fn a_sender_waits_while_its_peer_leaves_shared_memory_unread() {
    // A region in flight is a few dozen bytes in the socket, so the socket
    // buffer does not bound it: the sender must, or a reader that stalls would
    // let it pin memory without end.
    let (a, b) = Channel::pair().unwrap();
    let big = bytes::Bytes::from(vec![3u8; 64 << 20]);
    let mut sent = 0;
    while a
        .send_timeout(big.clone(), Duration::from_millis(100))
        .is_ok()
    {
        sent += 1;
        // The pool's regions and 128 MiB of fresh ones: a handful, not more.
        assert!(sent <= 6, "the sender never waited");
    }
    assert!(sent >= 1);
    read_then_room_again(&a, &b, sent, big);
}

/// Reads the `sent` frames like `frame` waiting on `b` (dropping each), then
/// checks that `a` can send another.
fn read_then_room_again(a: &Channel, b: &Channel, sent: usize, frame: bytes::Bytes) {
    for _ in 0..sent {
        assert_eq!(b.recv().unwrap().byte_len(), frame.len());
    }
    a.send_timeout(frame.clone(), Duration::from_secs(10))
        .unwrap();
    assert_eq!(b.recv().unwrap().byte_len(), frame.len());
}

#[test]
fn a_reader_that_is_not_reading_never_blocks_the_sender() {
    // While its reader is behind, a sender waits for a release rather than
    // fill a new region (for the cache; how much that keeps to few regions
    // depends on the scheduler, so BENCHMARKS.md shows it, not a test). But
    // only briefly: a reader that sends first, or is busy, must not block its
    // peer's sends, or two peers sending each other large frames before
    // reading would deadlock. Here the fifth frame waits, the rest do not.
    let (a, b) = Channel::pair().unwrap();
    for i in 0..16u8 {
        a.send_timeout(vec![i; 1 << 20], Duration::from_secs(10))
            .unwrap();
    }
    for i in 0..16u8 {
        let msg = b.recv().unwrap();
        assert!(msg.concat().iter().all(|&x| x == i), "frame {i}");
    }
    read_then_room_again(&a, &b, 0, bytes::Bytes::from(vec![9u8; 1 << 20]));
}

#[test]
fn a_reader_that_holds_its_frames_does_not_stall_the_sender() {
    // A reader that has read every message and keeps the frames releases
    // nothing: that is no reason to wait, the sender takes new regions.
    let (a, b) = Channel::pair().unwrap();
    let reader = std::thread::spawn(move || {
        let held: Vec<Message> = (0..12).map(|_| b.recv().unwrap()).collect();
        held
    });
    for i in 0..12u8 {
        a.send_timeout(vec![i; 1 << 20], Duration::from_secs(10))
            .unwrap();
    }
    let held = reader.join().unwrap();
    for (i, msg) in held.iter().enumerate() {
        assert!(msg.concat().iter().all(|&b| b == i as u8), "frame {i}");
    }
}

#[test]
fn a_frame_in_a_shared_buffer_is_sent_without_a_copy() {
    const TEST: &str = "attachments::a_frame_in_a_shared_buffer_is_sent_without_a_copy";
    isolated(TEST, || {
        let (a, b) = Channel::pair().unwrap();
        let mut buf = conduit::SharedBytesMut::zeroed(1 << 20).unwrap();
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte = (i % 253) as u8;
        }
        let frame = buf.freeze().unwrap();
        a.send(frame.clone()).unwrap();
        a.send(frame.slice(4096 + 17..)).unwrap();
        let first = b.recv().unwrap();
        let second = b.recv().unwrap();
        assert_eq!(&first.frames()[0][..], &frame[..]);
        assert_eq!(&second.frames()[0][..], &frame[4096 + 17..]);
        // Every mapping is of one and the same region: nothing was copied.
        let inodes: std::collections::BTreeSet<String> = std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .lines()
            .filter(|l| l.contains("memfd:conduit"))
            .map(|l| l.split_whitespace().nth(4).unwrap().to_string())
            .collect();
        assert_eq!(shared_mappings("self"), 3);
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        drop((first, second, frame));
        assert_eq!(shared_mappings("self"), 0);
        drop((a, b));
        assert_eq!(memfd_mappings("self"), Vec::<String>::new());
        assert_eq!(shared_descriptors(), 0);
    });
}

#[test]
fn each_message_gets_its_own_descriptors_with_two_receivers() {
    // Descriptors are paired with their message under the reader's lock: two
    // threads receiving at once never get each other's.
    let (a, b) = Channel::pair().unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..200u32 {
            let mut file = tempfile::tempfile().unwrap();
            write!(file, "{i}").unwrap();
            a.send_fds(format!("{i}"), vec![file.into()]).unwrap();
        }
    });
    let b = std::sync::Arc::new(b);
    let receivers: Vec<_> = (0..2)
        .map(|_| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut seen = 0;
                while let Ok((msg, fds)) = b.recv_fds() {
                    let [fd] = <[OwnedFd; 1]>::try_from(fds).unwrap();
                    let mut file = std::fs::File::from(fd);
                    file.rewind().unwrap();
                    let mut text = String::new();
                    file.read_to_string(&mut text).unwrap();
                    assert_eq!(msg.concat(), text);
                    seen += 1;
                }
                seen
            })
        })
        .collect();
    sender.join().unwrap();
    let seen: usize = receivers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(seen, 200);
}

#[test]
fn a_libzmq_peer_gets_large_frames_inline_and_no_descriptors() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}/z.sock", dir.path().display());
    let listener = conduit::Listener::bind(&endpoint).unwrap();
    let peer = crate::pyzmq::Peer::start(&["PAIR", "connect", &endpoint, "echo", "1"]);
    let channel = listener
        .accept_timeout(Duration::from_secs(20))
        .expect("pyzmq connected");
    assert!(!channel.peer().unwrap().is_conduit());
    let file = tempfile::tempfile().unwrap();
    assert!(matches!(
        channel.send_fds("x", vec![file.into()]),
        Err(Error::Attachment(_))
    ));
    let big: Vec<u8> = (0..(2 << 20)).map(|i: u32| (i % 249) as u8).collect();
    channel.send(big.clone()).unwrap();
    assert_eq!(&channel.recv().unwrap().concat()[..], &big[..]);
    peer.finish();
}

#[test]
fn a_pipe_carries_typed_values_but_not_descriptors() {
    let (tx, rx) = conduit::pipe().unwrap();
    tx.send_value(&reading(3)).unwrap();
    assert!(matches!(
        tx.send_value(&Descriptor::from(tempfile::tempfile().unwrap())),
        Err(Error::Attachment(_))
    ));
    tx.send("not a reading").unwrap();
    tx.close().unwrap();
    assert_eq!(rx.recv_value::<Reading>().unwrap(), reading(3));
    assert!(matches!(
        rx.recv_value::<Reading>(),
        Err(RecvError::Failed(Error::Decode(_)))
    ));
    assert!(matches!(rx.recv_value::<Reading>(), Err(RecvError::Closed)));
}

#[test]
fn a_shared_frame_that_cannot_go_now_is_handed_back_and_the_channel_goes_on() {
    let (a, b) = Channel::pair().unwrap();
    // Fill the socket and the queue with inline messages nobody reads yet.
    let small = bytes::Bytes::from(vec![1u8; 60 << 10]);
    let mut queued = 0;
    while a.try_send(small.clone()).is_ok() {
        queued += 1;
        assert!(queued < 100_000, "the channel never filled up");
    }
    let big = bytes::Bytes::from(vec![2u8; 1 << 20]);
    let handed_back = match a.try_send(big.clone()) {
        Err(conduit::TrySendError::Full(m)) => m,
        other => panic!("expected Full, got {other:?}"),
    };
    assert_eq!(handed_back.byte_len(), 1 << 20);
    let reader = std::thread::spawn(move || {
        for _ in 0..queued {
            assert_eq!(b.recv().unwrap().byte_len(), 60 << 10);
        }
        b.recv().unwrap()
    });
    a.send(handed_back).unwrap();
    assert_eq!(reader.join().unwrap().concat(), big);
}
