//! `causeway bench`: the data path measured in one run, every figure set
//! beside a direct connection to the same upstream measured in the same run.
//!
//! ```text
//! direct        load ─────────────────────────────────────────────► upstream
//! causeway-1gw  load ─► east (listener → local service) ───────────► upstream
//! causeway-2gw  load ─► east (listener → import) ═QUIC+mTLS═► west ─► upstream
//! nginx-2hop    load ─► nginx hop 1 ═TLS 1.3, client cert═► nginx hop 2 ─► upstream
//! haproxy-2hop  load ─► haproxy hop 1 ═TLS 1.3, client cert═► haproxy hop 2 ─► upstream
//! ```
//!
//! Everything is on loopback with ports from the OS, in a temp dir; the
//! upstream, the gateways and the proxies are child processes, each ended
//! by its pid when the run ends or fails. The machines this runs on are
//! small and shared, so the scenarios are measured in rounds, interleaved,
//! and the report takes medians.

mod busy;
pub(crate) mod config_stream;
mod gateways;
mod load;
mod pki;
mod process;
mod proxies;
pub(crate) mod report;
pub(crate) mod rotation;
pub(crate) mod upstream;

use std::net::SocketAddr;

use anyhow::Context;

pub(crate) use load::Load;
use load::{Bulk, Latency, Throughput};
use process::ChildGuard;
use proxies::Absent;

/// What can be measured; `direct` is the baseline of every ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Straight to the upstream.
    Direct,
    /// One gateway: a TCP listener to a local service.
    #[value(name = "causeway-1gw")]
    Causeway1Gw,
    /// Two gateways over QUIC with mTLS between trust domains.
    #[value(name = "causeway-2gw")]
    Causeway2Gw,
    /// nginx stream proxy, two hops with mTLS (if installed).
    #[value(name = "nginx-2hop")]
    Nginx2Hop,
    /// haproxy TCP proxy, two hops with mTLS (if installed).
    #[value(name = "haproxy-2hop")]
    Haproxy2Hop,
}

impl Scenario {
    pub(crate) const ALL: [Self; 5] = [
        Self::Direct,
        Self::Causeway1Gw,
        Self::Causeway2Gw,
        Self::Nginx2Hop,
        Self::Haproxy2Hop,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Causeway1Gw => "causeway-1gw",
            Self::Causeway2Gw => "causeway-2gw",
            Self::Nginx2Hop => "nginx-2hop",
            Self::Haproxy2Hop => "haproxy-2hop",
        }
    }

    /// A peer to beat rather than Causeway or the baseline.
    pub(crate) fn is_peer(self) -> bool {
        matches!(self, Self::Nginx2Hop | Self::Haproxy2Hop)
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
    /// Not installed here: not an error.
    Skipped(String),
    /// A peer proxy that is installed but failed.
    Failed(String),
}

#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) scenario: Scenario,
    pub(crate) outcome: Outcome,
}

/// A started path: where the load goes in, and the processes behind it.
#[derive(Debug)]
struct Path {
    entry: SocketAddr,
    guards: Vec<ChildGuard>,
}

/// Starts the selected scenarios' paths (the direct baseline always), then
/// measures them in `rounds` rounds: each round times the latency of every
/// path in interleaved slices, then measures requests/s and bulk of each
/// scenario in turn, so that a change in the machine's load during the run
/// hits every scenario alike. Returns one row per scenario. `progress` hears what is done.
pub(crate) async fn run(
    load: &Load,
    rounds: usize,
    selected: &[Scenario],
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Row>> {
    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    let dir = tmp.path();
    let pki = pki::Pki::create(dir).context("creating the benchmark's CAs and SVIDs")?;
    let (_upstream, upstream) = upstream::start(dir)?;
    // Every process below is ended when `paths` and `_upstream` drop, on
    // return, on error and on panic alike.
    let mut paths: Vec<(Scenario, Result<Path, Outcome>)> = Vec::new();
    for scenario in Scenario::ALL {
        if scenario != Scenario::Direct && !selected.contains(&scenario) {
            continue;
        }
        progress(&format!("{}: starting", scenario.name()));
        let started = match scenario {
            Scenario::Direct => Ok((Vec::new(), upstream)),
            Scenario::Causeway1Gw => {
                gateways::one_gateway(dir, &pki, upstream, load.gateway_threads)
                    .map_err(Absent::Failed)
            }
            Scenario::Causeway2Gw => {
                gateways::two_gateways(dir, &pki, upstream, load.gateway_threads)
                    .map_err(Absent::Failed)
            }
            Scenario::Nginx2Hop => proxies::nginx(dir, &pki, upstream),
            Scenario::Haproxy2Hop => proxies::haproxy(dir, &pki, upstream),
        };
        let path = match started {
            Ok((guards, entry)) => Ok(Path { entry, guards }),
            Err(Absent::Skip(why)) => Err(Outcome::Skipped(why)),
            Err(Absent::Failed(e)) if scenario.is_peer() => Err(Outcome::Failed(format!("{e:#}"))),
            Err(Absent::Failed(e)) => {
                return Err(e.context(format!("setting up {}", scenario.name())));
            }
        };
        paths.push((scenario, path));
    }
    let mut measured: Vec<Vec<Figures>> = paths.iter().map(|_| Vec::new()).collect();
    let mut failed: Vec<Option<String>> = paths.iter().map(|_| None).collect();
    for round in 1..=rounds {
        let live: Vec<usize> = (0..paths.len())
            .filter(|&i| paths[i].1.is_ok() && failed[i].is_none())
            .collect();
        let entries = live
            .iter()
            .filter_map(|&i| paths[i].1.as_ref().ok().map(|p| p.entry))
            .collect();
        progress(&format!(
            "round {round}/{rounds}: latency, 1 connection per path, in turns of {:?}",
            load::SLICE
        ));
        let busy = load.busy_cpus.then(busy::BusyCpus::start);
        let latencies = load::latency(entries, load).await?;
        drop(busy);
        for (&i, latency) in live.iter().zip(latencies) {
            let (scenario, Ok(path)) = &paths[i] else {
                continue;
            };
            let what = format!("round {round}/{rounds}: {}", scenario.name());
            let figures = match latency {
                Ok(latency) => measure(&what, path, latency, load, progress).await,
                Err(e) => Err(e.context(format!("{what}: latency phase"))),
            };
            match figures {
                Ok(f) => measured[i].push(f),
                Err(e) if scenario.is_peer() => failed[i] = Some(format!("{e:#}")),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(paths
        .into_iter()
        .zip(measured.into_iter().zip(failed))
        .map(|((scenario, path), (figures, failed))| Row {
            scenario,
            outcome: match (path, failed) {
                (Err(outcome), _) => outcome,
                (Ok(_), Some(why)) => Outcome::Failed(why),
                (Ok(_), None) => Outcome::Measured(figures),
            },
        })
        .collect())
}

/// The phases after latency on one path, each path on its own.
async fn measure(
    what: &str,
    path: &Path,
    latency: Latency,
    load: &Load,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Figures> {
    let pids: Vec<u32> = path.guards.iter().map(ChildGuard::pid).collect();
    progress(&format!(
        "{what}: requests/s, {} connections",
        load.connections
    ));
    let throughput = load::throughput(path.entry, load, &process::CpuProbe::new(&pids))
        .await
        .with_context(|| format!("{what}: throughput phase"))?;
    let bulk = if load.bulk_bytes > 0 {
        progress(&format!(
            "{what}: bulk, {} MiB on one stream",
            load.bulk_bytes >> 20
        ));
        Some(
            load::bulk(path.entry, load)
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
