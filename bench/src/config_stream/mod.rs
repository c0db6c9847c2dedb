//! `causeway-bench config-stream`: how long one change takes to reach every
//! gateway of a trust domain through the federation controller.
//!
//! ```text
//!  bench ──Apply (admin API, Unix socket)──► controller (in process; embedded store or etcd)
//!    t0 call starts                             admission, one txn under resources/
//!    t1 call returns ◄──────────────────────────┘
//!                                               leader: watch resources/ ─► 50 ms settle
//!                                               ─► read + compile ─► put config/snapshot v+1
//!    t2 the bench's store watch sees v+1 ◄──────┘
//!                                               each replica's feed ─► every stream task
//!       ═══gRPC over mTLS (loopback)═══► N gateways (in process, real control client and
//!                                         data plane): convert + validate, write bundles,
//!                                         apply live, cache ─► ACK
//!    ta each gateway's ACK, timed by its control client when it hands the ACK to the stream
//!    tr the bench's store watch sees connected/<gw> with acked_version v+1 (the controller's record)
//! ```
//!
//! Everything runs in this one process on one tokio runtime, so every
//! instant comes from the same monotonic clock. Files live in a temp dir,
//! listeners on loopback with ports from the OS; with `--etcd-endpoints`
//! the store is that etcd, under a prefix of this run's own.

pub(crate) mod gateways;
pub(crate) mod report;
mod resources;
mod store_events;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use causeway_controller::{CaSource, ControllerConfig, StoreConfig};
use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::admin_api_client::AdminApiClient;
use causeway_trust::TrustDomain;
use tonic::transport::Channel;

use gateways::Gateway;
pub(crate) use resources::Shape;
use store_events::{StoreEvents, Stored};

/// What to measure.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub(crate) shape: Shape,
    pub(crate) gateways: usize,
    pub(crate) rounds: usize,
    /// Empty: the embedded store in the temp dir.
    pub(crate) etcd_endpoints: Vec<String>,
    /// How long each wait (a version stored, every ACK) may take.
    pub(crate) timeout: Duration,
}

impl Params {
    pub(crate) fn store_name(&self) -> &'static str {
        if self.etcd_endpoints.is_empty() {
            "embedded"
        } else {
            "etcd"
        }
    }
}

/// The compiled config the gateways receive.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotInfo {
    pub(crate) version: u64,
    /// The protobuf as stored and as sent on each stream.
    pub(crate) bytes: usize,
    pub(crate) services: usize,
    pub(crate) imports: usize,
    pub(crate) peers: usize,
    pub(crate) rules: usize,
    pub(crate) identity_map: usize,
    pub(crate) bundles: usize,
}

impl SnapshotInfo {
    fn of(s: &Stored) -> Self {
        let snap = &s.snapshot;
        Self {
            version: snap.version,
            bytes: s.bytes,
            services: snap.services.len(),
            imports: snap.imports.len(),
            peers: snap.peers.len(),
            rules: snap.authorization.len(),
            identity_map: snap.identity_map.len(),
            bundles: snap.bundles.len(),
        }
    }
}

/// Getting there: figures of the setup, measured once.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    /// Generating the resources (a root per peer trust domain).
    pub(crate) generate: Duration,
    /// Applying every resource, in calls of at most 100.
    pub(crate) apply: Duration,
    pub(crate) apply_calls: usize,
    /// From that call's return until the leader stored the version.
    pub(crate) apply_to_stored: Duration,
    /// Every gateway: token, key, CSR, join; one after the other.
    pub(crate) joins: Duration,
    /// From opening every stream until every gateway ACKed the whole
    /// config (its data plane started on it).
    pub(crate) initial_sync: Duration,
}

/// One change, every instant taken from `t0`, the start of the apply call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Round {
    pub(crate) version: u64,
    /// Gateways whose ACK of `version` was seen.
    pub(crate) acked: usize,
    pub(crate) apply_returned: Duration,
    pub(crate) stored: Duration,
    pub(crate) first_ack: Duration,
    pub(crate) last_ack: Duration,
    pub(crate) last_recorded: Duration,
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) params: Params,
    pub(crate) snapshot: SnapshotInfo,
    pub(crate) setup: Setup,
    pub(crate) rounds: Vec<Round>,
}

