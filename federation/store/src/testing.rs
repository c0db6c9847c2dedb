//! Test support (feature `testing`): a real `etcd` server for one test, on
//! loopback, in a data directory the test owns. The process is killed by its
//! pid when the guard drops, on success, failure or panic alike. Used by
//! this crate's tests and by the controller's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support fails loudly on misuse"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const READY_LINE: &str = "serving insecure client requests on ";

#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl EtcdServer {
    /// Starts etcd on `data_dir` (created or reused) and waits until it
    /// serves clients.
    ///
    /// Ports: etcd 3.4 binds `127.0.0.1:0` to a port the OS picks and logs
    /// the bound client address, which is read back here; so there is no
    /// port to guess and no race with other tests. The peer listener also
    /// gets port 0: a single member never dials it. The advertised URLs are
    /// placeholders (nothing reads them: the client dials the logged
    /// address), and the gRPC gateway, which would dial the advertised
    /// address, is off.
    pub fn start(data_dir: &Path) -> Self {
        let mut child = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg("--listen-client-urls=http://127.0.0.1:0")
            .arg("--advertise-client-urls=http://127.0.0.1:0")
            .arg("--listen-peer-urls=http://127.0.0.1:0")
            .arg("--initial-advertise-peer-urls=http://127.0.0.1:0")
            .arg("--initial-cluster=test=http://127.0.0.1:0")
            .arg("--enable-grpc-gateway=false")
            // Fast elections for a one-member cluster; also lowers etcd's
            // minimum lease TTL to 1 s.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `etcd` ({e}): the etcd tests need a real etcd server; \
                     run .ci/install-deps (Debian package etcd-server)"
                )
            });
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        {
            let log = log.clone();
            // Drains etcd's log for its whole life (a full pipe would stall
            // it), keeps it for failure messages, and reports the address.
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(rest) = line.split(READY_LINE).nth(1) {
                        let addr = rest.split(',').next().unwrap_or(rest).trim().to_owned();
                        let _ = ready_tx.send(addr);
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let mut server = Self {
            child,
            endpoint: String::new(),
            log,
        };
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => server.endpoint = format!("http://{addr}"),
            Err(_) => panic!(
                "etcd did not serve within {START_TIMEOUT:?}; its log:\n{}",
                server.log.lock().unwrap().join("\n")
            ),
        }
        server
    }

    /// Kills the process now (SIGKILL: no clean shutdown) and waits for it.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
