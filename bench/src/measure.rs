//! The measuring loops, the same for every implementation.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::case::Timing;

/// One end of a connected message channel, as the loops drive it. Every
/// implementation prepares its payload (of the case's size) when it opens.
pub trait Link {
    /// Sends one message. An error means the peer is gone.
    fn send(&mut self) -> Result<()>;
    /// Receives one whole message and returns its size; `None` when the peer closed.
    fn recv(&mut self) -> Result<Option<usize>>;
    /// Receives one message and sends that same message back; `false` when the peer
    /// closed.
    fn echo(&mut self) -> Result<bool>;

    /// The measuring end of a ping-pong ([`ping_pong`]). An implementation
    /// whose users run such a loop as one task (the async socket) runs it so.
    fn ping_pong(&mut self, size: usize, timing: &Timing) -> Result<RoundTrips> {
        ping_pong(self, size, timing)
    }

    /// The echoing end of a ping-pong ([`echo`]), likewise.
    fn echo_all(&mut self) -> Result<()> {
        echo(self)
    }

    /// The sending end of a stream ([`stream`]), likewise.
    fn stream_all(&mut self) {
        stream(self)
    }

    /// The receiving end of a stream ([`drain`]), likewise.
    fn drain(&mut self, size: usize, timing: &Timing) -> Result<Drained> {
        drain(self, size, timing)
    }
}

/// Round-trip times of one run, in nanoseconds, sorted.
#[derive(Debug)]
pub struct RoundTrips(Vec<u64>);

impl RoundTrips {
    /// From the times measured, in nanoseconds, in any order.
    fn from_times(mut times: Vec<u64>) -> RoundTrips {
        times.sort_unstable();
        RoundTrips(times)
    }

    pub fn median_us(&self) -> f64 {
        self.quantile_us(0.5)
    }

    pub fn p99_us(&self) -> f64 {
        self.quantile_us(0.99)
    }

    /// The nearest-rank quantile.
    fn quantile_us(&self, q: f64) -> f64 {
        let v = &self.0;
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1] as f64 / 1e3
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The measuring end of a ping-pong: sends, waits for the echo, records the time.
pub fn ping_pong<L: Link + ?Sized>(
    link: &mut L,
    size: usize,
    timing: &Timing,
) -> Result<RoundTrips> {
    let round_trip = |link: &mut L| -> Result<()> {
        link.send()?;
        match link.recv()? {
            Some(n) if n == size => Ok(()),
            Some(n) => bail!("echo of {n} bytes, sent {size}"),
            None => bail!("the echoing end closed"),
        }
    };
    let start = Instant::now();
    while start.elapsed() < timing.warmup {
        round_trip(link)?;
    }
    let mut laps = Laps::start(timing.measure);
    loop {
        round_trip(link)?;
        if laps.lap() {
            return Ok(laps.finish());
        }
    }
}

/// The times of round trips made one after another, until a measurement's
/// time has passed.
pub struct Laps {
    start: Instant,
    last: Instant,
    measure: Duration,
    times: Vec<u64>,
}

impl Laps {
    pub fn start(measure: Duration) -> Laps {
        let start = Instant::now();
        Laps {
            start,
            last: start,
            measure,
            times: Vec::with_capacity(1 << 16),
        }
    }

    /// Records the round trip that just ended; true once the time has passed.
    pub fn lap(&mut self) -> bool {
        let now = Instant::now();
        self.times.push((now - self.last).as_nanos() as u64);
        self.last = now;
        now - self.start >= self.measure
    }

    pub fn finish(self) -> RoundTrips {
        RoundTrips::from_times(self.times)
    }
}

/// The other end of a ping-pong: echoes until the measuring end closes.
pub fn echo<L: Link + ?Sized>(link: &mut L) -> Result<()> {
    while link.echo()? {}
    Ok(())
}

/// The sending end of a stream: sends until the receiver goes away.
pub fn stream<L: Link + ?Sized>(link: &mut L) {
    while link.send().is_ok() {}
}

/// A stream as the receiving end saw it.
#[derive(Debug)]
pub struct Drained {
    /// The median over windows of messages per second.
    pub msgs_per_s: f64,
    /// Messages received in all, warm-up included (for per-message costs measured
    /// from outside, such as system call counts).
    pub total: u64,
}

/// Messages received between two looks at the clock in [`drain`]: reading it
/// per message would cost a fair part of a small message's budget, so it is
/// read once per about 64 KiB of traffic.
pub fn stride(size: usize) -> u64 {
    ((64 << 10) / size.max(1)).clamp(1, 4096) as u64
}

/// The receiving end of a stream.
pub fn drain<L: Link + ?Sized>(link: &mut L, size: usize, timing: &Timing) -> Result<Drained> {
    let stride = stride(size);
    let recv_counted = |link: &mut L, until: Instant| -> Result<(u64, Instant)> {
        let mut n = 0u64;
        loop {
            for _ in 0..stride {
                match link.recv()? {
                    Some(got) if got == size => {}
                    Some(got) => bail!("received {got} bytes, expected {size}"),
                    None => bail!("the sender closed"),
                }
            }
            n += stride;
            let now = Instant::now();
            if now >= until {
                return Ok((n, now));
            }
        }
    };
    let (mut total, mut t0) = recv_counted(link, Instant::now() + timing.warmup)?;
    let window = timing.measure / timing.windows.max(1);
    let mut rates = Vec::new();
    for _ in 0..timing.windows.max(1) {
        let (n, t1) = recv_counted(link, t0 + window)?;
        total += n;
        rates.push(n as f64 / (t1 - t0).as_secs_f64().max(1e-9));
        t0 = t1;
    }
    Ok(Drained {
        msgs_per_s: median(&mut rates),
        total,
    })
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// How long a case may take before it is given up as hung.
pub fn deadline(timing: &Timing) -> Duration {
    timing.warmup + timing.measure + Duration::from_secs(20)
}
