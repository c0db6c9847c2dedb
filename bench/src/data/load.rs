//! The TCP load: closed loops of small messages (each connection sends one
//! and waits for its echo before the next), and one bulk stream; and the
//! figures every load reports. It runs in the benchmark process; the
//! upstreams and every proxy run in processes of their own. The HTTP loads
//! are in `http_load`, the latency phase of every load in `latency`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::process::CpuProbe;
use super::upstream::{MODE_ECHO, MODE_SINK};

/// How long and how hard each measurement runs.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    /// Measured time of each request/response phase.
    pub(crate) duration: Duration,
    /// Time before measuring starts, on the same connections.
    pub(crate) warmup: Duration,
    /// Connections of the throughput phase (TCP and HTTP/1.1).
    pub(crate) connections: usize,
    /// h2c: connections of the throughput phase, and streams in flight on
    /// each.
    pub(crate) h2c_connections: usize,
    pub(crate) h2c_streams: usize,
    /// TCP: size of one message (and of its echo).
    pub(crate) message: usize,
    /// Bytes pushed through the bulk stream; 0 skips the bulk phase.
    pub(crate) bulk_bytes: u64,
    /// Keep every CPU busy at the lowest priority during latency phases
    /// (see `busy`).
    pub(crate) busy_cpus: bool,
    /// `causeway gateway --threads` for the gateways under test.
    pub(crate) gateway_threads: usize,
}

/// Requests per second over many connections.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throughput {
    pub(crate) requests: u64,
    pub(crate) per_second: f64,
    /// CPU time the path's own processes (gateways, proxies) spent per
    /// request in the measured window: on a shared machine this moves far
    /// less than requests/s. Zero for the direct path; `None` without /proc.
    pub(crate) cpu_per_request: Option<Duration>,
    /// HTTP/1.1: connections the path closed after a response (`Connection:
    /// close`), each opened again; not an error.
    pub(crate) reconnects: u64,
}

/// Round-trip times over one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Latency {
    pub(crate) samples: usize,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

/// One stream pushing bytes one way.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bulk {
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
}

impl Bulk {
    /// Decimal megabytes (10^6 bytes) per second.
    pub(crate) fn mb_per_second(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn connect(addr: SocketAddr, mode: u8) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    s.set_nodelay(true).context("TCP_NODELAY")?;
    s.write_all(&[mode])
        .await
        .context("writing the mode byte")?;
    Ok(s)
}

/// One request and its echo; fails on a short or wrong answer.
async fn round_trip(s: &mut TcpStream, msg: &[u8], buf: &mut [u8]) -> anyhow::Result<()> {
    s.write_all(msg).await.context("writing a request")?;
    s.read_exact(buf)
        .await
        .context("reading a response (the path closed the connection?)")?;
    if buf != msg {
        bail!("the response is not the request's echo");
    }
    Ok(())
}

/// `load.connections` connections, each in a closed loop; counts the
/// responses that complete inside the measured window, and the CPU time
/// `cpu`'s processes spend in it.
pub(crate) async fn throughput(
    addr: SocketAddr,
    load: &Load,
    cpu: &CpuProbe,
) -> anyhow::Result<Throughput> {
    let msg = message(load.message);
    let mut conns = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let mut s = connect(addr, MODE_ECHO).await?;
        // One round trip first: through a gateway it opens the stream and,
        // for the first connection, the QUIC connection to the peer.
        round_trip(&mut s, &msg, &mut vec![0u8; msg.len()]).await?;
        conns.push(s);
    }
    let start = Instant::now() + load.warmup;
    let end = start + load.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, mut s) in conns.into_iter().enumerate() {
        let msg = msg.clone();
        tasks.spawn(async move {
            let mut buf = vec![0u8; msg.len()];
            let mut n: u64 = 0;
            loop {
                round_trip(&mut s, &msg, &mut buf)
                    .await
                    .with_context(|| format!("connection {i}"))?;
                let done = Instant::now();
                if done >= end {
                    return Ok::<_, anyhow::Error>(n);
                }
                if done >= start {
                    n += 1;
                }
            }
        });
    }
    tokio::time::sleep_until(start.into()).await;
    let cpu_start = cpu.read();
    tokio::time::sleep_until(end.into()).await;
    let cpu_end = cpu.read();
    let mut requests = 0;
    while let Some(r) = tasks.join_next().await {
        requests += r.context("a load task panicked")??;
    }
    Ok(Throughput {
        requests,
        per_second: requests as f64 / load.duration.as_secs_f64(),
        cpu_per_request: cpu_per_request(cpu_start, cpu_end, requests),
        reconnects: 0,
    })
}

/// CPU time between two probe readings, per request.
pub(crate) fn cpu_per_request(
    start: Option<Duration>,
    end: Option<Duration>,
    requests: u64,
) -> Option<Duration> {
    match (start, end) {
        (Some(a), Some(b)) if requests > 0 => {
            Some(b.saturating_sub(a) / u32::try_from(requests).unwrap_or(u32::MAX))
        }
        _ => None,
    }
}

/// One stream pushing `load.bulk_bytes` to the sink; timed from the first
/// byte until the sink confirms it has read them all.
pub(crate) async fn bulk(addr: SocketAddr, load: &Load) -> anyhow::Result<Bulk> {
    const CHUNK: usize = 256 * 1024;
    let mut s = connect(addr, MODE_SINK).await?;
    let chunk = vec![0x5a_u8; CHUNK];
    let started = Instant::now();
    let mut left = load.bulk_bytes;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
        s.write_all(&chunk[..n])
            .await
            .context("writing bulk data")?;
        left -= n as u64;
    }
    s.shutdown().await.context("closing the bulk stream")?;
    let got = s
        .read_u64()
        .await
        .context("reading the sink's byte count (the path closed early?)")?;
    let elapsed = started.elapsed();
    if got != load.bulk_bytes {
        bail!("the sink counted {got} bytes of {}", load.bulk_bytes);
    }
    Ok(Bulk {
        bytes: got,
        elapsed,
    })
}

/// A recognisable message of `len` bytes.
pub(crate) fn message(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}
