//! The data path measured in one run, every figure set beside a direct
//! connection to the same upstream, with the same load, measured in the
//! same round.
//!
//! ```text
//! TCP (64-byte echo)
//! direct             load ───────────────────────────────────────────────► upstream
//! causeway-1gw       load ─► east (TCP listener → local service) ─────────► upstream
//! causeway-2gw       load ─► east (TCP listener → import) ═QUIC+mTLS═► west ─► upstream
//! nginx-2hop         load ─► nginx stream hop 1 ═TLS 1.3, client cert═► hop 2 ─► upstream
//! haproxy-2hop       load ─► haproxy hop 1 ═TLS 1.3, client cert═► hop 2 ─► upstream
//!
//! HTTP (GET, 64-byte body), each path loaded twice: -http (HTTP/1.1
//! keep-alive, many connections) and -h2c (few connections, many streams)
//! direct-http        load ───────────────────────────────────────────────► HTTP upstream
//! causeway-1gw-http  load ─► east (HTTP listener, Host: echo → local service) ─► upstream
//! nginx-1hop-http    load ─► nginx (proxy_pass, keep-alive pool) ──────────► upstream
//! causeway-2gw-http  load ─► east (Host: echo.west → import) ═QUIC+mTLS═► west ─► upstream
//! nginx-2hop-http    load ─► nginx hop 1 ═TLS 1.3, client cert, keep-alive═► hop 2 ─► upstream
//! ```
//!
//! Everything is on loopback with ports from the OS, in a temp dir; the
//! upstreams (this binary), the gateways (the `causeway` binary) and the
//! proxies are child processes, each ended by its pid when the run ends or
//! fails. The machines this runs on are small and shared, so the scenarios
//! are measured in rounds, interleaved, and the report takes medians.

mod busy;
mod gateways;
mod http1;
mod http_load;
pub(crate) mod http_upstream;
mod latency;
mod load;
mod nginx_http;
mod pki;
mod process;
mod proxies;
pub(crate) mod report;
pub(crate) mod upstream;

use std::net::SocketAddr;
use std::path::Path as FsPath;

use anyhow::Context;

pub(crate) use load::Load;
use load::{Bulk, Latency, Throughput};
use process::ChildGuard;
use proxies::Absent;

/// How the load talks to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Raw TCP: a 64-byte message and its echo; bulk through one stream.
    Tcp,
    /// HTTP/1.1 keep-alive: one request in flight per connection.
    Http1,
    /// HTTP/2 over cleartext, prior knowledge: few connections, many
    /// streams in flight on each, as gRPC clients do.
    H2c,
}

impl Shape {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http1 => "http1",
            Self::H2c => "h2c",
        }
    }
}

/// What can be measured: a path and the load put on it. `direct`,
/// `direct-http` and `direct-h2c` are the baselines of the others' ratios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// TCP straight to the upstream.
    Direct,
    /// One gateway: a TCP listener to a local service.
    #[value(name = "causeway-1gw")]
    Causeway1Gw,
    /// Two gateways over QUIC with mTLS between trust domains, TCP.
    #[value(name = "causeway-2gw")]
    Causeway2Gw,
    /// nginx stream proxy, two hops with mTLS (if installed).
    #[value(name = "nginx-2hop")]
    Nginx2Hop,
    /// haproxy TCP proxy, two hops with mTLS (if installed).
    #[value(name = "haproxy-2hop")]
    Haproxy2Hop,
    /// HTTP/1.1 straight to the HTTP upstream.
    #[value(name = "direct-http")]
    DirectHttp,
    /// One gateway's HTTP listener to a local service, HTTP/1.1.
    #[value(name = "causeway-1gw-http")]
    Causeway1GwHttp,
    /// nginx as one L7 reverse proxy, HTTP/1.1 (if installed).
    #[value(name = "nginx-1hop-http")]
    Nginx1HopHttp,
    /// Two gateways, HTTP/1.1 into the first.
    #[value(name = "causeway-2gw-http")]
    Causeway2GwHttp,
    /// nginx, two L7 hops with mTLS between them, HTTP/1.1 (if installed).
    #[value(name = "nginx-2hop-http")]
    Nginx2HopHttp,
    /// h2c straight to the HTTP upstream.
    #[value(name = "direct-h2c")]
    DirectH2c,
    /// One gateway, h2c.
    #[value(name = "causeway-1gw-h2c")]
    Causeway1GwH2c,
    /// nginx, one hop, h2c in (HTTP/1.1 to the upstream).
    #[value(name = "nginx-1hop-h2c")]
    Nginx1HopH2c,
    /// Two gateways, h2c into the first.
    #[value(name = "causeway-2gw-h2c")]
    Causeway2GwH2c,
    /// nginx, two hops, h2c into the first.
    #[value(name = "nginx-2hop-h2c")]
    Nginx2HopH2c,
}

