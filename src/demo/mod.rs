//! `causeway demo`: two organizations federated on loopback, every part the
//! real product, in this process, from the files in config/demo/.
//!
//! ```text
//!  east.acme.example                          west.globex.example
//!  controller (embedded store) ◄── bundles ──► controller (embedded store)
//!      │ join, config stream                        │
//!  gateway east-1 ◄═══════ QUIC + mTLS ═══════► gateway west-1
//!   frontend ─► payments.west (http), ledger.west (tcp)   payments ─► inventory.east
//!   frontend ─► inventory (in cluster)                    payments, ledger (samples)
//!   batch ─► payments.west: 403 denied by west's policy
//!   inventory (sample)
//! ```
//!
//! The steps: controllers; bundles exchanged; sample services; each
//! gateway joining with a one-time token and each side's Service and
//! Peering files applied; a first call on every path; steady traffic on
//! every path; east's root rotated under that traffic; more traffic; the
//! summary. `--keep-running` then leaves everything up until Ctrl-C or
//! SIGTERM, and `--summary-json` writes every address and the results for
//! scripts. Ctrl-C or SIGTERM at any point stops everything cleanly (exit
//! 130 before the summary); a second one exits at once.

mod files;
mod parts;
mod serve;
mod services;
mod summary;
mod traffic;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use causeway_proto::controller::v1 as pb;
use clap::{Args, Subcommand};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::cli::{parse_duration, say};
use files::{EAST, WEST};
use parts::Parts;
use summary::{Report, Rotation};
use traffic::{Expect, Path, Traffic};

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DemoArgs {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    /// After the summary, keep everything running until Ctrl-C or SIGTERM,
    /// for `curl` and scripts.
    #[arg(long)]
    keep_running: bool,
    /// Write every address (controllers, gateways' listeners), the sample
    /// services' host names, example calls and the results to this JSON
    /// file, once the summary is printed.
    #[arg(long, value_name = "PATH")]
    summary_json: Option<PathBuf>,
    /// How long the steady traffic runs before the rotation, and again
    /// after it.
    #[arg(long, default_value = "4s", value_parser = parse_duration)]
    traffic: Duration,
}

#[derive(Debug, Clone, Subcommand)]
enum DemoCommand {
    /// Run the demo's sample services on the endpoints of Service files,
    /// to run the parts by hand (README, quickstart): an HTTP service that
    /// answers with who called, or a TCP echo, by each port's protocol.
    Serve(serve::ServeArgs),
}

/// Who calls, as the gateways' listeners declare them (config/demo/).
const FRONTEND: &str = "spiffe://east.acme.example/ns/shop/sa/frontend";
const WEST_PAYMENTS: &str = "spiffe://west.globex.example/ns/payments/sa/api";
/// How long the demo waits for the first good call of a path and for
/// every party to hold its bundles.
const SETTLE: Duration = Duration::from_secs(30);
/// Pause between two calls of one path's loop.
const INTERVAL: Duration = Duration::from_millis(20);
/// How long each wait of the rotation may take before it pauses.
const ROTATION_STEP_TIMEOUT: u64 = 30;

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if let Some(DemoCommand::Serve(a)) = args.command {
        return serve::run(a);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(main(args))
}

/// SIGINT and SIGTERM, caught from the start.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
        })
    }

    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "interrupted (SIGINT)",
            _ = self.term.recv() => "terminated (SIGTERM)",
        }
    }
}

