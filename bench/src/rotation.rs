//! `causeway-bench rotation`: how long a root rotation of one trust domain
//! takes when nothing is behind, from `rotate start` until the rotation is
//! in the history as completed.
//!
//! ```text
//!  bench ──StartRotation──► east's controller (in process, embedded store)
//!                            leader: publish old+new ─► announce to each peer
//!      3 peer controllers ◄──┘  (in process; each records it, compiles, streams
//!                               it to its gateway, which reports holding it)
//!     20 east gateways    ◄── snapshot with both roots; then svid_root = new:
//!                             each renews at once and reports its SVID's root
//!                            leader: verify every party at each wait, swap the
//!                            issuing root, publish new-only, verify again
//!  bench ◄── status polled every 20 ms until the record is in the history
//! ```
//!
//! Every controller and gateway is real (the control clients and data
//! planes of `causeway gateway`, TLS and gRPC on loopback) and runs in this
//! process; files live in a temp dir, ports come from the OS.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_controller::{CaSource, ControllerConfig, Running, StoreConfig};
use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::admin_api_client::AdminApiClient;
use causeway_trust::TrustDomain;
use tonic::transport::Channel;

use super::config_stream::gateways::{self, Gateway};

/// The rotating trust domain.
pub(crate) const ROTATING_TD: &str = "east.rotation.example";

#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) peers: usize,
    pub(crate) gateways: usize,
    pub(crate) rounds: usize,
    pub(crate) timeout: Duration,
}

/// One rotation.
#[derive(Debug, Clone)]
pub(crate) struct Round {
    /// From the start call until the bench saw it finished.
    pub(crate) wall: Duration,
    /// As the rotation's record has it (started → finished).
    pub(crate) recorded_ms: i64,
    /// Each step and how long it took, as recorded.
    pub(crate) steps: Vec<(String, i64)>,
    pub(crate) sequence_before: u64,
    pub(crate) sequence_after: u64,
    /// Parties every wait checked.
    pub(crate) parties: usize,
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) params: Params,
    pub(crate) rounds: Vec<Round>,
}

fn peer_td(i: usize) -> String {
    format!("peer-{i}.rotation.example")
}

fn config(dir: &Path, td: &str) -> anyhow::Result<ControllerConfig> {
    let data_dir = dir.join(td);
    Ok(ControllerConfig {
        trust_domain: TrustDomain::new(td)?,
        admin_socket: data_dir.join("admin.sock"),
        data_dir,
        store: StoreConfig::Embedded,
        api_listen: "127.0.0.1:0".parse()?,
        metrics_listen: None,
        federation_listen: Some("127.0.0.1:0".parse()?),
        svid_ttl: Duration::from_secs(3600),
        join_token_ttl: Duration::from_secs(600),
        ca: CaSource::Store {
            root_ttl: Duration::from_secs(365 * 86400),
        },
    })
}

/// Runs the whole benchmark; `progress` hears what is being done.
pub(crate) async fn run(p: &Params, progress: &dyn Fn(&str)) -> anyhow::Result<Report> {
    if p.gateways == 0 || p.rounds == 0 {
        bail!("--gateways and --rounds must be at least 1");
    }
    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    let dir = tmp.path();
    progress(&format!(
        "starting {} controllers: {ROTATING_TD} and {} peers",
        p.peers + 1,
        p.peers
    ));
    let mut controllers = Vec::new();
    let mut gateways = Vec::new();
    let result = async {
        for td in std::iter::once(ROTATING_TD.to_owned()).chain((0..p.peers).map(peer_td)) {
            let c = causeway_controller::start(config(dir, &td)?, Default::default())
                .await
                .with_context(|| format!("starting {td}'s controller"))?;
            controllers.push((td, c));
        }
        measure(p, dir, &controllers, &mut gateways, progress).await
    }
    .await;
    progress("stopping the gateways and the controllers");
    for g in gateways {
        g.stop().await;
    }
    for (_, c) in controllers {
        c.shutdown().await;
    }
    result
}