/// Runs the whole benchmark; `progress` hears what is being done.
pub(crate) async fn run(p: &Params, progress: &dyn Fn(&str)) -> anyhow::Result<Report> {
    if p.shape.services == 0 || p.gateways == 0 || p.rounds == 0 {
        bail!("--services, --gateways and --rounds must be at least 1");
    }
    let tmp = tempfile::tempdir().context("creating a temp dir")?;
    let dir = tmp.path();
    progress(&format!("starting a controller ({} store)", p.store_name()));
    let controller = causeway_controller::start(controller_config(dir, p)?, Default::default())
        .await
        .context("starting the controller")?;
    let mut gateways = Vec::new();
    let result = measure(p, dir, &controller, &mut gateways, progress).await;
    progress("stopping the gateways and the controller");
    for g in gateways {
        g.stop().await;
    }
    controller.shutdown().await;
    result
}

fn controller_config(dir: &Path, p: &Params) -> anyhow::Result<ControllerConfig> {
    let store = if p.etcd_endpoints.is_empty() {
        StoreConfig::Embedded
    } else {
        // A prefix of this run's own: nothing of another run or another
        // controller on that etcd is read or changed.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        StoreConfig::Etcd {
            endpoints: p.etcd_endpoints.clone(),
            prefix: Some(format!("/causeway-bench/{}-{nanos}/", std::process::id())),
        }
    };
    let data_dir = dir.join("controller");
    Ok(ControllerConfig {
        trust_domain: TrustDomain::new(resources::LOCAL_TD)?,
        admin_socket: data_dir.join("admin.sock"),
        data_dir,
        store,
        api_listen: "127.0.0.1:0".parse()?,
        metrics_listen: None,
        // The peers are made up: the leader's refreshers and announcements
        // to them fail and back off in the background, as they would for
        // unreachable peers.
        federation_listen: Some("127.0.0.1:0".parse()?),
        svid_ttl: Duration::from_secs(3600),
        join_token_ttl: Duration::from_secs(600),
        ca: CaSource::Store {
            root_ttl: Duration::from_secs(365 * 86400),
        },
    })
}