impl Scenario {
    /// Every scenario, in the report's order: by load, baseline first.
    pub(crate) const ALL: [Self; 15] = [
        Self::Direct,
        Self::Causeway1Gw,
        Self::Causeway2Gw,
        Self::Nginx2Hop,
        Self::Haproxy2Hop,
        Self::DirectHttp,
        Self::Causeway1GwHttp,
        Self::Nginx1HopHttp,
        Self::Causeway2GwHttp,
        Self::Nginx2HopHttp,
        Self::DirectH2c,
        Self::Causeway1GwH2c,
        Self::Nginx1HopH2c,
        Self::Causeway2GwH2c,
        Self::Nginx2HopH2c,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Causeway1Gw => "causeway-1gw",
            Self::Causeway2Gw => "causeway-2gw",
            Self::Nginx2Hop => "nginx-2hop",
            Self::Haproxy2Hop => "haproxy-2hop",
            Self::DirectHttp => "direct-http",
            Self::Causeway1GwHttp => "causeway-1gw-http",
            Self::Nginx1HopHttp => "nginx-1hop-http",
            Self::Causeway2GwHttp => "causeway-2gw-http",
            Self::Nginx2HopHttp => "nginx-2hop-http",
            Self::DirectH2c => "direct-h2c",
            Self::Causeway1GwH2c => "causeway-1gw-h2c",
            Self::Nginx1HopH2c => "nginx-1hop-h2c",
            Self::Causeway2GwH2c => "causeway-2gw-h2c",
            Self::Nginx2HopH2c => "nginx-2hop-h2c",
        }
    }

    pub(crate) fn shape(self) -> Shape {
        match self {
            Self::Direct
            | Self::Causeway1Gw
            | Self::Causeway2Gw
            | Self::Nginx2Hop
            | Self::Haproxy2Hop => Shape::Tcp,
            Self::DirectHttp
            | Self::Causeway1GwHttp
            | Self::Nginx1HopHttp
            | Self::Causeway2GwHttp
            | Self::Nginx2HopHttp => Shape::Http1,
            Self::DirectH2c
            | Self::Causeway1GwH2c
            | Self::Nginx1HopH2c
            | Self::Causeway2GwH2c
            | Self::Nginx2HopH2c => Shape::H2c,
        }
    }

    /// The processes the scenario's load goes through.
    fn path(self) -> PathId {
        match self {
            Self::Direct => PathId::DirectTcp,
            Self::Causeway1Gw => PathId::Causeway1Gw,
            Self::Causeway2Gw => PathId::Causeway2Gw,
            Self::Nginx2Hop => PathId::Nginx2Hop,
            Self::Haproxy2Hop => PathId::Haproxy2Hop,
            Self::DirectHttp | Self::DirectH2c => PathId::DirectHttp,
            Self::Causeway1GwHttp | Self::Causeway1GwH2c => PathId::Causeway1GwHttp,
            Self::Nginx1HopHttp | Self::Nginx1HopH2c => PathId::Nginx1HopHttp,
            Self::Causeway2GwHttp | Self::Causeway2GwH2c => PathId::Causeway2GwHttp,
            Self::Nginx2HopHttp | Self::Nginx2HopH2c => PathId::Nginx2HopHttp,
        }
    }

    /// The direct scenario with the same load: the denominator of ratios.
    pub(crate) fn baseline(self) -> Self {
        match self.shape() {
            Shape::Tcp => Self::Direct,
            Shape::Http1 => Self::DirectHttp,
            Shape::H2c => Self::DirectH2c,
        }
    }

    pub(crate) fn is_baseline(self) -> bool {
        self.baseline() == self
    }

    /// The peer an HTTP scenario of Causeway is set beside, hop for hop.
    pub(crate) fn http_peer(self) -> Option<Self> {
        match self {
            Self::Causeway1GwHttp => Some(Self::Nginx1HopHttp),
            Self::Causeway2GwHttp => Some(Self::Nginx2HopHttp),
            Self::Causeway1GwH2c => Some(Self::Nginx1HopH2c),
            Self::Causeway2GwH2c => Some(Self::Nginx2HopH2c),
            _ => None,
        }
    }

    /// Whether the scenario runs `causeway gateway` processes.
    pub(crate) fn needs_causeway(self) -> bool {
        matches!(
            self.path(),
            PathId::Causeway1Gw
                | PathId::Causeway2Gw
                | PathId::Causeway1GwHttp
                | PathId::Causeway2GwHttp
        )
    }
}

