//! Steady traffic between two trust domains: one HTTP/1.1 request after
//! another, each on a new connection to a gateway's listener (as a `curl`
//! loop would), from its own thread and runtime so that the scenario's
//! blocking calls never delay it. Every answer that is not a 200 from the
//! expected upstream, every connect error and every request without a
//! whole answer within [`REQUEST_TIMEOUT`] is a failure.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

/// A request without a whole answer in this time failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How many failures are kept with their time and reason.
const KEPT_FAILURES: usize = 10;

/// What a load has seen.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// The first few failures: when (Unix ms) and why.
    pub failures: Vec<(i64, String)>,
    /// The longest time between two good answers (pauses excluded).
    pub longest_gap: Duration,
    /// The slowest good request.
    pub slowest: Duration,
    /// When the last good answer came (Unix ms).
    pub last_ok_unix_ms: Option<i64>,
}

impl Figures {
    /// When the first failure came (Unix ms).
    pub fn first_failure_unix_ms(&self) -> Option<i64> {
        self.failures.first().map(|(t, _)| *t)
    }

    /// Adds `other`'s counts (the gap is the longest of both).
    pub fn add(&mut self, other: &Figures) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.failed += other.failed;
        self.longest_gap = self.longest_gap.max(other.longest_gap);
        self.slowest = self.slowest.max(other.slowest);
        self.failures.extend(other.failures.iter().cloned());
        self.failures.sort();
        self.failures.truncate(KEPT_FAILURES);
        self.last_ok_unix_ms = self.last_ok_unix_ms.max(other.last_ok_unix_ms);
    }

    pub fn json(&self) -> serde_json::Value {
        json!({
            "sent": self.sent, "ok": self.ok, "failed": self.failed,
            "longest_gap_ms": self.longest_gap.as_millis(),
            "slowest_ms": self.slowest.as_millis(),
            "failures": self.failures.iter().map(|(t, why)| json!({"unix_ms": t, "why": why})).collect::<Vec<_>>(),
        })
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[derive(Debug)]
struct State {
    figures: Figures,
    last_ok: Option<Instant>,
    paused: bool,
    /// No request in flight while paused.
    parked: bool,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sequential requests with Host `host` to `target`, until dropped.
#[derive(Debug)]
pub struct Load {
    /// Such as `alpha->beta`.
    pub name: String,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    /// Starts sending to `target` with Host `host`, one request every
    /// `interval`; a good answer is a 200 whose `x-seen-by` is `upstream`.
    pub fn start(
        name: String,
        target: SocketAddr,
        host: String,
        upstream: String,
        interval: Duration,
    ) -> Result<Self> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                figures: Figures::default(),
                last_ok: None,
                paused: false,
                parked: false,
            }),
            changed: Condvar::new(),
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("load {name}"))
            .spawn(move || rt.block_on(run(s, target, host, upstream, interval)))?;
        Ok(Self {
            name,
            shared,
            thread: Some(thread),
        })
    }

    /// What it has seen so far.
    pub fn figures(&self) -> Figures {
        self.shared.lock().figures.clone()
    }

    /// Stops sending once the request in flight, if any, has its answer.
    pub fn pause(&self) -> Result<()> {
        let deadline = Instant::now() + REQUEST_TIMEOUT * 2;
        let mut st = self.shared.lock();
        st.paused = true;
        while !st.parked {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(anyhow!("the load {} did not pause", self.name));
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    /// Sends again; the time paused is no gap.
    pub fn resume(&self) {
        let mut st = self.shared.lock();
        st.paused = false;
        st.last_ok = None;
        self.shared.changed.notify_all();
    }

    /// Stops and returns what it saw.
    pub fn stop(mut self) -> Figures {
        self.halt();
        self.figures()
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.resume();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.halt();
    }
}

async fn run(
    shared: Arc<Shared>,
    target: SocketAddr,
    host: String,
    upstream: String,
    interval: Duration,
) {
    while !shared.stop.load(Ordering::SeqCst) {
        {
            let mut st = shared.lock();
            if st.paused {
                st.parked = true;
                shared.changed.notify_all();
                while st.paused {
                    st = shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.parked = false;
                continue;
            }
        }
        let start = Instant::now();
        let outcome = match tokio::time::timeout(REQUEST_TIMEOUT, call(target, &host)).await {
            Ok(Ok((200, by))) if by == upstream => Ok(()),
            Ok(Ok((status, by))) => Err(format!("{status} x-seen-by={by:?}")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer in {REQUEST_TIMEOUT:?}")),
        };
        let now = Instant::now();
        {
            let mut guard = shared.lock();
            let st = &mut *guard;
            let f = &mut st.figures;
            f.sent += 1;
            match outcome {
                Ok(()) => {
                    f.ok += 1;
                    f.slowest = f.slowest.max(now - start);
                    if let Some(last) = st.last_ok {
                        f.longest_gap = f.longest_gap.max(now - last);
                    }
                    st.last_ok = Some(now);
                    f.last_ok_unix_ms = Some(unix_ms());
                }
                Err(e) => {
                    f.failed += 1;
                    if f.failures.len() < KEPT_FAILURES {
                        f.failures.push((unix_ms(), e));
                    }
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One GET on a new connection: the status and `x-seen-by` (with the
/// gateway's refusal reason, if any). The end-to-end tests' load uses it
/// too.
pub async fn call(target: SocketAddr, host: &str) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/load")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = tx
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let header = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let by = header("x-seen-by").unwrap_or_default();
    let refusal = header("x-causeway-refusal");
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    match refusal {
        Some(r) => Ok((status, format!("{by} (refusal: {r})"))),
        None => Ok((status, by)),
    }
}

/// One request, blocking: Ok when the right upstream answered 200.
pub fn probe(target: SocketAddr, host: &str, upstream: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match rt.block_on(async { tokio::time::timeout(REQUEST_TIMEOUT, call(target, host)).await }) {
        Ok(Ok((200, by))) if by == upstream => Ok(()),
        Ok(Ok((status, by))) => Err(format!("{status} x-seen-by={by:?}")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("no answer in {REQUEST_TIMEOUT:?}")),
    }
}
