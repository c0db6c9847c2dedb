//! A `causeway gateway` process for end-to-end tests, killed by its pid when
//! dropped, even when an assertion fails.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .args(["gateway", "--config", s(config), "--drain", "1s"])
            .env("CAUSEWAY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let mut gw = Self {
            child,
            ready: serde_json::Value::Null,
            log,
        };
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        gw.ready = serde_json::from_str(&line).unwrap_or_else(|_| {
            panic!(
                "no ready line from {}: {:?}\nlog:\n{}",
                config.display(),
                line,
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
}
