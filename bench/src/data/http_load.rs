//! The HTTP loads of the requests/s phase, both `GET /` of the upstream's
//! 64-byte body, in closed loops:
//!
//! - HTTP/1.1 keep-alive: `load.connections` connections, one request in
//!   flight on each, written from one prebuilt buffer (http1.rs);
//! - h2c (prior knowledge): `load.h2c_connections` connections with
//!   `load.h2c_streams` streams in flight on each, h2's client, as a gRPC
//!   client uses one channel for many calls.
//!
//! Every answer that is not a 2xx and every error is counted, and any of
//! them makes the phase an error that names the counts: a path that drops
//! calls is reported as failed, not as fast.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use h2::client::SendRequest;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::load::{Load, Throughput, cpu_per_request};
use super::process::CpuProbe;
use super::{Target, http1};

/// Longest wait for one response; a path that takes longer has failed.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after an error before the connection is opened again.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What one connection (or stream) saw.
#[derive(Debug, Default)]
struct Tally {
    /// 2xx answers completed inside the measured window.
    ok: u64,
    /// Answers that were not 2xx, by status, during the whole phase.
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
    reconnects: u64,
}

impl Tally {
    fn error(&mut self, e: &anyhow::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{e:#}"));
        }
    }

    fn add(&mut self, other: Self) {
        self.ok += other.ok;
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// The phase's figures, or an error naming every failure.
    fn finish(
        self,
        load: &Load,
        cpu: (Option<Duration>, Option<Duration>),
    ) -> anyhow::Result<Throughput> {
        let not_2xx: u64 = self.statuses.values().sum();
        if not_2xx > 0 || self.errors > 0 {
            let statuses: Vec<String> = self
                .statuses
                .iter()
                .map(|(s, n)| format!("{s} x{n}"))
                .collect();
            bail!(
                "{} answered 2xx in the window; {not_2xx} not 2xx{}; {} errors{}",
                self.ok,
                if statuses.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", statuses.join(", "))
                },
                self.errors,
                self.first_error
                    .map(|e| format!(" (first: {e})"))
                    .unwrap_or_default()
            );
        }
        Ok(Throughput {
            requests: self.ok,
            per_second: self.ok as f64 / load.duration.as_secs_f64(),
            cpu_per_request: cpu_per_request(cpu.0, cpu.1, self.ok),
            reconnects: self.reconnects,
        })
    }
}

async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(s)
}