async fn admin(c: &Running) -> anyhow::Result<AdminApiClient<Channel>> {
    causeway_controller::client::admin(&c.admin_socket)
        .await
        .context("connecting to a controller's admin socket")
}

async fn export(c: &Running) -> anyhow::Result<String> {
    Ok(admin(c)
        .await?
        .export_bundle(pb::ExportBundleRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("export: {}", s.message()))?
        .into_inner()
        .document)
}

/// Stores at `c` a Peering with `peer` (its bundle endpoint and first
/// bundle); the peer's gateway address is never dialled here.
async fn peer(c: &Running, name: &str, peer_td: &str, peer: &Running) -> anyhow::Result<()> {
    let addr = peer.federation.context("the peer has no public port")?;
    let text = format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Peering\nname: {name}\nspec:\n  \
         trustDomain: {peer_td}\n  bundleEndpoint:\n    url: https://{addr}/\n    \
         spiffeId: spiffe://{peer_td}/causeway/controller\n  firstBundle:\n    inline: {doc}\n  \
         gateways:\n    - address: 127.0.0.1:9\n      id: spiffe://{peer_td}/causeway/gateway/gw-000\n",
        doc = export(peer).await?.trim(),
    );
    let r = admin(c)
        .await?
        .apply(pb::ApplyRequest {
            files: vec![pb::ResourceFile {
                name: format!("peering-{name}.yaml"),
                content: text,
            }],
            dry_run: false,
        })
        .await
        .map_err(|s| anyhow::anyhow!("apply: {}", s.message()))?
        .into_inner();
    if !r.applied {
        bail!("peering {name} refused: {}", r.problems.join("; "));
    }
    Ok(())
}

