//! The scale group's processes as the runner sees them: a child that talks in
//! lines over its standard input and output, every wait bounded; and a sampler
//! of a server's threads, descriptors and memory from `/proc`.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A child of the runner, killed and reaped when dropped.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Proc {
    /// Starts `exe` with `args`, its standard input and output piped.
    pub fn spawn(exe: &Path, args: &[String], what: &str) -> Result<Proc> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {what}"))?;
        let rx = crate::runner::read_lines(child.stdout.take().expect("piped"));
        Ok(Proc {
            stdin: child.stdin.take(),
            child,
            lines: rx,
            what: what.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("standard input closed")?;
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .with_context(|| format!("{} is gone", self.what))
    }

    /// The next line, waiting until `deadline` at most.
    pub fn line_by(&self, deadline: Instant) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(line) => Ok(line),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!("{}: no answer in time", self.what),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!("{} exited", self.what),
        }
    }

    /// The next line if one has come.
    pub fn try_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    /// Waits for a line that starts with `word`, returning the rest of it.
    pub fn expect(&self, word: &str, deadline: Instant) -> Result<String> {
        let line = self.line_by(deadline)?;
        match line.strip_prefix(word) {
            Some(rest) => Ok(rest.trim().to_owned()),
            None => bail!("{}: expected {word:?}, got {line:?}", self.what),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// What the sampler saw of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub threads: u64,
    pub fds: u64,
    /// Resident memory now (`VmRSS`), and its peak (`VmHWM`), in KiB.
    pub rss_kib: u64,
    pub rss_peak_kib: u64,
}

/// One look at `/proc/<pid>`; `None` once the process is gone.
pub fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some(Usage {
        threads: field("Threads:"),
        fds,
        rss_kib: field("VmRSS:"),
        rss_peak_kib: field("VmHWM:"),
    })
}

/// CPU time a process has used so far, user and system, in seconds
/// (`/proc/<pid>/stat`); `None` once the process is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces, in parentheses: state is
    // the first field, utime the 12th and stime the 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

/// Samples a process every 100 ms in a thread, keeping the maxima.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<Mutex<Usage>>,
    thread: Option<JoinHandle<()>>,
    pid: u32,
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(Mutex::new(Usage::default()));
        let thread = {
            let (stop, max) = (stop.clone(), max.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(u) = usage(pid) else { break };
                    {
                        let mut m = max.lock().expect("sampler lock");
                        m.threads = m.threads.max(u.threads);
                        m.fds = m.fds.max(u.fds);
                        m.rss_kib = m.rss_kib.max(u.rss_kib);
                        m.rss_peak_kib = m.rss_peak_kib.max(u.rss_peak_kib);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Sampler {
            stop,
            max,
            thread: Some(thread),
            pid,
        }
    }

    /// The maxima so far, with one last look first.
    pub fn max(&self) -> Usage {
        let mut m = *self.max.lock().expect("sampler lock");
        if let Some(u) = usage(self.pid) {
            m.threads = m.threads.max(u.threads);
            m.fds = m.fds.max(u.fds);
            m.rss_peak_kib = m.rss_peak_kib.max(u.rss_peak_kib);
        }
        m
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Raises this process's soft descriptor limit to its hard limit: a scale
/// process holds thousands of connections.
pub fn raise_fd_limit() -> Result<u64> {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(lim.rlim_cur)
    }
}
