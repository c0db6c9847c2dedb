//! Per-call cost of the candidate framings for one HTTP call per QUIC
//! stream between two gateways, over real quinn on loopback.
//!
//! One process, three threads: a "server gateway" thread and a "client
//! gateway" thread, each one tokio current-thread runtime (as a gateway
//! runs one event loop), and the coordinator (this `main`), which mostly
//! sleeps and reads the other two threads' CPU clocks from /proc. A quinn
//! server endpoint and a client endpoint on 127.0.0.1 (ports from the OS),
//! TLS 1.3 with a self-signed certificate, rustls with ring. Each variant
//! has its own QUIC connection, set up before the first round (HTTP/3 owns
//! every stream of the connection it runs on; the ALPN tells the server
//! which variant a connection is).
//!
//! Every call is `GET /api/v1/items/42?verbose=1` with 8 headers (a
//! traceparent, the caller's SPIFFE ID, a request id unique per call among
//! them) answered by a 200 with 5 headers and a 64-byte body; the client
//! checks status, echoed request id and body length of every call. The
//! variants:
//!
//! - `h2-per-stream` (today's design): per call `open_bi`, today's stream
//!   header (prefix + protobuf), then a whole HTTP/2 connection on the
//!   stream (hyper client handshake + connection task; hyper server
//!   `serve_connection` with `max_concurrent_streams(1)`).
//! - `h3`: h3 + h3-quinn, one HTTP/3 connection, one request stream a call.
//! - `native`: per call `open_bi`, one buffer (5-byte prefix + protobuf
//!   head) and a FIN; the response is a RESPONSE frame and a DATA frame in
//!   one write and a FIN. See `wire.rs` for the format.
//! - `native-hyper`: the `native` framing with `http::Request`/`Response`
//!   and an `http_body::Body` over the frames on both ends.
//!
//! Each round measures every variant in turn (the order rotates by one
//! each round): a load phase, N callers (`--callers`, default 32) in closed
//! loops for `--duration` after `--warmup`, giving calls/s and the CPU time
//! per call of the client thread, the server thread and their sum (plus
//! the UDP datagrams and bytes per call, from the client connection's
//! stats); then a latency phase, one caller, every call timed, giving p50
//! and p99 and the CPU time per call with nothing to batch with. Figures are medians over rounds; each ratio to
//! `h2-per-stream` is taken within a round and the median of those shown.
//!
//! Run:
//!
//! ```sh
//! cargo run --release -p causeway-bench-framing -- --rounds 5 --duration 2s
//! cargo run --release -p causeway-bench-framing -- --json > framing.json
//! cargo run --release -p causeway-bench-framing -- --variants native,h3 --callers 64
//! ```
//!
//! With `--json` the JSON report goes to stdout and the table to stderr.

mod call;
mod cpu;
mod quic;
mod report;
mod variants;
mod wire;

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use rustls_pki_types::CertificateDer;
use tokio::sync::{mpsc, oneshot};

use crate::cpu::ThreadClock;
use crate::quic::Identity;
use crate::report::{Sample, WireStats};
use crate::variants::{Client, ServerStats, Variant};

/// Per-call cost of candidate framings of one HTTP call per QUIC stream.
#[derive(Debug, Parser)]
#[command(name = "causeway-bench-framing")]
struct Args {
    /// Length of each load phase and (unless --latency-duration) each
    /// latency phase.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Calls made and not counted before each phase.
    #[arg(long, default_value = "300ms", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Length of each one-caller latency phase.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency_duration: Option<Duration>,
    /// Rounds; every variant is measured once per round.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Concurrent callers of the load phase.
    #[arg(long, default_value_t = 32)]
    callers: usize,
    /// Variants to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "h2-per-stream,h3,native,native-hyper"
    )]
    variants: Vec<Variant>,
    /// JSON report on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "causeway-bench-framing: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What the coordinator asks of the client gateway's runtime.
enum Command {
    /// `callers` closed loops until `stop`, counting calls into `calls`.
    Load {
        variant: Variant,
        callers: usize,
        stop: Arc<AtomicBool>,
        calls: Arc<AtomicU64>,
        done: oneshot::Sender<anyhow::Result<()>>,
    },
    /// One caller: `warmup` of calls, then every call timed (ns) for
    /// `duration`, and the CPU time both sides spent on them.
    Latency {
        variant: Variant,
        warmup: Duration,
        duration: Duration,
        done: oneshot::Sender<anyhow::Result<Timed>>,
    },
}

