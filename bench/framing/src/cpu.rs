//! CPU time of one thread, read from /proc by any thread: the coordinator
//! reads the client's and the server's threads without disturbing them.
//!
//! `schedstat`'s first field is the thread's time on a CPU in ns (user and
//! system, what `getrusage(RUSAGE_THREAD)` adds up, at ns resolution).
//! Where a kernel has no schedstat, `stat`'s utime + stime (clock ticks,
//! taken as 100 per second) is used instead, 10 ms resolution.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow};

/// Ticks per second of `stat`'s utime/stime (USER_HZ; 100 on Linux).
const USER_HZ: u64 = 100;

#[derive(Debug, Clone)]
pub(crate) struct ThreadClock {
    dir: PathBuf,
}

impl ThreadClock {
    /// The calling thread's clock.
    pub(crate) fn current() -> anyhow::Result<Self> {
        let link = fs::read_link("/proc/thread-self").context("/proc/thread-self")?;
        Ok(Self {
            dir: Path::new("/proc").join(link),
        })
    }

    pub(crate) fn read(&self) -> anyhow::Result<Duration> {
        read_dir_clock(&self.dir)
    }
}

/// Which source the figures come from.
pub(crate) fn source() -> &'static str {
    if Path::new("/proc/thread-self/schedstat").exists() {
        "/proc/<pid>/task/<tid>/schedstat (ns)"
    } else {
        "/proc/<pid>/task/<tid>/stat utime+stime (10 ms ticks)"
    }
}

fn read_dir_clock(dir: &Path) -> anyhow::Result<Duration> {
    if let Ok(s) = fs::read_to_string(dir.join("schedstat")) {
        let ns = s
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("unexpected schedstat {s:?}"))?;
        return Ok(Duration::from_nanos(ns));
    }
    let s = fs::read_to_string(dir.join("stat")).with_context(|| format!("{}", dir.display()))?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: state is field 3, utime 14, stime 15.
    let after = s
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("unexpected stat {s:?}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("unexpected stat {s:?}"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_micros(total * 1_000_000 / USER_HZ))
}

/// CPU time of every thread of this process.
pub(crate) fn process() -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    for entry in fs::read_dir("/proc/self/task").context("/proc/self/task")? {
        let entry = entry.context("/proc/self/task")?;
        // A thread may end between the listing and the read.
        if let Ok(t) = read_dir_clock(&entry.path()) {
            total += t;
        }
    }
    Ok(total)
}
