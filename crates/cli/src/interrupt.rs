//! Ctrl-C: the first one asks the command to stop and close its sockets
//! cleanly (exit 130); a second one, while that closing waits on a peer, exits
//! at once. A command's own threads are told to stop the same way ([`stop`]).
//!
//! The library's blocking calls cannot be interrupted from another thread, so
//! commands wait in slices of [`SLICE`] and look at [`requested`] in between.
//! A slice only bounds how long an idle command takes to notice Ctrl-C: a
//! message that arrives ends the wait at once.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The exit code of a command stopped by Ctrl-C (128 + SIGINT, as shells say).
pub const EXIT_CODE: u8 = 130;

/// The longest a wait goes without looking for Ctrl-C.
pub const SLICE: Duration = Duration::from_millis(50);

static SIGNALS: AtomicUsize = AtomicUsize::new(0);
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler.
pub fn install() -> Result<()> {
    ctrlc::set_handler(|| {
        if SIGNALS.fetch_add(1, Ordering::SeqCst) > 0 {
            std::process::exit(EXIT_CODE.into());
        }
    })
    .context("cannot handle Ctrl-C")
}

/// Whether Ctrl-C was pressed.
pub fn by_user() -> bool {
    SIGNALS.load(Ordering::SeqCst) > 0
}

/// Makes every wait end as if Ctrl-C had been pressed: for a command whose
/// work is done to stop its other threads.
pub fn stop() {
    STOPPING.store(true, Ordering::SeqCst);
}

/// Whether waits should end: Ctrl-C, or [`stop`].
pub fn requested() -> bool {
    by_user() || STOPPING.load(Ordering::SeqCst)
}

/// How a wait ended.
#[derive(Debug)]
pub enum Waited<T> {
    Done(T),
    TimedOut,
    Interrupted,
}

/// Calls `attempt` with slices of at most [`SLICE`] until it gives a result
/// (`Some`), `timeout` passes (None: never), or Ctrl-C is pressed.
pub fn wait<T>(
    timeout: Option<Duration>,
    mut attempt: impl FnMut(Duration) -> Result<Option<T>>,
) -> Result<Waited<T>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if requested() {
            return Ok(Waited::Interrupted);
        }
        let slice = match deadline {
            None => SLICE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Waited::TimedOut);
                }
                left.min(SLICE)
            }
        };
        if let Some(result) = attempt(slice)? {
            return Ok(Waited::Done(result));
        }
    }
}

/// Sleeps for `d`; false if Ctrl-C cut it short.
pub fn sleep(d: Duration) -> bool {
    let slept = wait(Some(d), |slice| {
        std::thread::sleep(slice);
        Ok(None::<()>)
    });
    !matches!(slept, Ok(Waited::Interrupted))
}