fn run() -> anyhow::Result<()> {
    let mut args = Args::parse();
    let mut seen = Vec::new();
    args.variants.retain(|v| {
        let new = !seen.contains(v);
        seen.push(*v);
        new
    });
    if args.variants.is_empty() || args.rounds == 0 || args.callers == 0 {
        bail!("need at least one variant, one round and one caller");
    }
    let started = std::time::SystemTime::now();
    let load_start = loadavg();
    // Both sides' rustls configs use the process default provider: ring.
    // Err only if one was installed already, which is then the same.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let identity = Identity::self_signed()?;
    let cert = identity.cert.clone();

    let stats = Arc::new(ServerStats::default());
    let (server_ready, ready) = std::sync::mpsc::channel();
    let (server_stop, stop_rx) = oneshot::channel();
    let server = {
        let stats = stats.clone();
        thread::Builder::new()
            .name("server-gw".into())
            .spawn(move || server_thread(identity, stats, server_ready, stop_rx))
            .context("spawning the server thread")?
    };
    let (addr, server_clock) = ready
        .recv()
        .context("the server thread ended before it was ready")??;

    let (commands, command_rx) = mpsc::unbounded_channel();
    let (client_ready, ready) = std::sync::mpsc::channel();
    let client = {
        let variants = args.variants.clone();
        thread::Builder::new()
            .name("client-gw".into())
            .spawn(move || {
                client_thread(addr, cert, variants, server_clock, command_rx, client_ready)
            })
            .context("spawning the client thread")?
    };
    let (clocks, conns) = ready
        .recv()
        .context("the client thread ended before it was ready")??;
    let result = measure(&args, &commands, &clocks, &conns, &stats);

    // The client closes its connections once the command channel closes.
    drop(commands);
    let _ = client.join();
    let _ = server_stop.send(());
    let _ = server.join();

    let rounds = result?;
    let run = report::Run {
        started_unix_s: started
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        callers: args.callers,
        rounds: args.rounds,
        duration_s: args.duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        latency_duration_s: args.latency_duration.unwrap_or(args.duration).as_secs_f64(),
        cpu_clock: cpu::source(),
        loadavg_start: load_start,
        loadavg_end: loadavg(),
        variants: args.variants.iter().map(|v| v.name()).collect(),
        h2_stream_header_bytes: variants::h2_per_stream::header_bytes(),
        native_request_bytes: variants::native::request_bytes(),
    };
    let out = report::build(&run, &args.variants, &rounds);
    let table = report::table(&run, &out);
    if args.json {
        let _ = writeln!(std::io::stderr(), "{table}");
        let json = serde_json::to_string_pretty(&out).context("JSON report")?;
        writeln!(std::io::stdout(), "{json}").context("stdout")?;
    } else {
        writeln!(std::io::stdout(), "{table}").context("stdout")?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Clocks {
    client: ThreadClock,
    server: ThreadClock,
}

/// A latency phase: each call's time (ns) and both sides' CPU time over
/// all of them.
#[derive(Debug)]
struct Timed {
    times: Vec<u64>,
    cpu_client: Duration,
    cpu_server: Duration,
}

/// One instant of a load phase.
struct Snapshot {
    at: Instant,
    calls: u64,
    client: Duration,
    server: Duration,
    process: Duration,
    wire: quinn::ConnectionStats,
}

impl Snapshot {
    fn take(calls: &AtomicU64, clocks: &Clocks, conn: &quinn::Connection) -> anyhow::Result<Self> {
        Ok(Self {
            at: Instant::now(),
            calls: calls.load(Ordering::Relaxed),
            client: clocks.client.read()?,
            server: clocks.server.read()?,
            process: cpu::process()?,
            wire: conn.stats(),
        })
    }
}

/// Every round, every variant: `rounds[r][i]` is `args.variants[i]` in
/// round `r`.
fn measure(
    args: &Args,
    commands: &mpsc::UnboundedSender<Command>,
    clocks: &Clocks,
    conns: &[quinn::Connection],
    stats: &ServerStats,
) -> anyhow::Result<Vec<Vec<Sample>>> {
    let n = args.variants.len();
    let mut rounds = Vec::with_capacity(args.rounds);
    for round in 0..args.rounds {
        let mut samples: Vec<Option<Sample>> = vec![None; n];
        for k in 0..n {
            let i = (k + round) % n;
            let variant = args.variants[i];
            let sample = measure_one(args, commands, clocks, &conns[i], variant)?;
            let (errors, first) = stats.errors();
            if errors > 0 {
                bail!(
                    "{} server-side errors, the first: {}",
                    errors,
                    first.unwrap_or_default()
                );
            }
            let _ = writeln!(
                std::io::stderr(),
                "round {}/{} {:<14} {}",
                round + 1,
                args.rounds,
                variant.name(),
                report::one_line(&sample)
            );
            samples[i] = Some(sample);
        }
        rounds.push(samples.into_iter().flatten().collect());
    }
    Ok(rounds)
}

fn measure_one(
    args: &Args,
    commands: &mpsc::UnboundedSender<Command>,
    clocks: &Clocks,
    conn: &quinn::Connection,
    variant: Variant,
) -> anyhow::Result<Sample> {
    let gone = || anyhow!("the client thread is gone");

    // Load phase.
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let (done, done_rx) = oneshot::channel();
    commands
        .send(Command::Load {
            variant,
            callers: args.callers,
            stop: stop.clone(),
            calls: calls.clone(),
            done,
        })
        .map_err(|_| gone())?;
    let snapshots = (|| {
        thread::sleep(args.warmup);
        let a = Snapshot::take(&calls, clocks, conn)?;
        thread::sleep(args.duration);
        anyhow::Ok((a, Snapshot::take(&calls, clocks, conn)?))
    })();
    // Stopped whatever happened above, or the client would never be done.
    stop.store(true, Ordering::Relaxed);
    done_rx
        .blocking_recv()
        .map_err(|_| gone())?
        .with_context(|| format!("{} load phase", variant.name()))?;
    let (a, b) = snapshots?;

    let n = b.calls.saturating_sub(a.calls);
    if n == 0 {
        bail!("{}: no call completed in the load phase", variant.name());
    }
    let per_call = |x: Duration, y: Duration| x.saturating_sub(y).as_secs_f64() * 1e6 / n as f64;
    let client_us = per_call(b.client, a.client);
    let server_us = per_call(b.server, a.server);
    let wire = WireStats::between(&a.wire, &b.wire, n);

    // Latency phase.
    let wire0 = conn.stats();
    let (done, done_rx) = oneshot::channel();
    commands
        .send(Command::Latency {
            variant,
            warmup: args.warmup,
            duration: args.latency_duration.unwrap_or(args.duration),
            done,
        })
        .map_err(|_| gone())?;
    let Timed {
        mut times,
        cpu_client,
        cpu_server,
    } = done_rx
        .blocking_recv()
        .map_err(|_| gone())?
        .with_context(|| format!("{} latency phase", variant.name()))?;
    times.sort_unstable();
    let one = times.len().max(1) as f64;
    let wire1 = conn.stats();

    Ok(Sample {
        calls: n,
        calls_per_s: n as f64 / b.at.duration_since(a.at).as_secs_f64(),
        cpu_client_us: client_us,
        cpu_server_us: server_us,
        cpu_sum_us: client_us + server_us,
        cpu_other_us: per_call(b.process, a.process) - client_us - server_us,
        busy_client: busy(b.client, a.client, b.at.duration_since(a.at)),
        busy_server: busy(b.server, a.server, b.at.duration_since(a.at)),
        p50_us: report::percentile_us(&times, 50.0),
        p99_us: report::percentile_us(&times, 99.0),
        p90_us: report::percentile_us(&times, 90.0),
        p999_us: report::percentile_us(&times, 99.9),
        mean_us: times.iter().sum::<u64>() as f64 / one / 1e3,
        latency_calls: times.len() as u64,
        cpu_one_caller_client_us: cpu_client.as_secs_f64() * 1e6 / one,
        cpu_one_caller_server_us: cpu_server.as_secs_f64() * 1e6 / one,
        lost_packets_load: b.wire.path.lost_packets - a.wire.path.lost_packets,
        lost_packets_one_caller: wire1.path.lost_packets - wire0.path.lost_packets,
        wire,
    })
}

/// The share of `wall` a thread spent on a CPU.
fn busy(end: Duration, start: Duration, wall: Duration) -> f64 {
    end.saturating_sub(start).as_secs_f64() / wall.as_secs_f64()
}

/// /proc/loadavg's first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn current_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

type Ready<T> = std::sync::mpsc::Sender<anyhow::Result<T>>;

/// The server gateway: one current-thread runtime, the server endpoint,
/// every accepted connection served by its variant until `stop`.
fn server_thread(
    identity: Identity,
    stats: Arc<ServerStats>,
    ready: Ready<(SocketAddr, ThreadClock)>,
    stop: oneshot::Receiver<()>,
) {
    let rt = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let alpns: Vec<&[u8]> = Variant::ALL.iter().map(|v| v.alpn()).collect();
        let setup = quic::server(&identity, &alpns).and_then(|ep| {
            let addr = ep.local_addr().context("server address")?;
            Ok((ep, addr, ThreadClock::current()?))
        });
        let endpoint = match setup {
            Ok((ep, addr, clock)) => {
                let _ = ready.send(Ok((addr, clock)));
                ep
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut stop = stop;
        loop {
            tokio::select! {
                incoming = endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        match incoming.await {
                            Ok(conn) => variants::serve(conn, stats).await,
                            Err(e) => stats.note(&anyhow::Error::from(e).context("server handshake")),
                        }
                    });
                }
                _ = &mut stop => break,
            }
        }
        endpoint.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
    });
}

