//! The latency phase: round-trip times of every scenario, one connection
//! each, every round trip timed, the scenarios taking turns: each runs a
//! closed loop for a [`SLICE`], then the next, so that a change in the
//! machine's load (a neighbour's burst, the host taking a vCPU) hits every
//! path alike. Each gets `load.duration` of measured time after
//! `load.warmup` of its own.
//!
//! Everything runs on one thread of its own: TCP and HTTP/1.1 on plain
//! blocking sockets, so that the figures hold no scheduler hand-offs of the
//! load generator; h2c on a current-thread runtime on that same thread (h2
//! needs one), entered once per turn. A scenario that fails is reported and
//! left out of later turns.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use h2::client::SendRequest;
use tokio::runtime::Runtime;

use super::http_load::{AbortOnDrop, REQUEST_TIMEOUT, h2c_call, h2c_connect, h2c_uri};
use super::load::{Latency, Load, message};
use super::upstream::MODE_ECHO;
use super::{Shape, Target, http1};

/// How long one scenario runs before the next takes its turn.
pub(crate) const SLICE: Duration = Duration::from_millis(2);

/// Round-trip times of every probe, in the probes' order.
pub(crate) async fn measure(
    probes: Vec<(Shape, Target)>,
    load: &Load,
) -> anyhow::Result<Vec<anyhow::Result<Latency>>> {
    let load = load.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench-latency".into())
        .spawn(move || {
            let _ = tx.send(measure_on_this_thread(&probes, &load));
        })
        .context("starting the latency thread")?;
    rx.await
        .context("the latency thread ended without figures (it panicked)")?
}

/// One scenario's connection.
enum Conn {
    /// The TCP echo: a message out, the same back.
    Tcp(TcpStream),
    /// HTTP/1.1 keep-alive; opened again when the path closes it.
    Http1 {
        target: Target,
        stream: Option<TcpStream>,
        request: Vec<u8>,
    },
    /// h2c: one stream at a time on one connection.
    H2c {
        send: Option<SendRequest<Bytes>>,
        uri: http::Uri,
        _driver: AbortOnDrop,
    },
}

/// One scenario's connection (none once it failed) and what it measured.
struct Timed {
    conn: Option<Conn>,
    samples: Vec<Duration>,
    failed: Option<anyhow::Error>,
}

fn connect_blocking(target: &Target) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect(target.addr)
        .with_context(|| format!("connecting to {}", target.addr))?;
    s.set_nodelay(true).context("TCP_NODELAY")?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))
        .context("read timeout")?;
    Ok(s)
}

fn open(shape: Shape, target: &Target, rt: &Runtime) -> anyhow::Result<Conn> {
    Ok(match shape {
        Shape::Tcp => {
            let mut s = connect_blocking(target)?;
            s.write_all(&[MODE_ECHO]).context("writing the mode byte")?;
            Conn::Tcp(s)
        }
        Shape::Http1 => Conn::Http1 {
            target: target.clone(),
            stream: Some(connect_blocking(target)?),
            request: http1::request(&target.host),
        },
        Shape::H2c => {
            let (send, driver) = rt.block_on(h2c_connect(target.addr))?;
            Conn::H2c {
                send: Some(send),
                uri: h2c_uri(target)?,
                _driver: AbortOnDrop(driver),
            }
        }
    })
}

/// Round trips on `conn` until `until`, each timed into `samples` if given.
fn ping_until(
    conn: &mut Conn,
    rt: &Runtime,
    msg: &[u8],
    buf: &mut Vec<u8>,
    until: Instant,
    mut samples: Option<&mut Vec<Duration>>,
) -> anyhow::Result<()> {
    match conn {
        Conn::Tcp(s) => loop {
            let sent = Instant::now();
            if sent >= until {
                return Ok(());
            }
            s.write_all(msg).context("writing a request")?;
            buf.resize(msg.len(), 0);
            s.read_exact(buf).context("reading a response")?;
            if buf != msg {
                bail!("the response is not the request's echo");
            }
            if let Some(v) = samples.as_deref_mut() {
                v.push(sent.elapsed());
            }
        },
        Conn::Http1 {
            target,
            stream,
            request,
        } => loop {
            let sent = Instant::now();
            if sent >= until {
                return Ok(());
            }
            let s = match stream {
                Some(s) => s,
                None => stream.insert(connect_blocking(target)?),
            };
            s.write_all(request).context("writing a request")?;
            let r = http1::read_blocking(s, buf)?;
            if let Some(v) = samples.as_deref_mut() {
                v.push(sent.elapsed());
            }
            if !r.is_success() {
                bail!("answered {}", r.status);
            }
            if r.close {
                *stream = None;
            }
        },
        Conn::H2c { send, uri, .. } => rt.block_on(async {
            loop {
                let sent = Instant::now();
                if sent >= until {
                    return Ok(());
                }
                let handle = send.take().context("the connection failed before")?;
                let (handle, status) = h2c_call(handle, uri).await?;
                if let Some(v) = samples.as_deref_mut() {
                    v.push(sent.elapsed());
                }
                *send = Some(handle);
                if !(200..300).contains(&status) {
                    bail!("answered {status}");
                }
            }
        }),
    }
}

fn measure_on_this_thread(
    probes: &[(Shape, Target)],
    load: &Load,
) -> anyhow::Result<Vec<anyhow::Result<Latency>>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("the latency thread's runtime")?;
    let msg = message(load.message);
    let mut buf = Vec::with_capacity(4096);
    let mut timed: Vec<Timed> = probes
        .iter()
        .map(|(shape, target)| {
            let (conn, failed) = match open(*shape, target, &rt) {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e)),
            };
            Timed {
                conn,
                samples: Vec::with_capacity(1 << 16),
                failed,
            }
        })
        .collect();
    // Warm-up, then the measured turns, each in slices.
    for (phase, total) in [(false, load.warmup), (true, load.duration)] {
        let turns = (total.as_nanos() / SLICE.as_nanos()).max(1);
        for _ in 0..turns {
            for t in &mut timed {
                let Some(conn) = t.conn.as_mut() else {
                    continue;
                };
                let until = Instant::now() + SLICE;
                let samples = phase.then_some(&mut t.samples);
                if let Err(e) = ping_until(conn, &rt, &msg, &mut buf, until, samples) {
                    t.failed = Some(e);
                    t.conn = None;
                }
            }
        }
    }
    // The h2c connections end with the runtime they run on.
    let out = timed.into_iter().map(Timed::summary).collect();
    drop(rt);
    Ok(out)
}

impl Timed {
    fn summary(self) -> anyhow::Result<Latency> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut samples = self.samples;
        if samples.is_empty() {
            bail!("no round trip completed");
        }
        samples.sort_unstable();
        let at = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
        Ok(Latency {
            samples: samples.len(),
            p50: at(50),
            p99: at(99),
        })
    }
}
