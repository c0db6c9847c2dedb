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
//! by its pid when its scenario is over or the run fails. Each scenario's
//! processes run only while it is measured.

mod gateways;
mod load;
mod pki;
mod process;
mod proxies;
pub(crate) mod report;
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

/// The figures of one scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Figures {
    pub(crate) throughput: Throughput,
    pub(crate) latency: Latency,
    pub(crate) bulk: Option<Bulk>,
}

/// How a scenario went.
#[derive(Debug)]
pub(crate) enum Outcome {
    Measured(Figures),
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

/// Runs the selected scenarios (the direct baseline always, first) and
/// returns one row each. `progress` hears what is being done.
pub(crate) async fn run(
    load: &Load,
    selected: &[Scenario],
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<Row>> {
    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    let dir = tmp.path();
    let pki = pki::Pki::create(dir).context("creating the benchmark's CAs and SVIDs")?;
    let (_upstream, upstream) = upstream::start(dir)?;
    let mut rows = Vec::new();
    for scenario in Scenario::ALL {
        if scenario != Scenario::Direct && !selected.contains(&scenario) {
            continue;
        }
        progress(&format!("{}: starting", scenario.name()));
        let path = match scenario {
            Scenario::Direct => Ok((Vec::new(), upstream)),
            Scenario::Causeway1Gw => {
                gateways::one_gateway(dir, &pki, upstream).map_err(Absent::Failed)
            }
            Scenario::Causeway2Gw => {
                gateways::two_gateways(dir, &pki, upstream).map_err(Absent::Failed)
            }
            Scenario::Nginx2Hop => proxies::nginx(dir, &pki, upstream),
            Scenario::Haproxy2Hop => proxies::haproxy(dir, &pki, upstream),
        };
        let outcome = match path {
            Ok((guards, entry)) => match measure(scenario, entry, load, &guards, progress).await {
                Ok(f) => Outcome::Measured(f),
                Err(e) if scenario.is_peer() => Outcome::Failed(format!("{e:#}")),
                Err(e) => return Err(e),
            },
            Err(Absent::Skip(why)) => Outcome::Skipped(why),
            Err(Absent::Failed(e)) if scenario.is_peer() => Outcome::Failed(format!("{e:#}")),
            Err(Absent::Failed(e)) => {
                return Err(e.context(format!("setting up {}", scenario.name())));
            }
        };
        // The scenario's processes end here, before the next one starts.
        rows.push(Row { scenario, outcome });
    }
    Ok(rows)
}

/// The three phases on one path. `_guards` keeps the path's processes up.
async fn measure(
    scenario: Scenario,
    entry: SocketAddr,
    load: &Load,
    _guards: &[ChildGuard],
    progress: &dyn Fn(&str),
) -> anyhow::Result<Figures> {
    let name = scenario.name();
    progress(&format!("{name}: latency, 1 connection"));
    let latency = load::latency(entry, load)
        .await
        .with_context(|| format!("{name}: latency phase"))?;
    progress(&format!(
        "{name}: throughput, {} connections",
        load.connections
    ));
    let throughput = load::throughput(entry, load)
        .await
        .with_context(|| format!("{name}: throughput phase"))?;
    let bulk = if load.bulk_bytes > 0 {
        progress(&format!(
            "{name}: bulk, {} bytes on one stream",
            load.bulk_bytes
        ));
        Some(
            load::bulk(entry, load)
                .await
                .with_context(|| format!("{name}: bulk phase"))?,
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