/// A set of processes a load goes through; several scenarios (one per
/// load shape) may share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathId {
    DirectTcp,
    DirectHttp,
    Causeway1Gw,
    Causeway2Gw,
    Nginx2Hop,
    Haproxy2Hop,
    Causeway1GwHttp,
    Causeway2GwHttp,
    Nginx1HopHttp,
    Nginx2HopHttp,
}

/// Where a load connects, and for HTTP the name it gives in `Host` or
/// `:authority` (the service, for a gateway).
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) host: String,
}

impl Target {
    fn new(addr: SocketAddr, host: &str) -> Self {
        Self {
            addr,
            host: host.to_owned(),
        }
    }
}

/// The figures of one scenario in one round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) throughput: Throughput,
    pub(crate) latency: Latency,
    pub(crate) bulk: Option<Bulk>,
}

/// How a scenario went.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// One entry per round.
    Measured(Vec<Figures>),
    /// Not installed here, or a load the path cannot take: not an error.
    Skipped(String),
    /// It failed: an error, or an answer that was not a 2xx.
    Failed(String),
}

#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) scenario: Scenario,
    pub(crate) outcome: Outcome,
}

/// A started path: the processes behind it and where each load goes in
/// (or why a load cannot).
#[derive(Debug)]
struct Path {
    guards: Vec<ChildGuard>,
    entries: Vec<(Shape, Result<Target, String>)>,
}

impl Path {
    fn new(guards: Vec<ChildGuard>, entries: Vec<(Shape, Result<Target, String>)>) -> Self {
        Self { guards, entries }
    }

    fn entry(&self, shape: Shape) -> Result<Target, String> {
        self.entries.iter().find(|(s, _)| *s == shape).map_or_else(
            || Err(format!("no {} entry", shape.name())),
            |(_, e)| e.clone(),
        )
    }
}

/// The upstreams, started once for every path.
struct Upstreams {
    tcp: Option<SocketAddr>,
    http: Option<SocketAddr>,
    _guards: Vec<ChildGuard>,
}

impl Upstreams {
    fn tcp(&self) -> anyhow::Result<SocketAddr> {
        self.tcp.context("the TCP upstream was not started")
    }

    fn http(&self) -> anyhow::Result<SocketAddr> {
        self.http.context("the HTTP upstream was not started")
    }
}

/// The scenarios a selection measures: those named and their baselines,
/// in the report's order.
fn with_baselines(selected: &[Scenario]) -> Vec<Scenario> {
    Scenario::ALL
        .into_iter()
        .filter(|s| selected.iter().any(|x| x == s || x.baseline() == *s))
        .collect()
}

