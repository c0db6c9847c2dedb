//! Steady traffic for the end-to-end tests, and a watch on gateways' SVIDs.
//!
//! [`Load`] sends one HTTP/1.1 request after another, each on a new
//! connection (as a `curl` loop would), from its own thread and runtime so
//! that the test's blocking calls never delay it. Every answer that is not
//! a 200 from the expected upstream, every connect error and every request
//! without an answer within [`REQUEST_TIMEOUT`] is a failure. The test
//! reads the figures phase by phase ([`Load::phase`]).
//!
//! [`SvidWatch`] polls gateways' `/config_dump` and records every SVID
//! serial the data plane has in use, and how long the current one has left.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A request without a whole answer in this time failed.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two requests.
const INTERVAL: Duration = Duration::from_millis(20);

/// What one phase saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Figures {
    pub(crate) sent: u64,
    pub(crate) ok: u64,
    pub(crate) failed: u64,
    /// The first few failures, with when (since the phase began) and why.
    pub(crate) failures: Vec<String>,
    /// The longest time between two good answers (pauses excluded).
    pub(crate) longest_gap: Duration,
    /// The slowest good request.
    pub(crate) slowest: Duration,
    pub(crate) elapsed: Duration,
}

#[derive(Debug)]
struct State {
    figures: Figures,
    began: Instant,
    last_ok: Option<Instant>,
    /// The test asked for a pause.
    paused: bool,
    /// The loop is parked: no request in flight.
    parked: bool,
}

#[derive(Debug)]
struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    changed: Condvar,
}