async fn measure(
    p: &Params,
    dir: &Path,
    controllers: &[(String, Running)],
    gateways: &mut Vec<Gateway>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Report> {
    let Some(((_, east), peers)) = controllers.split_first() else {
        bail!("no controller");
    };
    progress("peering each peer with east, both ways");
    for (i, (td, c)) in peers.iter().enumerate() {
        peer(east, &format!("peer-{i}"), td, c).await?;
        peer(c, "east", ROTATING_TD, east).await?;
    }
    progress(&format!(
        "{} east gateways and one per peer: token, join, config stream, data plane",
        p.gateways
    ));
    let mut joined = Vec::new();
    let mut east_admin = admin(east).await?;
    for i in 0..p.gateways {
        let name = gateways::name(i);
        joined.push(gateways::join(dir, &mut east_admin, east.api, ROTATING_TD, &name).await?);
    }
    for (td, c) in peers {
        let mut a = admin(c).await?;
        let gw_dir = dir.join(td);
        joined.push(gateways::join(&gw_dir, &mut a, c.api, td, &gateways::name(0)).await?);
    }
    for j in joined {
        gateways.push(gateways::connect(j));
    }
    let deadline = Instant::now() + p.timeout;
    for g in gateways.iter_mut() {
        g.acked(1, deadline).await?;
    }
    progress("waiting until every party holds east's bundle");
    in_sync(&mut east_admin, p.timeout).await?;

    let mut rounds = Vec::with_capacity(p.rounds);
    for r in 1..=p.rounds {
        let round = rotate(&mut east_admin, p.timeout).await?;
        progress(&format!(
            "rotation {r}/{}: {:.0?} (recorded {} ms), bundle sequence {} -> {}, {} parties",
            p.rounds,
            round.wall,
            round.recorded_ms,
            round.sequence_before,
            round.sequence_after,
            round.parties
        ));
        rounds.push(round);
        in_sync(&mut east_admin, p.timeout).await?;
    }
    Ok(Report {
        params: p.clone(),
        rounds,
    })
}

async fn in_sync(admin: &mut AdminApiClient<Channel>, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let r = admin
            .verify_bundles(pb::VerifyBundlesRequest::default())
            .await
            .map_err(|s| anyhow::anyhow!("verify: {}", s.message()))?
            .into_inner();
        if r.in_sync {
            return Ok(());
        }
        if Instant::now() > deadline {
            let behind: Vec<String> = r
                .parties
                .iter()
                .filter(|p| !p.in_sync)
                .map(|p| {
                    format!(
                        "{} {} {}: {}",
                        p.kind, p.party_trust_domain, p.name, p.problem
                    )
                })
                .collect();
            bail!("not in sync in time: {}", behind.join("; "));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn rotate(admin: &mut AdminApiClient<Channel>, timeout: Duration) -> anyhow::Result<Round> {
    let t0 = Instant::now();
    let started = admin
        .start_rotation(pb::StartRotationRequest {
            started_by: "causeway-bench rotation".into(),
            step_timeout_secs: timeout.as_secs().max(1),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("rotate start: {}", s.message()))?
        .into_inner();
    if started.refused.is_some() {
        bail!("the rotation was refused: a party is behind");
    }
    let id = started.current.context("no rotation started")?.id;
    let deadline = t0 + timeout;
    loop {
        let s = admin
            .rotation_status(pb::RotationStatusRequest { history: 1 })
            .await
            .map_err(|s| anyhow::anyhow!("rotate status: {}", s.message()))?
            .into_inner();
        if let Some(cur) = &s.current
            && !cur.paused.is_empty()
        {
            bail!("the rotation paused: {}", cur.paused);
        }
        if s.current.is_none()
            && let Some(done) = s.history.into_iter().next()
            && done.id == id
        {
            let wall = t0.elapsed();
            if done.outcome != "completed" {
                bail!("the rotation ended {}", done.outcome);
            }
            let parties = done
                .steps
                .first()
                .and_then(|s| s.report.as_ref())
                .map_or(0, |r| r.parties.len());
            return Ok(Round {
                wall,
                recorded_ms: done.finished_unix_ms - done.started_unix_ms,
                steps: done
                    .steps
                    .iter()
                    .map(|s| (s.step.clone(), s.finished_unix_ms - s.started_unix_ms))
                    .collect(),
                sequence_before: done.sequence_before,
                sequence_after: done.sequence_after,
                parties,
            });
        }
        if Instant::now() > deadline {
            bail!("the rotation did not finish within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The figures as a table: each rotation, then the median of each step.
pub(crate) fn table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let p = &r.params;
    let _ = writeln!(
        out,
        "root rotation of {ROTATING_TD}: {} peer controllers, {} gateways of ours, {} of the peers; \
         everything real, in one process, on loopback",
        p.peers, p.gateways, p.peers
    );
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>12} {:>9}",
        "round", "wall", "recorded", "parties"
    );
    for (i, round) in r.rounds.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:<8} {:>7} ms {:>9} ms {:>9}",
            i + 1,
            round.wall.as_millis(),
            round.recorded_ms,
            round.parties
        );
    }
    let mut walls: Vec<u128> = r.rounds.iter().map(|x| x.wall.as_millis()).collect();
    walls.sort_unstable();
    if let (Some(min), Some(max)) = (walls.first(), walls.last()) {
        let _ = writeln!(
            out,
            "median {} ms (min {min}, max {max}) from `rotate start` to completed",
            walls[walls.len() / 2]
        );
    }
    let _ = writeln!(out, "median time of each step:");
    if let Some(first) = r.rounds.first() {
        for (i, (step, _)) in first.steps.iter().enumerate() {
            let mut v: Vec<i64> = r
                .rounds
                .iter()
                .filter_map(|x| x.steps.get(i).map(|s| s.1))
                .collect();
            v.sort_unstable();
            let _ = writeln!(out, "  {step:<14} {:>6} ms", v[v.len() / 2]);
        }
    }
    out
}

pub(crate) fn json(r: &Report) -> serde_json::Value {
    serde_json::json!({
        "benchmark": "rotation",
        "peers": r.params.peers,
        "gateways": r.params.gateways,
        "rounds": r.rounds.iter().map(|x| serde_json::json!({
            "wall_ms": x.wall.as_millis(),
            "recorded_ms": x.recorded_ms,
            "parties": x.parties,
            "sequence_before": x.sequence_before,
            "sequence_after": x.sequence_after,
            "steps": x.steps.iter().map(|(s, ms)| serde_json::json!({"step": s, "ms": ms})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