/// The client gateway: one current-thread runtime, the client endpoint,
/// one connection per variant, then the coordinator's commands until the
/// channel closes.
fn client_thread(
    server: SocketAddr,
    cert: CertificateDer<'static>,
    variants: Vec<Variant>,
    server_clock: ThreadClock,
    mut commands: mpsc::UnboundedReceiver<Command>,
    ready: Ready<(Clocks, Vec<quinn::Connection>)>,
) {
    let rt = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let setup = async {
            let endpoint = quic::client()?;
            let mut clients = Vec::with_capacity(variants.len());
            let mut conns = Vec::with_capacity(variants.len());
            for &v in &variants {
                let (client, conn) = Client::connect(&endpoint, server, &cert, v).await?;
                // One call each, so that setup is not inside a measurement.
                let mut first = client.clone();
                first
                    .call(0, 0)
                    .await
                    .with_context(|| format!("first {} call", v.name()))?;
                clients.push(client);
                conns.push(conn);
            }
            let clocks = Clocks {
                client: ThreadClock::current()?,
                server: server_clock,
            };
            anyhow::Ok((endpoint, clients, conns, clocks))
        };
        let (endpoint, clients, conns, clocks) = match setup.await {
            Ok((endpoint, clients, conns, clocks)) => {
                let _ = ready.send(Ok((clocks.clone(), conns.clone())));
                (endpoint, clients, conns, clocks)
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let client_of = |v: Variant| {
            variants
                .iter()
                .position(|&x| x == v)
                .and_then(|i| clients.get(i))
                .cloned()
                .ok_or_else(|| anyhow!("{} is not connected", v.name()))
        };
        while let Some(command) = commands.recv().await {
            match command {
                Command::Load {
                    variant,
                    callers,
                    stop,
                    calls,
                    done,
                } => {
                    let result = match client_of(variant) {
                        Ok(client) => load(client, callers, stop, calls).await,
                        Err(e) => Err(e),
                    };
                    let _ = done.send(result);
                }
                Command::Latency {
                    variant,
                    warmup,
                    duration,
                    done,
                } => {
                    let result = match client_of(variant) {
                        Ok(client) => latency(client, &clocks, warmup, duration).await,
                        Err(e) => Err(e),
                    };
                    let _ = done.send(result);
                }
            }
        }
        drop(clients);
        for conn in conns {
            conn.close(0u32.into(), b"done");
        }
        endpoint.wait_idle().await;
    });
}