async fn main(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut signals = Signals::new()?;
    let mut parts = Parts::new()?;
    let outcome = tokio::select! {
        r = demo(&args, &mut parts, started) => Some(r),
        s = signals.recv() => {
            say!("\n{s}: stopping");
            None
        }
    };
    let report = match outcome {
        None => {
            stop(parts, &mut signals).await;
            return Ok(ExitCode::from(130));
        }
        Some(Err(e)) => {
            say!("\nthe demo failed; stopping");
            stop(parts, &mut signals).await;
            return Err(e);
        }
        Some(Ok(report)) => report,
    };
    report.print();
    if let Some(path) = &args.summary_json {
        let json = report.json(&parts);
        if let Err(e) = write_json(path, &json) {
            stop(parts, &mut signals).await;
            return Err(e);
        }
        say!("   addresses and results: {}", path.display());
    }
    if args.keep_running {
        report.print_try(&parts);
        let s = signals.recv().await;
        say!("\n{s}: stopping");
    }
    stop(parts, &mut signals).await;
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Stops every part and removes the temp dir; a second signal meanwhile
/// exits at once.
async fn stop(mut parts: Parts, signals: &mut Signals) {
    tokio::select! {
        () = parts.shutdown() => {}
        s = signals.recv() => {
            say!("{s} again: exiting now");
            std::process::exit(130);
        }
    }
    let dir = parts.dir.path().display().to_string();
    match parts.dir.close() {
        Ok(()) => say!("stopped: gateways, controllers, sample services; {dir} removed"),
        Err(e) => say!("stopped: gateways, controllers, sample services; {dir}: {e}"),
    }
}

/// Written whole or not at all: scripts may poll for the file.
fn write_json(path: &std::path::Path, json: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(json).context("summary JSON")?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn step(started: Instant, title: &str) {
    say!("\n[{:>5.1}s] {title}", started.elapsed().as_secs_f64());
}

async fn demo(args: &DemoArgs, parts: &mut Parts, started: Instant) -> anyhow::Result<Report> {
    say!(
        "causeway demo: two organizations, east.acme.example and west.globex.example, on loopback"
    );
    say!(
        "   files from config/demo/, written to {}",
        parts.dir.path().display()
    );

    step(
        started,
        "each organization starts its federation controller (causeway controller --config)",
    );
    for side in [&EAST, &WEST] {
        parts.start_controller(side).await?;
    }
    for c in &parts.controllers {
        say!(
            "   {:<20} gateway API {}, bundle endpoint {}, embedded store in {}/",
            c.trust_domain,
            c.running.api,
            c.bundle_endpoint(),
            c.side
        );
    }

    step(
        started,
        "they exchange bundles out of band (causeway bundle export)",
    );
    for (from, to) in [(&EAST, &WEST), (&WEST, &EAST)] {
        let path = parts.export_bundle(from, to).await?;
        say!("   {}'s bundle -> {path}", from.dir);
    }

    step(started, "the sample services start");
    for side in [&EAST, &WEST] {
        let td = parts.controller(side.dir)?.trust_domain.clone();
        parts.start_samples(side, &td).await?;
    }
    for (td, s) in &parts.samples {
        say!("   {td:<20} {:<10} {:<5} {}", s.service, s.protocol, s.addr);
    }

    // A peering names the peer's gateway, and east's gateway serves
    // ledger.west on a TCP listener, which only east's peering imports: a
    // gateway starts on the first config its listeners fit. Hence west's
    // gateway, east's files, east's gateway, west's files.
    step(
        started,
        "west's gateway joins with a one-time token (causeway token create; causeway gateway --config)",
    );
    start_gateway(parts, &WEST).await?;
    step(
        started,
        "east applies its service and its peering with west (causeway apply -f)",
    );
    apply(parts, &EAST).await?;
    step(
        started,
        "east's gateway joins; its ledger listener serves ledger.west, which east now imports",
    );
    start_gateway(parts, &EAST).await?;
    step(
        started,
        "west applies its services and its peering with east (causeway apply -f)",
    );
    apply(parts, &WEST).await?;

    step(started, "a first call on every path, as curl would make it");
    let paths = paths(parts)?;
    let mut first_calls = Vec::new();
    for p in &paths {
        let outcome = first_call(p).await?;
        say!("   {:<34} {outcome}", p.label);
        first_calls.push((p.name, outcome));
    }
    let mut before = Vec::new();
    for c in &parts.controllers {
        let r = in_sync(c).await?;
        say!(
            "   bundles verify at {}: in sync, {} parties",
            c.trust_domain,
            r.parties.len()
        );
        before.push((c.trust_domain.clone(), bundle_sequence(c).await?));
    }

    step(
        started,
        &format!("steady traffic on every path for {:.0?}", args.traffic),
    );
    let traffic = Traffic::start(paths);
    run_for(&traffic, args.traffic, started).await;

    let east = parts.controller(EAST.dir)?;
    step(
        started,
        &format!(
            "{} rotates its root under that traffic (causeway rotate start --wait)",
            east.trust_domain
        ),
    );
    let rotation = rotate(east).await?;

    step(
        started,
        &format!(
            "traffic goes on for {:.0?} on the new root, then stops",
            args.traffic
        ),
    );
    run_for(&traffic, args.traffic, started).await;
    let stats = traffic.stop().await;

    let mut verify = Vec::new();
    let mut sequences = Vec::new();
    for c in &parts.controllers {
        let r = in_sync(c).await?;
        say!("\n   causeway bundles verify at {}:", c.trust_domain);
        crate::cli::bundles::print_report(&r, false);
        let was = before
            .iter()
            .find(|(td, _)| *td == c.trust_domain)
            .map_or(0, |(_, s)| *s);
        sequences.push((c.trust_domain.clone(), was, bundle_sequence(c).await?));
        verify.push((c.trust_domain.clone(), r));
    }
    Ok(Report {
        paths: stats,
        first_calls,
        sequences,
        rotation,
        verify,
        elapsed: started.elapsed(),
    })
}

/// Starts `side`'s gateway and shows its addresses.
async fn start_gateway(parts: &mut Parts, side: &files::SideFiles) -> anyhow::Result<()> {
    tokio::time::timeout(SETTLE, parts.start_gateway(side))
        .await
        .map_err(|_| {
            anyhow!(
                "{}'s gateway: no config it could start on within {SETTLE:?}",
                side.dir
            )
        })??;
    let g = parts.gateway(side.dir)?;
    let addr = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    say!("   {} {}", g.name, g.id);
    say!(
        "      peer listener (QUIC) {}, admin {}",
        addr(g.running.peer_listener),
        addr(g.running.admin)
    );
    for (name, (_, protocol, caller)) in &g.declared.listeners {
        say!(
            "      {name:<9} {:<16} {protocol}, caller {caller}",
            addr(g.running.listeners.get(name).copied())
        );
    }
    Ok(())
}

/// Applies `side`'s files and shows the plan.
async fn apply(parts: &Parts, side: &files::SideFiles) -> anyhow::Result<()> {
    let plan = parts.apply(side).await?;
    for line in plan.lines() {
        say!("   {line}");
    }
    Ok(())
}

/// The paths through the gateways, on the listeners the files declare.
fn paths(parts: &Parts) -> anyhow::Result<Vec<Path>> {
    let east = parts.gateway(EAST.dir)?;
    let west = parts.gateway(WEST.dir)?;
    let path = |name, label: &str, target, host, expect| Path {
        name,
        label: label.to_owned(),
        target,
        host,
        expect,
        interval: INTERVAL,
    };
    let mut refused = path(
        "refused",
        "refused     http  payments.west",
        east.listener("batch")?,
        "payments.west",
        Expect::Refused { reason: "denied" },
    );
    refused.interval = Duration::from_millis(200);
    Ok(vec![
        path(
            "east_to_west_http",
            "east → west http  payments.west",
            east.listener("frontend")?,
            "payments.west",
            Expect::Served {
                service: "payments",
                caller: FRONTEND,
            },
        ),
        path(
            "east_to_west_tcp",
            "east → west tcp   ledger.west",
            east.listener("ledger")?,
            "ledger.west",
            Expect::Echo { service: "ledger" },
        ),
        path(
            "west_to_east_http",
            "west → east http  inventory.east",
            west.listener("payments")?,
            "inventory.east",
            Expect::Served {
                service: "inventory",
                caller: WEST_PAYMENTS,
            },
        ),
        path(
            "in_cluster_east_http",
            "in cluster  http  inventory (east)",
            east.listener("frontend")?,
            "inventory",
            Expect::Served {
                service: "inventory",
                caller: FRONTEND,
            },
        ),
        refused,
    ])
}

/// The first good call of a path, once the configs and bundles have
/// reached the gateways.
async fn first_call(p: &Path) -> anyhow::Result<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        match p.call().await {
            Ok(seen) => return Ok(seen),
            Err(e) if Instant::now() > deadline => {
                bail!("{}: no good answer within {SETTLE:?}; last: {e}", p.label)
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `causeway bundles verify` until every party is in sync.
async fn in_sync(c: &parts::Controller) -> anyhow::Result<pb::VerifyBundlesResponse> {
    let mut admin = c.admin().await?;
    let deadline = Instant::now() + SETTLE;
    loop {
        let r = admin
            .verify_bundles(pb::VerifyBundlesRequest::default())
            .await
            .map_err(|s| anyhow!("bundles verify: {}", s.message()))?
            .into_inner();
        if r.in_sync {
            return Ok(r);
        }
        if Instant::now() > deadline {
            crate::cli::bundles::print_report(&r, false);
            bail!(
                "{}: parties still out of sync after {SETTLE:?}",
                c.trust_domain
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The trust domain's own bundle's sequence (`causeway bundle export`).
async fn bundle_sequence(c: &parts::Controller) -> anyhow::Result<u64> {
    let doc = c.export_bundle().await?;
    let v: serde_json::Value = serde_json::from_str(&doc).context("the exported bundle")?;
    v["spiffe_sequence"]
        .as_u64()
        .context("the exported bundle has no spiffe_sequence")
}

/// Lets the traffic run for `d`, printing its totals every second.
async fn run_for(traffic: &Traffic, d: Duration, started: Instant) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_secs(1))).await;
        let (calls, failed) = traffic.totals();
        say!(
            "   [{:>5.1}s] {calls} calls so far, {failed} failed",
            started.elapsed().as_secs_f64()
        );
    }
}

/// `causeway rotate start --wait` at the controller `c`.
async fn rotate(c: &parts::Controller) -> anyhow::Result<Rotation> {
    let mut admin = c.admin().await?;
    let r = admin
        .start_rotation(pb::StartRotationRequest {
            started_by: "causeway demo".into(),
            step_timeout_secs: ROTATION_STEP_TIMEOUT,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow!("rotate start: {}", s.message()))?
        .into_inner();
    if let Some(report) = &r.refused {
        crate::cli::bundles::print_report(report, false);
        bail!("the rotation was refused: a party is behind");
    }
    let cur = r.current.context("rotate start: no rotation under way")?;
    let short = |pin: &str| pin.get(..12).unwrap_or(pin).to_owned();
    say!(
        "   rotation {} started: root {} -> {}",
        cur.id,
        short(&cur.from_root),
        short(&cur.to_root)
    );
    let r = crate::cli::rotate::follow(&mut admin, false).await?;
    if let Some(cur) = &r.current {
        bail!("the rotation paused: {}", cur.paused);
    }
    let done = r
        .history
        .into_iter()
        .find(|h| h.id == cur.id)
        .context("the rotation is not in the history")?;
    let millis = (done.finished_unix_ms - done.started_unix_ms).max(0);
    say!(
        "   {} in {millis} ms: bundle sequence {} -> {}",
        done.outcome,
        done.sequence_before,
        done.sequence_after
    );
    if done.outcome != "completed" {
        bail!("the rotation ended {}", done.outcome);
    }
    Ok(Rotation {
        trust_domain: c.trust_domain.clone(),
        id: done.id,
        millis,
        sequence_before: done.sequence_before,
        sequence_after: done.sequence_after,
    })
}
