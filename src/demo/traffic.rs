//! The demo's calls: what a workload does, a plain HTTP request or a TCP
//! connection to its local gateway's listener, each on a new connection as
//! a `curl` loop would. [`Traffic`] runs one closed loop per path until
//! stopped and keeps, per path, the count, the failures with their reason
//! and every good call's latency.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::services::{CALLER, SERVED_BY};

/// A call without its whole answer in this time failed.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Failures kept per path, with their reason.
const FAILURES_KEPT: usize = 5;

/// What a good answer is.
#[derive(Debug, Clone)]
pub(crate) enum Expect {
    /// HTTP 200 from `service`, which saw `caller`.
    Served {
        service: &'static str,
        caller: &'static str,
    },
    /// HTTP 403 from a gateway, `x-causeway-refusal: <reason>`.
    Refused { reason: &'static str },
    /// TCP: `<service>|`, then the bytes sent come back.
    Echo { service: &'static str },
}

/// One path through the gateways.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// Short, for the tables and the JSON (`east_to_west_http`).
    pub(crate) name: &'static str,
    /// For people: `east → west  http  payments.west`.
    pub(crate) label: String,
    /// The local gateway's listener.
    pub(crate) target: SocketAddr,
    /// Host for HTTP; the service for TCP.
    pub(crate) host: &'static str,
    pub(crate) expect: Expect,
    /// Pause between two calls of the loop.
    pub(crate) interval: Duration,
}

/// One call's outcome: Ok(what came back, in a line) or Err(why it failed).
pub(crate) type Outcome = Result<String, String>;

impl Path {
    /// One call, checked against what is expected, within [`CALL_TIMEOUT`].
    pub(crate) async fn call(&self) -> Outcome {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_once()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer in {CALL_TIMEOUT:?}")),
        }
    }

    async fn call_once(&self) -> Outcome {
        match &self.expect {
            Expect::Echo { service } => tcp_call(self.target, service).await,
            Expect::Served { service, caller } => {
                let a = http_get(self.target, self.host, "/hello").await?;
                let by = a.header(SERVED_BY);
                let seen = a.header(CALLER);
                if a.status == 200 && by == *service && seen == *caller {
                    Ok(format!("200 {}", a.body.trim_end()))
                } else {
                    Err(a.describe())
                }
            }
            Expect::Refused { reason } => {
                let a = http_get(self.target, self.host, "/hello").await?;
                if a.status == 403 && a.header("x-causeway-refusal") == *reason {
                    Ok(a.body.trim_end().to_owned())
                } else {
                    Err(format!("expected 403 {reason}, got {}", a.describe()))
                }
            }
        }
    }
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn describe(&self) -> String {
        let refusal = self.header("x-causeway-refusal");
        if refusal.is_empty() {
            format!("{} {}", self.status, self.body.trim_end())
        } else {
            format!("{} ({refusal}) {}", self.status, self.body.trim_end())
        }
    }
}

/// GET `path` with Host `host` on a new HTTP/1.1 connection to `target`.
async fn http_get(target: SocketAddr, host: &str, path: &str) -> Result<Answer, String> {
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header(http::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    conn.abort();
    Ok(Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Connects, reads `<service>|`, sends a line and reads it back.
async fn tcp_call(target: SocketAddr, service: &str) -> Outcome {
    const PING: &[u8] = b"ping from the demo\n";
    let mut tcp = TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect {target}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let want = format!("{service}|");
    let mut greeting = vec![0u8; want.len()];
    tcp.read_exact(&mut greeting)
        .await
        .map_err(|e| format!("no greeting: {e}"))?;
    if greeting != want.as_bytes() {
        return Err(format!(
            "greeting {:?}, not {want:?}",
            String::from_utf8_lossy(&greeting)
        ));
    }
    tcp.write_all(PING)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut echo = vec![0u8; PING.len()];
    tcp.read_exact(&mut echo)
        .await
        .map_err(|e| format!("no echo: {e}"))?;
    if echo != PING {
        return Err(format!("echo {:?}", String::from_utf8_lossy(&echo)));
    }
    let _ = tcp.shutdown().await;
    Ok(format!(
        "{want}{} (greeting, then the echo)",
        String::from_utf8_lossy(PING).trim_end()
    ))
}

/// What one path saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Stats {
    pub(crate) sent: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// The first failures: seconds since the traffic started, and why.
    pub(crate) failures: Vec<(f64, String)>,
    /// Every good call's latency, in microseconds.
    latencies_us: Vec<u64>,
}

impl Stats {
    /// The `p`-th percentile (0 < p <= 100) of good calls' latency, by
    /// nearest rank.
    pub(crate) fn percentile(&self, p: f64) -> Option<Duration> {
        let mut v = self.latencies_us.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        let i = rank.clamp(1, v.len()) - 1;
        Some(Duration::from_micros(v[i]))
    }
}

/// Closed loops of calls, one per path, until [`Traffic::stop`].
#[derive(Debug)]
pub(crate) struct Traffic {
    paths: Vec<Path>,
    stats: Vec<Arc<Mutex<Stats>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Traffic {
    pub(crate) fn start(paths: Vec<Path>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let began = Instant::now();
        let mut stats = Vec::new();
        let mut tasks = Vec::new();
        for p in &paths {
            let s = Arc::new(Mutex::new(Stats::default()));
            stats.push(s.clone());
            let (p, stop) = (p.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let outcome = p.call().await;
                    let took = t0.elapsed();
                    if let Ok(mut s) = s.lock() {
                        s.sent += 1;
                        match outcome {
                            Ok(_) => {
                                s.ok += 1;
                                s.latencies_us
                                    .push(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
                            }
                            Err(e) => {
                                s.failed += 1;
                                if s.failures.len() < FAILURES_KEPT {
                                    s.failures.push((began.elapsed().as_secs_f64(), e));
                                }
                            }
                        }
                    }
                    tokio::time::sleep(p.interval).await;
                }
            }));
        }
        Self {
            paths,
            stats,
            stop,
            tasks,
        }
    }

    /// Calls so far, and how many failed.
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.stats
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| (s.sent, s.failed)))
            .fold((0, 0), |(a, b), (s, f)| (a + s, b + f))
    }

    /// Stops the loops once their call in flight has its answer; each
    /// path with what it saw.
    pub(crate) async fn stop(mut self) -> Vec<(Path, Stats)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        let stats = self
            .stats
            .iter()
            .map(|s| s.lock().map(|s| s.clone()).unwrap_or_default());
        std::mem::take(&mut self.paths)
            .into_iter()
            .zip(stats)
            .collect()
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = Stats {
            latencies_us: (1..=100).rev().collect(),
            ..Stats::default()
        };
        assert_eq!(s.percentile(50.0), Some(Duration::from_micros(50)));
        assert_eq!(s.percentile(99.0), Some(Duration::from_micros(99)));
        assert_eq!(s.percentile(100.0), Some(Duration::from_micros(100)));
        let one = Stats {
            latencies_us: vec![7],
            ..Stats::default()
        };
        assert_eq!(one.percentile(99.0), Some(Duration::from_micros(7)));
        assert_eq!(Stats::default().percentile(50.0), None);
    }
}
