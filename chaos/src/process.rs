//! The `causeway` binary: its CLI commands, and its long-running processes
//! (controllers, gateways), each killed by its pid when its guard drops,
//! however the run ends (an error, a panic in a test).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustix::process::{Pid, Signal, kill_process};

/// How long a process may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one CLI command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// The `causeway` binary every process and command runs.
#[derive(Debug, Clone)]
pub struct Causeway {
    pub bin: PathBuf,
}

/// The outcome of one CLI command.
#[derive(Debug, Clone)]
pub struct Run {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// The command's stdout as JSON.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("`{}` printed no JSON: {}", self.cmdline, self.describe()))
    }

    /// Fails unless the command exited 0.
    pub fn success(self) -> Result<Self> {
        if self.ok() {
            Ok(self)
        } else {
            bail!("{}", self.describe())
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "`{}` exited with {}; stdout: {}; stderr: {}",
            self.cmdline,
            self.status,
            self.stdout.trim(),
            tail(&self.stderr, 10).trim()
        )
    }
}

impl Causeway {
    /// The binary named on the command line or by `CAUSEWAY_BIN`, else the
    /// `causeway` next to the running executable (the same target
    /// directory, or its parent for a test binary in `deps/`).
    pub fn locate(explicit: Option<PathBuf>) -> Result<Self> {
        if let Some(bin) = explicit.or_else(|| std::env::var_os("CAUSEWAY_BIN").map(PathBuf::from))
        {
            if bin.is_file() {
                return Ok(Self { bin });
            }
            bail!("no causeway binary at {}", bin.display());
        }
        let exe = std::env::current_exe().context("where this program is")?;
        let mut dir = exe.parent();
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let bin = d.join("causeway");
            if bin.is_file() {
                return Ok(Self { bin });
            }
            dir = d.parent();
        }
        // The build that puts `causeway` where this program looks for it.
        let release = exe
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|n| n == "release");
        let build = if release {
            "cargo build --release"
        } else {
            "cargo build --bin causeway"
        };
        bail!(
            "no causeway binary next to {}: build it first (`{build}`), or name it with \
             --causeway or CAUSEWAY_BIN",
            exe.display()
        )
    }

    /// Runs `causeway ARGS` to its end (at most two minutes).
    pub fn run(&self, args: &[&str]) -> Result<Run> {
        let cmdline = format!("causeway {}", args.join(" "));
        let mut child = Command::new(&self.bin)
            .args(args)
            .env_remove("CAUSEWAY_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        let out = drain(child.stdout.take());
        let err = drain(child.stderr.take());
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("`{cmdline}` did not end within {COMMAND_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Ok(Run {
            cmdline,
            status,
            stdout: out.recv().unwrap_or_default(),
            stderr: err.recv().unwrap_or_default(),
        })
    }

    /// Starts `causeway ARGS` with `env`, its stderr in `log`, and waits
    /// for its ready line (JSON) on stdout.
    pub fn spawn(
        &self,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Proc> {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("CAUSEWAY_LOG", "info")
            .env_remove(CRASH_VAR)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                File::create(log).with_context(|| format!("create {}", log.display()))?,
            ));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot run {}", self.bin.display()))?;
        let line = first_line(&mut child);
        let mut p = Proc {
            name: name.to_owned(),
            child,
            ready: serde_json::Value::Null,
            log: log.to_owned(),
            exited: None,
        };
        match serde_json::from_str(&line) {
            Ok(v) => p.ready = v,
            Err(_) => bail!(
                "{name}: no ready line within {READY_TIMEOUT:?} ({line:?}); its log:\n{}",
                tail(&p.log_text(), 20)
            ),
        }
        Ok(p)
    }
}

/// The variable that makes a controller's leader crash as it begins a
/// rotation step; never inherited by a process unless asked.
pub const CRASH_VAR: &str = "CAUSEWAY_CHAOS_CRASH_AT_STEP";

fn drain<R: Read + Send + 'static>(r: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        let _ = tx.send(s);
    });
    rx
}

/// The first line the child prints on stdout, or "" after the timeout.
fn first_line(child: &mut Child) -> String {
    let Some(stdout) = child.stdout.take() else {
        return String::new();
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(READY_TIMEOUT).unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

/// A running `causeway` process; SIGKILLed and reaped when dropped.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
    /// Its ready line.
    pub ready: serde_json::Value,
    pub log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to the process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = Pid::from_child(&self.child);
        kill_process(pid, signal).with_context(|| format!("signal {signal:?} to {}", self.name))
    }

    /// Waits up to `limit` for the process to end on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.exited {
                return Ok(s);
            }
            if let Some(s) = self.child.try_wait()? {
                self.exited = Some(s);
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("{} still running after {limit:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A string field of the ready line.
    pub fn field(&self, name: &str) -> Result<String> {
        self.ready
            .pointer(name)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("{}: no {name} in its ready line {}", self.name, self.ready))
    }

    /// An address of the ready line, such as `/listeners/web`.
    pub fn addr(&self, pointer: &str) -> Result<SocketAddr> {
        let s = self.field(pointer)?;
        s.parse()
            .with_context(|| format!("{}: {pointer} is {s:?}", self.name))
    }
}

/// GET `path` from `addr` (HTTP/1.1, one connection): the status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut c = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect {addr}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    c.read_to_string(&mut out)
        .with_context(|| format!("read GET {path} from {addr}"))?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// The samples of metric `name` in a Prometheus text page: each one's
/// labels and value.
pub fn samples(page: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let labels = labels
            .split("\",")
            .filter_map(|kv| {
                let (k, v) = kv.split_once("=\"")?;
                Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
            })
            .collect();
        out.push((labels, value));
    }
    out
}

/// The sum of the samples of `name` whose labels include every pair of
/// `with`.
pub fn metric_sum(page: &str, name: &str, with: &[(&str, &str)]) -> f64 {
    samples(page, name)
        .iter()
        .filter(|(l, _)| {
            with.iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}