async fn measure(
    p: &Params,
    dir: &Path,
    controller: &causeway_controller::Running,
    gateways: &mut Vec<Gateway>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Report> {
    let store = controller.store().clone();
    let mut admin = causeway_controller::client::admin(&controller.admin_socket)
        .await
        .context("connecting to the controller's admin socket")?;

    progress(&format!(
        "generating {} Services and {} Peerings (a root per peer trust domain)",
        p.shape.services, p.shape.peers
    ));
    let t = Instant::now();
    let files = resources::initial(p.shape)?;
    let generate = t.elapsed();
    let apply_calls = files.len();
    progress(&format!(
        "applying them in {} calls (one store transaction each)",
        files.len()
    ));
    let mut events = StoreEvents::start(&store).await?;
    let t = Instant::now();
    for f in files {
        apply(&mut admin, vec![f]).await?;
    }
    let apply_time = t.elapsed();
    let deadline = Instant::now() + p.timeout;
    let stored = loop {
        let s = within(
            deadline,
            "the version with every resource",
            events.stored(0),
        )
        .await?;
        // The leader may store versions with part of the resources while
        // the calls go on; the one to start from holds every one of them.
        let snap = &s.snapshot;
        let services: BTreeSet<&str> = snap.services.iter().map(|s| s.name.as_str()).collect();
        if snap.peers.len() == p.shape.peers && services.len() == p.shape.services {
            break s;
        }
    };
    let apply_to_stored = stored.at.saturating_duration_since(t + apply_time);
    let snapshot = SnapshotInfo::of(&stored);
    progress(&format!(
        "version {}: {} bytes, {} services, {} imports, {} peers, {} rules, {} identity mappings, {} bundles",
        snapshot.version,
        snapshot.bytes,
        snapshot.services,
        snapshot.imports,
        snapshot.peers,
        snapshot.rules,
        snapshot.identity_map,
        snapshot.bundles
    ));

    progress(&format!(
        "{} gateways: token, join (CSR signed by the controller)",
        p.gateways
    ));
    let t = Instant::now();
    let mut joined = Vec::with_capacity(p.gateways);
    for i in 0..p.gateways {
        joined.push(
            gateways::join(
                dir,
                &mut admin,
                controller.api,
                resources::LOCAL_TD,
                &gateways::name(i),
            )
            .await?,
        );
    }
    let joins = t.elapsed();
    progress("opening every config stream; each gateway starts on the first config");
    let t = Instant::now();
    for j in joined {
        gateways.push(gateways::connect(j));
    }
    let deadline = Instant::now() + p.timeout;
    let mut last = t;
    for g in gateways.iter_mut() {
        last = last.max(g.acked(snapshot.version, deadline).await?);
    }
    let initial_sync = last.saturating_duration_since(t);
    progress(&format!(
        "every gateway ACKed version {} ({initial_sync:.2?} after the streams opened)",
        snapshot.version
    ));

    let names: Vec<String> = gateways.iter().map(|g| g.name.clone()).collect();
    let mut version = snapshot.version;
    let mut rounds = Vec::with_capacity(p.rounds);
    for r in 1..=p.rounds {
        let generation = u64::try_from(r)?;
        let change = resources::change(p.shape, generation)?;
        let round = one_round(&store, &mut admin, gateways, &names, change, version, p).await?;
        version = round.version;
        progress(&format!(
            "round {r}/{}: version {}: apply {:.1?}, stored {:.1?} later, every ACK {:.1?} after the apply returned",
            p.rounds,
            round.version,
            round.apply_returned,
            round.stored.saturating_sub(round.apply_returned),
            round.last_ack.saturating_sub(round.apply_returned),
        ));
        rounds.push(round);
    }
    Ok(Report {
        params: p.clone(),
        snapshot,
        setup: Setup {
            generate,
            apply: apply_time,
            apply_calls,
            apply_to_stored,
            joins,
            initial_sync,
        },
        rounds,
    })
}

/// Applies one change and times its way to every gateway.
async fn one_round(
    store: &std::sync::Arc<dyn causeway_store::Store>,
    admin: &mut AdminApiClient<Channel>,
    gateways: &mut [Gateway],
    names: &[String],
    change: pb::ResourceFile,
    version: u64,
    p: &Params,
) -> anyhow::Result<Round> {
    // Watching before the change: no event can be missed.
    let mut events = StoreEvents::start(store).await?;
    let t0 = Instant::now();
    apply(admin, vec![change]).await?;
    let t1 = Instant::now();
    let deadline = t0 + p.timeout;
    let stored = within(deadline, "the new version", events.stored(version)).await?;
    let v = stored.snapshot.version;
    let mut acks = Vec::with_capacity(gateways.len());
    for g in gateways.iter_mut() {
        acks.push(g.acked(v, deadline).await?);
    }
    let recorded = within(
        deadline,
        "the controller's record of every ACK",
        events.recorded(names, v),
    )
    .await?;
    let since = |at: Instant| at.saturating_duration_since(t0);
    let first = acks.iter().min().copied().unwrap_or(t0);
    let last = acks.iter().max().copied().unwrap_or(t0);
    let last_recorded = recorded.values().max().copied().unwrap_or(t0);
    Ok(Round {
        version: v,
        acked: acks.len(),
        apply_returned: since(t1),
        stored: since(stored.at),
        first_ack: since(first),
        last_ack: since(last),
        last_recorded: since(last_recorded),
    })
}

/// One Apply call, as `causeway apply` makes it; refusals are errors.
async fn apply(
    admin: &mut AdminApiClient<Channel>,
    files: Vec<pb::ResourceFile>,
) -> anyhow::Result<()> {
    let r = admin
        .apply(pb::ApplyRequest {
            files,
            dry_run: false,
        })
        .await
        .map_err(|s| anyhow::anyhow!("apply: {}", s.message()))?
        .into_inner();
    if !r.problems.is_empty() {
        bail!("apply refused:\n  {}", r.problems.join("\n  "));
    }
    if !r.applied {
        bail!("apply did not store anything: {}", r.plan);
    }
    Ok(())
}

async fn within<T>(
    deadline: Instant,
    what: &str,
    f: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout_at(deadline.into(), f)
        .await
        .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))?
}
