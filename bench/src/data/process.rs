//! Child processes of the benchmark (gateways, the upstream, nginx,
//! haproxy): each one is owned by a [`ChildGuard`] that ends it by its pid
//! when dropped, on every exit path: success, error or panic.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::process::{Pid, Signal, kill_process};

/// How long a child may take to exit after SIGTERM before it gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);

/// A running child process, its stderr going to `log`.
#[derive(Debug)]
pub(crate) struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
    /// Held open for the child's life: a child that watches its stdin (the
    /// upstream) exits when the benchmark goes away, even by SIGKILL.
    _stdin: Option<ChildStdin>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdout piped (for a ready line) and stderr in `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let err = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("cannot start {name} ({cmd:?})"))?;
        Ok(Self {
            name: name.to_owned(),
            _stdin: child.stdin.take(),
            child,
            log: log.to_owned(),
        })
    }

    /// The first line the child prints on stdout, within `timeout`.
    pub(crate) fn ready_line(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let stdout = self
            .child
            .stdout
            .take()
            .with_context(|| format!("{}: stdout already taken", self.name))?;
        let (tx, rx) = mpsc::channel();
        // The reader ends when the child closes stdout (at exit at the latest).
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(timeout) {
            Ok(line) if !line.trim().is_empty() => Ok(line),
            _ => bail!(
                "{} printed no ready line within {timeout:?}; its log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            ),
        }
    }

    /// Waits until `addr` accepts TCP connections, failing early if the
    /// child exits.
    pub(crate) fn wait_listening(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting on a child")? {
                bail!(
                    "{} exited ({status}) before listening on {addr}; its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} is not listening on {addr} after {timeout:?}; its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the child's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for ChildGuard {
    /// SIGTERM first, so that a master process (nginx) takes its workers
    /// down with it; SIGKILL if it is still there after the grace period.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago, for programs (nginx,
/// haproxy) that cannot report the port they bound. The OS picks it.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(l.local_addr().context("probe socket address")?.port())
}

/// CPU time (user + system, every thread) of a set of processes and their
/// direct children (nginx's workers), read from /proc. The set is fixed
/// when the probe is made; `None` where /proc cannot be read.
#[derive(Debug, Clone)]
pub(crate) struct CpuProbe {
    pids: Vec<u32>,
}

impl CpuProbe {
    pub(crate) fn new(roots: &[u32]) -> Self {
        let mut pids = roots.to_vec();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if stat_fields(pid).is_some_and(|f| roots.contains(&f.ppid)) {
                    pids.push(pid);
                }
            }
        }
        Self { pids }
    }

    /// Total CPU time of the set so far.
    pub(crate) fn read(&self) -> Option<Duration> {
        if self.pids.is_empty() {
            return Some(Duration::ZERO);
        }
        let ticks: u64 = self
            .pids
            .iter()
            .map(|&p| stat_fields(p).map(|f| f.utime + f.stime))
            .sum::<Option<u64>>()?;
        let hz = rustix::param::clock_ticks_per_second().max(1);
        Some(Duration::from_nanos(
            ticks.saturating_mul(1_000_000_000) / hz,
        ))
    }
}

struct StatFields {
    ppid: u32,
    utime: u64,
    stime: u64,
}

/// Fields of /proc/PID/stat, read after the command name (which may hold
/// spaces and parentheses).
fn stat_fields(pid: u32) -> Option<StatFields> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    // After ")": state(3) ppid(4) ... utime(14) stime(15), numbered from 1.
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(StatFields {
        ppid: f.get(1)?.parse().ok()?,
        utime: f.get(11)?.parse().ok()?,
        stime: f.get(12)?.parse().ok()?,
    })
}