/// One HTTP/1.1 request and its whole response.
async fn exchange(
    s: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> anyhow::Result<http1::Response> {
    let io = async {
        s.write_all(request).await.context("writing a request")?;
        http1::read(s, buf).await
    };
    tokio::time::timeout(REQUEST_TIMEOUT, io)
        .await
        .unwrap_or_else(|_| bail!("no response within {REQUEST_TIMEOUT:?}"))
}

/// HTTP/1.1 keep-alive over `load.connections` connections.
pub(crate) async fn http1(
    target: &Target,
    load: &Load,
    cpu: &CpuProbe,
) -> anyhow::Result<Throughput> {
    let request: Arc<[u8]> = http1::request(&target.host).into();
    let mut conns = Vec::with_capacity(load.connections);
    let mut buf = Vec::with_capacity(4096);
    for i in 0..load.connections {
        let mut s = connect(target.addr).await?;
        // One call first: the path works before anything is timed (and the
        // first one, through two gateways, opens the QUIC connection).
        let r = exchange(&mut s, &request, &mut buf)
            .await
            .with_context(|| format!("connection {i}: the first request"))?;
        if !r.is_success() {
            bail!(
                "connection {i}: the first request was answered {}",
                r.status
            );
        }
        conns.push((!r.close).then_some(s));
    }
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for conn in conns {
        let (request, addr) = (request.clone(), target.addr);
        tasks.spawn(async move {
            let mut t = Tally::default();
            let mut conn = conn;
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < end {
                if conn.is_none() {
                    match connect(addr).await {
                        Ok(s) => conn = Some(s),
                        Err(e) => {
                            t.error(&e);
                            tokio::time::sleep(ERROR_PAUSE).await;
                            continue;
                        }
                    }
                }
                let Some(s) = conn.as_mut() else {
                    continue;
                };
                match exchange(s, &request, &mut buf).await {
                    Ok(r) => {
                        let done = Instant::now();
                        if !r.is_success() {
                            *t.statuses.entry(r.status).or_default() += 1;
                        } else if done >= start && done < end {
                            t.ok += 1;
                        }
                        if r.close {
                            t.reconnects += 1;
                            conn = None;
                        }
                    }
                    Err(e) => {
                        t.error(&e);
                        conn = None;
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
            t
        });
    }
    collect(tasks, start, end, load, cpu).await
}

/// Waits out the window, reading the CPU probe at its edges, then sums
/// what every task saw.
async fn collect(
    mut tasks: tokio::task::JoinSet<Tally>,
    start: Instant,
    end: Instant,
    load: &Load,
    cpu: &CpuProbe,
) -> anyhow::Result<Throughput> {
    tokio::time::sleep_until(start.into()).await;
    let cpu_start = cpu.read();
    tokio::time::sleep_until(end.into()).await;
    let cpu_end = cpu.read();
    let mut total = Tally::default();
    while let Some(t) = tasks.join_next().await {
        total.add(t.context("a load task panicked")?);
    }
    total.finish(load, (cpu_start, cpu_end))
}

/// An h2c connection: its request handle, and the task driving it.
pub(crate) async fn h2c_connect(
    addr: std::net::SocketAddr,
) -> anyhow::Result<(SendRequest<Bytes>, tokio::task::JoinHandle<()>)> {
    let tcp = connect(addr).await?;
    let (send, conn) = h2::client::handshake(tcp)
        .await
        .context("the h2c handshake (HTTP/2 prior knowledge)")?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("h2c connection ended: {e}");
        }
    });
    Ok((send, driver))
}

/// One h2c call: `GET uri`, the body read to its end; the status.
pub(crate) async fn h2c_call(
    send: SendRequest<Bytes>,
    uri: &http::Uri,
) -> anyhow::Result<(SendRequest<Bytes>, u16)> {
    let call = async {
        let mut send = send.ready().await.context("the connection is gone")?;
        let request = http::Request::get(uri.clone())
            .body(())
            .context("building a request")?;
        let (response, _) = send
            .send_request(request, true)
            .context("sending a request")?;
        let response = response.await.context("waiting for a response")?;
        let status = response.status().as_u16();
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.context("reading a response body")?;
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok((send, status))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| bail!("no response within {REQUEST_TIMEOUT:?}"))
}

/// The URI every h2c call asks for: `:authority` names the service.
pub(crate) fn h2c_uri(target: &Target) -> anyhow::Result<http::Uri> {
    format!("http://{}/", target.host)
        .parse()
        .with_context(|| format!("{:?} is not a host name", target.host))
}

/// h2c: `load.h2c_connections` connections, `load.h2c_streams` calls in
/// flight on each. A stream that fails stops (the error is counted): an
/// h2 error is most often the whole connection's.
pub(crate) async fn h2c(
    target: &Target,
    load: &Load,
    cpu: &CpuProbe,
) -> anyhow::Result<Throughput> {
    let uri = h2c_uri(target)?;
    let mut conns = Vec::with_capacity(load.h2c_connections);
    let mut drivers = Vec::new();
    for i in 0..load.h2c_connections {
        let (send, driver) = h2c_connect(target.addr).await?;
        drivers.push(AbortOnDrop(driver));
        let (send, status) = h2c_call(send, &uri)
            .await
            .with_context(|| format!("connection {i}: the first request"))?;
        if !(200..300).contains(&status) {
            bail!("connection {i}: the first request was answered {status}");
        }
        conns.push(send);
    }
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for send in conns {
        for _ in 0..load.h2c_streams {
            let (mut send, uri) = (send.clone(), uri.clone());
            tasks.spawn(async move {
                let mut t = Tally::default();
                while Instant::now() < end {
                    match h2c_call(send, &uri).await {
                        Ok((s, status)) => {
                            send = s;
                            let done = Instant::now();
                            if !(200..300).contains(&status) {
                                *t.statuses.entry(status).or_default() += 1;
                            } else if done >= start && done < end {
                                t.ok += 1;
                            }
                        }
                        Err(e) => {
                            t.error(&e);
                            break;
                        }
                    }
                }
                t
            });
        }
    }
    let result = collect(tasks, start, end, load, cpu).await;
    drop(drivers);
    result
}

/// Ends a spawned task when dropped.
#[derive(Debug)]
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
