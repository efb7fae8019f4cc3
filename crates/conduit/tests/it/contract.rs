//! The contract every transport keeps, run against pipes, socket pairs, Unix
//! sockets and TCP alike.

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use conduit::{
    ChannelBuilder, Error, Message, RecvError, RecvTimeoutError, TryRecvError, TrySendError,
};

use crate::support::{TRANSPORTS, link, number_of, numbered};

fn each_transport(test: impl Fn(&str)) {
    for t in TRANSPORTS {
        test(t);
    }
}

#[test]
fn messages_arrive_whole_and_unchanged() {
    each_transport(|t| {
        let (tx, rx) = link(t, &ChannelBuilder::new());
        let big = Bytes::from((0..(1 << 20)).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let messages = vec![
            Message::from("hello"),
            Message::from(""),
            Message::from_frames(["multi", "", "part"]),
            Message::from(big.clone()),
            Message::from_frames([Bytes::from_static(b"head"), big.slice(..300_000)]),
            Message::from(vec![7u8; 256]),
        ];
        let expected = messages.clone();
        let sender = thread::spawn(move || {
            for m in messages {
                tx.send(m).unwrap();
            }
            tx.close().unwrap();
        });
        for want in expected {
            assert_eq!(rx.recv().unwrap(), want, "over {t}");
        }
        assert!(matches!(rx.recv(), Err(RecvError::Closed)), "over {t}");
        sender.join().unwrap();
    });
}

#[test]
fn a_fast_stream_keeps_order_and_loses_nothing_before_close() {
    each_transport(|t| {
        let (tx, rx) = link(t, &ChannelBuilder::new());
        const N: u32 = 200_000;
        let sender = thread::spawn(move || {
            for i in 0..N {
                tx.send(numbered(i)).unwrap();
            }
            // Most of these were batched; close must write every one of them.
            tx.close().unwrap();
        });
        for i in 0..N {
            assert_eq!(number_of(&rx.recv().unwrap()), i, "over {t}");
        }
        assert!(matches!(rx.recv(), Err(RecvError::Closed)), "over {t}");
        sender.join().unwrap();
    });
}

#[test]
fn dropping_the_sender_also_delivers_everything() {
    each_transport(|t| {
        let (tx, rx) = link(t, &ChannelBuilder::new());
        let sender = thread::spawn(move || {
            for i in 0..10_000 {
                tx.send(numbered(i)).unwrap();
            }
            // No close: the drop at the end of this scope must deliver the rest.
        });
        for i in 0..10_000 {
            assert_eq!(number_of(&rx.recv().unwrap()), i, "over {t}");
        }
        assert!(matches!(rx.recv(), Err(RecvError::Closed)), "over {t}");
        sender.join().unwrap();
    });
}

#[test]
fn try_recv_and_recv_timeout_on_a_quiet_channel() {
    each_transport(|t| {
        let (tx, rx) = link(t, &ChannelBuilder::new());
        assert!(
            matches!(rx.try_recv(), Err(TryRecvError::Empty)),
            "over {t}"
        );
        let start = Instant::now();
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(50)),
            Err(RecvTimeoutError::Timeout)
        ));
        assert!(start.elapsed() >= Duration::from_millis(50), "over {t}");
        tx.send(Message::from("now")).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(10)).unwrap(),
            Message::from("now")
        );
        // A message that has arrived is there for try_recv too.
        tx.send(Message::from("again")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.try_recv() {
                Ok(m) => break assert_eq!(m, Message::from("again")),
                Err(TryRecvError::Empty) if Instant::now() < deadline => thread::yield_now(),
                other => panic!("over {t}: {other:?}"),
            }
        }
    });
}

#[test]
fn a_stalled_reader_makes_try_send_full_and_send_timeout_time_out() {
    each_transport(|t| {
        let (tx, rx) = link(t, &ChannelBuilder::new().send_hwm(10));
        let payload = Message::from(vec![0u8; 4096]);
        let mut sent = 0u64;
        // "Full" can be momentary, while the flusher catches up; the reader is
        // stalled once it stays full.
        let mut full_in_a_row = 0;
        while full_in_a_row < 5 {
            match tx.try_send(payload.clone()) {
                Ok(()) => {
                    sent += 1;
                    full_in_a_row = 0;
                }
                Err(TrySendError::Full(m)) => {
                    assert_eq!(m, payload, "over {t}: the message comes back");
                    full_in_a_row += 1;
                    thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("over {t}: {e}"),
            }
            // Kernel buffers plus the high-water mark: bounded, whatever the transport.
            assert!(sent < 100_000, "over {t}: never full");
        }
        // TCP may still grow its buffers, so a send can find room even now; but
        // with nobody reading, one soon waits out its timeout.
        let mut timed_out = false;
        for _ in 0..1000 {
            let start = Instant::now();
            match tx.send_timeout(payload.clone(), Duration::from_millis(50)) {
                Ok(()) => sent += 1,
                Err(conduit::SendTimeoutError::Timeout(m)) => {
                    assert!(start.elapsed() >= Duration::from_millis(50), "over {t}");
                    assert_eq!(m, payload, "over {t}: the message comes back");
                    timed_out = true;
                    break;
                }
                Err(e) => panic!("over {t}: {e}"),
            }
        }
        assert!(timed_out, "over {t}: send_timeout never timed out");
        // Everything accepted arrives once the reader reads.
        let closer = thread::spawn(move || tx.close().unwrap());
        for _ in 0..sent {
            assert_eq!(rx.recv().unwrap().byte_len(), 4096);
        }
        assert!(matches!(rx.recv(), Err(RecvError::Closed)), "over {t}");
        closer.join().unwrap();
    });
}

#[test]
fn sending_to_a_receiver_that_is_gone_fails_with_disconnected() {
    each_transport(|t| {
        let (tx, rx) = link(t, &ChannelBuilder::new());
        drop(rx);
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            match tx.send(Message::from(vec![1u8; 1000])) {
                Ok(()) => assert!(Instant::now() < deadline, "over {t}: sends never failed"),
                Err(e) => break e.error,
            }
        };
        assert!(matches!(error, Error::Disconnected), "over {t}: {error}");
    });
}

#[test]
fn a_message_over_the_maximum_breaks_the_channel_without_reading_it() {
    each_transport(|t| {
        let (tx, rx) = link(t, &ChannelBuilder::new().max_message_size(1000));
        tx.send(Message::from(vec![0u8; 1000])).unwrap();
        tx.send(Message::from_frames([vec![0u8; 600], vec![0u8; 600]]))
            .unwrap();
        assert_eq!(rx.recv().unwrap().byte_len(), 1000, "over {t}");
        match rx.recv() {
            Err(RecvError::Failed(Error::Protocol(conduit::ProtocolError::MessageTooLarge {
                max,
                ..
            }))) => {
                assert_eq!(max, 1000)
            }
            other => panic!("over {t}: {other:?}"),
        }
        // The error is sticky: the stream cannot be resynchronized.
        assert!(matches!(rx.recv(), Err(RecvError::Failed(_))));
    });
}

#[test]
fn a_message_with_no_frames_is_refused_and_handed_back() {
    each_transport(|t| {
        let (tx, _rx) = link(t, &ChannelBuilder::new());
        let err = tx.send(Message::new()).unwrap_err();
        assert!(matches!(err.error, Error::EmptyMessage), "over {t}");
    });
}