/// Starts the paths of the selected scenarios (with their baselines), then
/// measures them in `rounds` rounds: each round times the latency of every
/// scenario in interleaved slices, then measures requests/s (and for TCP
/// bulk) of each scenario in turn, so that a change in the machine's load
/// during the run hits every scenario alike. `causeway` is the binary the
/// gateways run (needed when a Causeway scenario is selected). Returns one
/// row per scenario; `progress` hears what is done.
pub(crate) async fn run(
    load: &Load,
    rounds: usize,
    selected: &[Scenario],
    causeway: Option<&FsPath>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Row>> {
    let scenarios = with_baselines(selected);
    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    let dir = tmp.path();
    let pki = pki::Pki::create(dir).context("creating the benchmark's CAs and SVIDs")?;
    let upstreams = start_upstreams(dir, &scenarios)?;
    // Every process below is ended when `paths` and `upstreams` drop, on
    // return, on error and on panic alike.
    let mut paths: Vec<(PathId, Result<Path, Outcome>)> = Vec::new();
    for s in &scenarios {
        let id = s.path();
        if paths.iter().any(|(p, _)| *p == id) {
            continue;
        }
        progress(&format!("{}: starting", path_name(id)));
        let started = start_path(id, dir, &pki, &upstreams, load, causeway).map_err(|e| match e {
            Absent::Skip(why) => Outcome::Skipped(why),
            Absent::Failed(e) => Outcome::Failed(format!("setting up: {e:#}")),
        });
        paths.push((id, started));
    }
    // Each scenario's path and entry, or why it is not measured.
    let mut state: Vec<Result<(usize, Target), Outcome>> = Vec::new();
    for s in &scenarios {
        let Some(i) = paths.iter().position(|(p, _)| *p == s.path()) else {
            state.push(Err(Outcome::Failed("its path was not started".into())));
            continue;
        };
        state.push(match &paths[i].1 {
            Ok(path) => path
                .entry(s.shape())
                .map(|t| (i, t))
                .map_err(Outcome::Skipped),
            Err(Outcome::Skipped(why)) => Err(Outcome::Skipped(why.clone())),
            Err(Outcome::Failed(why)) => Err(Outcome::Failed(why.clone())),
            Err(Outcome::Measured(_)) => Err(Outcome::Failed("not started".into())),
        });
    }
    for (s, st) in scenarios.iter().zip(&state) {
        if let (true, Err(Outcome::Failed(why) | Outcome::Skipped(why))) = (s.is_baseline(), st) {
            anyhow::bail!("{}, the baseline, cannot run: {why}", s.name());
        }
    }
    let mut measured: Vec<Vec<Figures>> = scenarios.iter().map(|_| Vec::new()).collect();
    let mut failed: Vec<Option<String>> = scenarios.iter().map(|_| None).collect();
    for round in 1..=rounds {
        let live: Vec<usize> = (0..scenarios.len())
            .filter(|&i| state[i].is_ok() && failed[i].is_none())
            .collect();
        let probes = live
            .iter()
            .filter_map(|&i| {
                let (_, target) = state[i].as_ref().ok()?;
                Some((scenarios[i].shape(), target.clone()))
            })
            .collect();
        progress(&format!(
            "round {round}/{rounds}: latency, 1 connection per scenario, in turns of {:?}",
            latency::SLICE
        ));
        let busy = load.busy_cpus.then(busy::BusyCpus::start);
        let latencies = latency::measure(probes, load).await?;
        drop(busy);
        for (&i, latency) in live.iter().zip(latencies) {
            let scenario = scenarios[i];
            let Ok((p, target)) = &state[i] else {
                continue;
            };
            let Ok(path) = &paths[*p].1 else {
                continue;
            };
            let what = format!("round {round}/{rounds}: {}", scenario.name());
            let figures = match latency {
                Ok(latency) => {
                    measure(
                        &what,
                        scenario.shape(),
                        path,
                        target,
                        latency,
                        load,
                        progress,
                    )
                    .await
                }
                Err(e) => Err(e.context(format!("{what}: latency phase"))),
            };
            match figures {
                Ok(f) => measured[i].push(f),
                Err(e) if scenario.is_baseline() => return Err(e),
                Err(e) => {
                    progress(&format!("{}: FAILED: {e:#}", scenario.name()));
                    failed[i] = Some(format!("{e:#}"));
                }
            }
        }
    }
    Ok(scenarios
        .into_iter()
        .zip(state)
        .zip(measured.into_iter().zip(failed))
        .map(|((scenario, state), (figures, failed))| Row {
            scenario,
            outcome: match (state, failed) {
                (Err(outcome), _) => outcome,
                (Ok(_), Some(why)) => Outcome::Failed(why),
                (Ok(_), None) => Outcome::Measured(figures),
            },
        })
        .collect())
}

fn path_name(id: PathId) -> &'static str {
    match id {
        PathId::DirectTcp => "direct",
        PathId::DirectHttp => "direct-http",
        PathId::Causeway1Gw => "causeway-1gw",
        PathId::Causeway2Gw => "causeway-2gw",
        PathId::Nginx2Hop => "nginx-2hop",
        PathId::Haproxy2Hop => "haproxy-2hop",
        PathId::Causeway1GwHttp => "causeway-1gw-http (and -h2c)",
        PathId::Causeway2GwHttp => "causeway-2gw-http (and -h2c)",
        PathId::Nginx1HopHttp => "nginx-1hop-http (and -h2c)",
        PathId::Nginx2HopHttp => "nginx-2hop-http (and -h2c)",
    }
}