/// `callers` closed loops until `stop`; the first error stops them all.
async fn load(
    client: Client,
    callers: usize,
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for caller in 0..callers {
        let mut client = client.clone();
        let stop = stop.clone();
        let calls = calls.clone();
        tasks.spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                if let Err(e) = client.call(caller + 1, seq).await {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e.context(format!("caller {caller}, call {seq}")));
                }
                calls.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
    }
    let mut first = Ok(());
    while let Some(joined) = tasks.join_next().await {
        let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if first.is_ok() {
            first = result;
        }
    }
    first
}

/// One caller: calls for `warmup`, then every call timed for `duration`.
async fn latency(
    mut client: Client,
    clocks: &Clocks,
    warmup: Duration,
    duration: Duration,
) -> anyhow::Result<Timed> {
    let mut seq = 0u64;
    let warm_until = Instant::now() + warmup;
    while Instant::now() < warm_until {
        seq += 1;
        client.call(0, seq).await?;
    }
    let mut times = Vec::with_capacity(16 * 1024);
    let (client0, server0) = (clocks.client.read()?, clocks.server.read()?);
    let until = Instant::now() + duration;
    loop {
        seq += 1;
        let t = Instant::now();
        client.call(0, seq).await?;
        let end = Instant::now();
        times.push(u64::try_from(end.duration_since(t).as_nanos()).unwrap_or(u64::MAX));
        if end >= until {
            return Ok(Timed {
                times,
                cpu_client: clocks.client.read()?.saturating_sub(client0),
                cpu_server: clocks.server.read()?.saturating_sub(server0),
            });
        }
    }
}
