//! Criterion micro-benchmarks of the ZMTP codec, no I/O: encoding messages into a
//! `SendBuffer` (as the send path queues them) and decoding a buffer of traffic
//! back into messages (as the receive path does), in messages/s and bytes/s.
//!
//!   cargo bench --manifest-path bench/Cargo.toml --bench codec

use std::hint::black_box;
use std::io::IoSlice;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use conduit_proto::{Decoder, Item, Message, SendBuffer, put_message};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const SIZES: [usize; 5] = [8, 64, 1 << 10, 64 << 10, 1 << 20];

/// Messages per iteration: about 1 MiB of payload, at least 16 and at most 1000.
fn batch(size: usize) -> usize {
    ((1 << 20) / size).clamp(16, 1000)
}

fn throughput(size: usize) -> Throughput {
    let n = batch(size) as u64;
    Throughput::ElementsAndBytes {
        elements: n,
        bytes: n * size as u64,
    }
}

fn label(size: usize) -> String {
    match size {
        s if s >= 1 << 20 => format!("{}MiB", s >> 20),
        s if s >= 1 << 10 => format!("{}KiB", s >> 10),
        s => format!("{s}B"),
    }
}

/// Queues a batch of messages and hands every byte out as `writev` slices, the
/// way the writer does, with a write that takes everything.
fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for size in SIZES {
        let msg = Message::from(Bytes::from(vec![0xA5; size]));
        let n = batch(size);
        group.throughput(throughput(size));
        group.bench_function(label(size), |b| {
            let mut buf = SendBuffer::new();
            b.iter(|| {
                for _ in 0..n {
                    buf.push_message(black_box(&msg));
                }
                while !buf.is_empty() {
                    let mut slices = [IoSlice::new(&[]); 64];
                    let k = buf.io_slices(&mut slices);
                    let written: usize = slices[..k].iter().map(|s| black_box(s.len())).sum();
                    buf.advance(written);
                }
            });
        });
    }
    group.finish();
}

/// Decodes a buffer holding a batch of messages, as the reader does after a read.
fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in SIZES {
        let msg = Message::from(Bytes::from(vec![0xA5; size]));
        let n = batch(size);
        let mut wire = BytesMut::new();
        for _ in 0..n {
            put_message(&mut wire, &msg);
        }
        let wire = wire.freeze();
        group.throughput(throughput(size));
        group.bench_function(label(size), |b| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut src| {
                    let mut decoder = Decoder::new(64 << 20);
                    let mut got = 0;
                    while let Some(item) = decoder.decode(&mut src).expect("valid traffic") {
                        if let Item::Message(m) = item {
                            black_box(&m);
                            got += 1;
                        }
                    }
                    assert_eq!(got, n);
                },
                BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = codec;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = encode, decode
}
criterion_main!(codec);