/// The upstreams the scenarios need, each its own process.
fn start_upstreams(dir: &FsPath, scenarios: &[Scenario]) -> anyhow::Result<Upstreams> {
    let mut guards = Vec::new();
    let mut tcp = None;
    let mut http = None;
    if scenarios.iter().any(|s| s.shape() == Shape::Tcp) {
        let (guard, addr) = upstream::start(dir)?;
        guards.push(guard);
        tcp = Some(addr);
    }
    if scenarios.iter().any(|s| s.shape() != Shape::Tcp) {
        let (guard, addr) = http_upstream::start(dir)?;
        guards.push(guard);
        http = Some(addr);
    }
    Ok(Upstreams {
        tcp,
        http,
        _guards: guards,
    })
}

/// The host name HTTP callers give a path: the service, for a gateway.
const LOCAL_SERVICE: &str = "echo";
const IMPORTED_SERVICE: &str = "echo.west";

fn start_path(
    id: PathId,
    dir: &FsPath,
    pki: &pki::Pki,
    up: &Upstreams,
    load: &Load,
    causeway: Option<&FsPath>,
) -> Result<Path, Absent> {
    let gateways = || {
        causeway.map(|bin| gateways::Gateways {
            bin,
            dir,
            pki,
            threads: load.gateway_threads,
        })
    };
    let no_binary = || Absent::Failed(anyhow::anyhow!("no causeway binary was located"));
    let tcp = |guards, addr| Path::new(guards, vec![(Shape::Tcp, Ok(Target::new(addr, "")))]);
    let http = |guards, addr, host: &str| {
        let t = Target::new(addr, host);
        Path::new(
            guards,
            vec![(Shape::Http1, Ok(t.clone())), (Shape::H2c, Ok(t))],
        )
    };
    Ok(match id {
        PathId::DirectTcp => tcp(Vec::new(), up.tcp()?),
        PathId::DirectHttp => http(Vec::new(), up.http()?, LOCAL_SERVICE),
        PathId::Causeway1Gw => {
            let (g, a) = gateways()
                .ok_or_else(no_binary)?
                .one(gateways::Kind::Tcp, up.tcp()?)?;
            tcp(g, a)
        }
        PathId::Causeway2Gw => {
            let (g, a) = gateways()
                .ok_or_else(no_binary)?
                .two(gateways::Kind::Tcp, up.tcp()?)?;
            tcp(g, a)
        }
        PathId::Causeway1GwHttp => {
            let (g, a) = gateways()
                .ok_or_else(no_binary)?
                .one(gateways::Kind::Http, up.http()?)?;
            http(g, a, LOCAL_SERVICE)
        }
        PathId::Causeway2GwHttp => {
            let (g, a) = gateways()
                .ok_or_else(no_binary)?
                .two(gateways::Kind::Http, up.http()?)?;
            http(g, a, IMPORTED_SERVICE)
        }
        PathId::Nginx2Hop => {
            let (g, a) = proxies::nginx(dir, pki, up.tcp()?)?;
            tcp(g, a)
        }
        PathId::Haproxy2Hop => {
            let (g, a) = proxies::haproxy(dir, pki, up.tcp()?)?;
            tcp(g, a)
        }
        PathId::Nginx1HopHttp => {
            let n = nginx_http::one_hop(dir, up.http()?)?;
            nginx_path(n)
        }
        PathId::Nginx2HopHttp => {
            let n = nginx_http::two_hops(dir, pki, up.http()?)?;
            nginx_path(n)
        }
    })
}

