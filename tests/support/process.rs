//! `causeway gateway` and `causeway controller` processes for end-to-end
//! tests, each killed by its pid when dropped, even when an assertion fails.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::s;

pub(crate) struct Gateway {
    pub(crate) child: Child,
    pub(crate) ready: serde_json::Value,
    pub(crate) log: PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts `causeway gateway --config CONFIG` and waits for its ready line.
    pub(crate) fn start(config: &Path, log: PathBuf) -> Self {
        Self::start_args(config, log, &[])
    }

    /// The same, with more command-line arguments.
    pub(crate) fn start_args(config: &Path, log: PathBuf, extra: &[&str]) -> Self {
        let mut args = vec!["gateway", "--config", s(config), "--drain", "1s"];
        args.extend(extra);
        let (child, line) = start_ready(&args, &log);
        let mut gw = Self {
            child,
            ready: serde_json::Value::Null,
            log,
        };
        gw.ready = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "no ready line from {}: {line:?}\nlog:\n{}",
                config.display(),
                gw.log_text()
            )
        });
        gw
    }

    /// An address from the ready line, such as `/listeners/frontend`.
    pub(crate) fn addr(&self, pointer: &str) -> SocketAddr {
        self.ready
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no {pointer} in {}", self.ready))
            .parse()
            .unwrap()
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The most memory the process has had resident so far (`VmHWM` in
    /// /proc/<pid>/status), in KiB.
    pub(crate) fn peak_rss_kib(&self) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {path}:\n{status}"))
    }

    /// GET `path` on the admin listener: the status and the body.
    pub(crate) fn admin_get(&self, path: &str) -> (u16, String) {
        let mut c = TcpStream::connect(self.addr("/admin")).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_owned())
    }

    /// The value of one sample in /metrics, such as
    /// `causeway_gateway_requests_total{direction="inbound",...}`; 0 when
    /// absent. Labels must be given in Prometheus' (sorted) order.
    pub(crate) fn metric(&self, sample: &str) -> f64 {
        let (_, text) = self.admin_get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// Starts `causeway ARGS`, its log in `log`; returns it and the first line
/// it prints (its ready line), or "" after 30 s.
fn start_ready(args: &[&str], log: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
        .args(args)
        .env("CAUSEWAY_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let line = first_line(&mut child);
    (child, line)
}

/// The first line the child prints on stdout, or "" after 30 s.
fn first_line(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default()
}

/// A `causeway controller` process.
pub(crate) struct Controller {
    pub(crate) child: Child,
    /// The ready line: `trust_domain`, `api`, `admin_socket`, `metrics`,
    /// `root_pin`.
    pub(crate) ready: serde_json::Value,
    pub(crate) log: PathBuf,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Controller {
    /// Starts `causeway controller --config CONFIG` and waits for its ready
    /// line.
    pub(crate) fn start(config: &Path, log: PathBuf) -> Self {
        let (child, line) = start_ready(&["controller", "--config", s(config)], &log);
        let mut c = Self {
            child,
            ready: serde_json::Value::Null,
            log,
        };
        c.ready = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "no ready line from the controller of {}: {line:?}\nlog:\n{}",
                config.display(),
                c.log_text()
            )
        });
        c
    }

    /// The admin socket, for `--controller`.
    pub(crate) fn socket(&self) -> String {
        self.ready["admin_socket"].as_str().unwrap().to_owned()
    }

    /// The gateway API's address, for a gateway's `controller.address`.
    pub(crate) fn api(&self) -> String {
        self.ready["api"].as_str().unwrap().to_owned()
    }

    pub(crate) fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}
