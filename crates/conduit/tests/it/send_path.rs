//! The send path's choices between writing at once and batching: whatever it
//! picks, everything arrives, in order, without a flush; and an answer is not
//! held back for a batch.

use std::thread;
use std::time::Duration;

use bytes::Bytes;
use conduit::{ChannelBuilder, Message, RecvError, TryRecvError};

use crate::support::{TRANSPORTS, link, number_of, numbered};

/// A send that follows a receive on the same thread answers it: it is written
/// before `send` returns, even right after another send (which would otherwise
/// look like a stream and be queued for a batch). Over pipes and Unix sockets a
/// write is readable on the other side as soon as it returns, so `try_recv`
/// sees it at once; TCP's loopback gives no such promise and is left out.
#[test]
fn an_answer_is_written_before_send_returns() {
    for t in ["pipe", "pair", "ipc"] {
        let builder = ChannelBuilder::new();
        let (ping_tx, ping_rx) = link(t, &builder);
        let (pong_tx, pong_rx) = link(t, &builder);
        for i in 0..200 {
            ping_tx.send(numbered(i)).unwrap();
            let ping = ping_rx.recv().unwrap();
            pong_tx.send(ping).unwrap();
            match pong_rx.try_recv() {
                Ok(m) => assert_eq!(number_of(&m), i, "over {t}"),
                Err(TryRecvError::Empty) => panic!("over {t}: answer {i} was held back"),
                Err(e) => panic!("over {t}: {e}"),
            }
        }
    }
}

/// A burst ends with a partial batch queued; it goes out by itself, with no
/// flush and no close, and in order after the full batches the sender wrote.
#[test]
fn the_tail_of_a_burst_arrives_without_a_flush() {
    for t in TRANSPORTS {
        let (tx, rx) = link(t, &ChannelBuilder::new());
        for burst in 0..3u32 {
            let count = 1000 + 77 * burst;
            for i in 0..count {
                tx.send(numbered(i)).unwrap();
            }
            for i in 0..count {
                let m = rx
                    .recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("over {t}: burst {burst}, message {i}: {e}"));
                assert_eq!(number_of(&m), i, "over {t}");
            }
            thread::sleep(Duration::from_millis(2));
        }
        drop(tx);
        assert!(matches!(rx.recv(), Err(RecvError::Closed)), "over {t}");
    }
}

/// Small messages (copied into batches) and large ones (queued by reference, or
/// written directly) keep their order in one stream.
#[test]
fn small_and_large_messages_interleaved_keep_their_order() {
    for t in TRANSPORTS {
        let (tx, rx) = link(t, &ChannelBuilder::new().send_hwm(50));
        let big = Bytes::from(vec![0x5A; 100 << 10]);
        let sender = thread::spawn(move || {
            for i in 0..2000u32 {
                let m = if i % 97 == 0 {
                    Message::from_frames([Bytes::from(i.to_be_bytes().to_vec()), big.clone()])
                } else {
                    numbered(i)
                };
                tx.send(m).unwrap();
            }
            tx.close().unwrap();
        });
        for i in 0..2000u32 {
            let m = rx.recv().unwrap();
            assert_eq!(m.frames()[0][..], i.to_be_bytes(), "over {t}");
            if i % 97 == 0 {
                assert_eq!(m.frames()[1].len(), 100 << 10, "over {t}");
            }
        }
        assert!(matches!(rx.recv(), Err(RecvError::Closed)), "over {t}");
        sender.join().unwrap();
    }
}

/// Several threads sending on one sender at once: each thread's messages arrive
/// in its order, and none is lost or duplicated.
#[test]
fn concurrent_senders_each_keep_their_order() {
    const THREADS: u32 = 4;
    const EACH: u32 = 5000;
    for t in TRANSPORTS {
        let (tx, rx) = link(t, &ChannelBuilder::new().send_hwm(100));
        let tx = std::sync::Arc::new(tx);
        let senders: Vec<_> = (0..THREADS)
            .map(|k| {
                let tx = tx.clone();
                thread::spawn(move || {
                    for i in 0..EACH {
                        tx.send(numbered(k << 24 | i)).unwrap();
                    }
                })
            })
            .collect();
        let mut next = [0u32; THREADS as usize];
        for _ in 0..THREADS * EACH {
            let n = number_of(&rx.recv().unwrap());
            let (k, i) = ((n >> 24) as usize, n & 0xFF_FFFF);
            assert_eq!(i, next[k], "over {t}: thread {k}");
            next[k] += 1;
        }
        for s in senders {
            s.join().unwrap();
        }
        assert!(
            matches!(rx.try_recv(), Err(TryRecvError::Empty)),
            "over {t}"
        );
    }
}

/// Channels whose socket buffers are set smaller and larger than a message
/// still move large messages whole and in order.
#[test]
fn large_messages_cross_any_socket_buffer_size() {
    let big = Bytes::from(vec![0xC3; 1 << 20]);
    for t in ["ipc", "tcp"] {
        for size in [64 << 10, 2 << 20] {
            let builder = ChannelBuilder::new()
                .send_buffer_size(size)
                .recv_buffer_size(size);
            let (tx, rx) = link(t, &builder);
            let payload = big.clone();
            let sender = thread::spawn(move || {
                for _ in 0..8 {
                    tx.send(Message::from(payload.clone())).unwrap();
                }
            });
            for i in 0..8 {
                let m = rx
                    .recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("over {t}, buffers {size}: message {i}: {e}"));
                assert_eq!(m.concat(), big, "over {t}, buffers {size}: message {i}");
            }
            sender.join().unwrap();
        }
    }
}