fn nginx_path(n: nginx_http::Started) -> Path {
    let host = LOCAL_SERVICE;
    Path::new(
        n.guards,
        vec![
            (Shape::Http1, Ok(Target::new(n.http, host))),
            (Shape::H2c, n.h2c.map(|a| Target::new(a, host))),
        ],
    )
}

/// The phases after latency on one scenario, each scenario on its own.
async fn measure(
    what: &str,
    shape: Shape,
    path: &Path,
    target: &Target,
    latency: Latency,
    load: &Load,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Figures> {
    let pids: Vec<u32> = path.guards.iter().map(ChildGuard::pid).collect();
    let cpu = process::CpuProbe::new(&pids);
    let throughput = match shape {
        Shape::Tcp => {
            progress(&format!(
                "{what}: requests/s, {} connections",
                load.connections
            ));
            load::throughput(target.addr, load, &cpu).await
        }
        Shape::Http1 => {
            progress(&format!(
                "{what}: requests/s, HTTP/1.1, {} connections",
                load.connections
            ));
            http_load::http1(target, load, &cpu).await
        }
        Shape::H2c => {
            progress(&format!(
                "{what}: requests/s, h2c, {} connections x {} streams",
                load.h2c_connections, load.h2c_streams
            ));
            http_load::h2c(target, load, &cpu).await
        }
    }
    .with_context(|| format!("{what}: requests/s phase"))?;
    let bulk = if shape == Shape::Tcp && load.bulk_bytes > 0 {
        progress(&format!(
            "{what}: bulk, {} MiB on one stream",
            load.bulk_bytes >> 20
        ));
        Some(
            load::bulk(target.addr, load)
                .await
                .with_context(|| format!("{what}: bulk phase"))?,
        )
    } else {
        None
    };
    Ok(Figures {
        throughput,
        latency,
        bulk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_brings_the_baseline_of_its_load() {
        assert_eq!(
            with_baselines(&[Scenario::Causeway2GwH2c, Scenario::Causeway1Gw]),
            [
                Scenario::Direct,
                Scenario::Causeway1Gw,
                Scenario::DirectH2c,
                Scenario::Causeway2GwH2c
            ]
        );
        assert_eq!(with_baselines(&Scenario::ALL), Scenario::ALL);
    }

    #[test]
    fn every_causeway_http_scenario_has_a_peer_with_the_same_load() {
        for s in Scenario::ALL {
            if let Some(peer) = s.http_peer() {
                assert!(s.needs_causeway() && !peer.needs_causeway(), "{s:?}");
                assert_eq!(s.shape(), peer.shape(), "{s:?}");
            }
        }
    }
}