/// Sequential requests to `host` through a gateway listener, until dropped.
#[derive(Debug)]
pub(crate) struct Load {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    /// Starts sending to `target` with Host `host`; a good answer is a 200
    /// whose `x-seen-by` is `upstream`.
    pub(crate) fn start(target: SocketAddr, host: &'static str, upstream: &'static str) -> Self {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                figures: Figures::default(),
                began: Instant::now(),
                last_ok: None,
                paused: false,
                parked: false,
            }),
            changed: Condvar::new(),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(run(s, target, host, upstream));
        });
        Self {
            shared,
            thread: Some(thread),
        }
    }

    /// The figures since the last call (or the start), and a new phase.
    pub(crate) fn phase(&self) -> Figures {
        let mut st = self.shared.state.lock().unwrap();
        let mut f = std::mem::take(&mut st.figures);
        f.elapsed = st.began.elapsed();
        st.began = Instant::now();
        f
    }

    /// Stops sending once the request in flight, if any, has its answer;
    /// returns when none is in flight.
    pub(crate) fn pause(&self) {
        let deadline = Instant::now() + REQUEST_TIMEOUT * 2;
        let mut st = self.shared.state.lock().unwrap();
        st.paused = true;
        while !st.parked {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the load did not pause");
            st = self.shared.changed.wait_timeout(st, left).unwrap().0;
        }
    }

    /// Sends again. The gap since the last good answer before the pause is
    /// not counted.
    pub(crate) fn resume(&self) {
        let mut st = self.shared.state.lock().unwrap();
        st.paused = false;
        st.last_ok = None;
        self.shared.changed.notify_all();
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.resume();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(shared: Arc<Shared>, target: SocketAddr, host: &'static str, upstream: &str) {
    while !shared.stop.load(Ordering::SeqCst) {
        {
            let mut st = shared.state.lock().unwrap();
            if st.paused {
                st.parked = true;
                shared.changed.notify_all();
                while st.paused {
                    st = shared.changed.wait(st).unwrap();
                }
                st.parked = false;
                continue;
            }
        }
        let start = Instant::now();
        let outcome =
            match tokio::time::timeout(REQUEST_TIMEOUT, causeway_chaos::load::call(target, host))
                .await
            {
                Ok(Ok((200, by))) if by == upstream => Ok(()),
                Ok(Ok((status, by))) => Err(format!("{status} x-seen-by={by:?}")),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(format!("no answer in {REQUEST_TIMEOUT:?}")),
            };
        let now = Instant::now();
        {
            let mut guard = shared.state.lock().unwrap();
            let st = &mut *guard;
            let since = st.began.elapsed();
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
                }
                Err(e) => {
                    f.failed += 1;
                    if f.failures.len() < 10 {
                        f.failures.push(format!("at {since:.1?}: {e}"));
                    }
                }
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// What a watched gateway has shown of its SVIDs.
#[derive(Debug, Clone, Default)]
pub(crate) struct SvidHistory {
    /// Every serial seen in use, in order, each once.
    pub(crate) serials: Vec<String>,
    /// Seconds left on the SVID in use at the last poll, and when.
    pub(crate) expires_in: Option<(i64, Instant)>,
}

impl SvidHistory {
    /// Serial changes seen: renewals taken into use.
    pub(crate) fn renewals(&self) -> usize {
        self.serials.len().saturating_sub(1)
    }

    /// Seconds left now, from the last poll.
    pub(crate) fn left_now(&self) -> Option<f64> {
        self.expires_in
            .map(|(s, at)| s as f64 - at.elapsed().as_secs_f64())
    }
}

/// Polls the `/config_dump` of gateways by name (admin address) every
/// 250 ms until dropped. An unreachable gateway (restarting) is skipped.
#[derive(Debug)]
pub(crate) struct SvidWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeMap<String, SvidHistory>>>,
    thread: Option<JoinHandle<()>>,
}

impl SvidWatch {
    pub(crate) fn start(gateways: Vec<(String, SocketAddr)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeMap::<String, SvidHistory>::new()));
        let (s, w) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for (name, admin) in &gateways {
                    let Some(dump) = config_dump(*admin) else {
                        continue;
                    };
                    let svid = &dump["credentials"]["svid"];
                    let (Some(serial), Some(left)) =
                        (svid["serial"].as_str(), svid["expires_in_seconds"].as_i64())
                    else {
                        continue;
                    };
                    let mut w = w.lock().unwrap();
                    let h = w.entry(name.clone()).or_default();
                    if h.serials.last().map(String::as_str) != Some(serial) {
                        h.serials.push(serial.to_owned());
                    }
                    h.expires_in = Some((left, Instant::now()));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Self {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    /// What was seen of `name` so far.
    pub(crate) fn history(&self, name: &str) -> SvidHistory {
        self.seen
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for SvidWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// GET /config_dump, parsed; `None` on any failure.
fn config_dump(admin: SocketAddr) -> Option<serde_json::Value> {
    let mut c = TcpStream::connect_timeout(&admin, Duration::from_secs(1)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        c,
        "GET /config_dump HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    c.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// What [`keep_alive_callers`] saw.
#[derive(Debug, Default)]
pub(crate) struct KeepAlive {
    /// Good calls, per caller.
    pub(crate) ok: Vec<u64>,
    /// Every failed call: a connection error, no answer within
    /// [`REQUEST_TIMEOUT`], a status other than 200 or a body other than
    /// the one sent. A caller stops at its first failure.
    pub(crate) failures: Vec<String>,
}

impl KeepAlive {
    pub(crate) fn total(&self) -> u64 {
        self.ok.iter().sum()
    }
}

/// `callers` callers, each on its own HTTP/1.1 keep-alive connection to
/// `target`, POST `/pay` with Host `host` one call after another for
/// `duration`; a good answer is a 200 echoing the body sent (as
/// [`super::upstreams::http_upstream`] does).
pub(crate) async fn keep_alive_callers(
    target: SocketAddr,
    host: &'static str,
    callers: usize,
    duration: Duration,
) -> KeepAlive {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;

    let until = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..callers {
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, Vec::new());
            let tcp = match tokio::net::TcpStream::connect(target).await {
                Ok(t) => t,
                Err(e) => return (ok, vec![format!("caller {c}: connect: {e}")]),
            };
            tcp.set_nodelay(true).unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut i = 0u64;
            while tokio::time::Instant::now() < until && failed.is_empty() {
                i += 1;
                let body = format!("caller {c} call {i}");
                let req = http::Request::post("/pay")
                    .header("host", host)
                    .body(Full::new(bytes::Bytes::from(body.clone())))
                    .unwrap();
                let call = async {
                    tx.ready()
                        .await
                        .map_err(|e| format!("connection not reusable: {e}"))?;
                    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
                    let status = resp.status();
                    let got = resp.into_body().collect().await.map(|b| b.to_bytes());
                    match got {
                        Ok(b) if status == 200 && b == body.as_bytes() => Ok(()),
                        other => Err(format!("{status}: {other:?}")),
                    }
                };
                match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
                    Ok(Ok(())) => ok += 1,
                    Ok(Err(e)) => failed.push(format!("caller {c} call {i}: {e}")),
                    Err(_) => failed.push(format!(
                        "caller {c} call {i}: no answer in {REQUEST_TIMEOUT:?}"
                    )),
                }
            }
            (ok, failed)
        }));
    }
    let mut seen = KeepAlive::default();
    for t in tasks {
        let (ok, failed) = t.await.unwrap();
        seen.ok.push(ok);
        seen.failures.extend(failed);
    }
    seen
}
