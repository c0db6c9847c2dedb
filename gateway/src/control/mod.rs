//! The gateway's control client: a gateway run by a federation controller
//! keeps a small local file (see `crate::config::control`) and gets the
//! rest from its controller.
//!
//! - [`join`]: the first SVID, against a one-time join token whose pin
//!   authenticates the controller before the token is sent;
//! - [`renew`]: a new key and SVID at about half of the lifetime, over
//!   mTLS, with backoff; the last good SVID stays until it expires; at
//!   once when the controller issues from another root than the SVID's
//!   (root rotation);
//! - [`stream`]: the config stream: Hello with what the gateway holds, one
//!   ACK/NACK per snapshot, Holdings again when they change; it tells the
//!   renewal task which root the controller issues from;
//! - [`snapshot`]: a snapshot into the gateway's validated config;
//! - [`cache`]: the last good snapshot on disk, served at start;
//! - [`files`]: the data directory, every write atomic;
//! - [`tls`]: rustls configs under tonic, SPIFFE verification of the
//!   controller.
//!
//! A running gateway is reached only through [`ApplyConfig`]; the credential
//! reload task picks the SVID and bundle files up from the data directory.
//!
//! ```text
//! let client = ControlClient::load(path, options, &registry)?;
//! client.ensure_svid().await?;            // join with the token if needed
//! let tasks = client.spawn(applier);       // cached config, renewals, stream
//! // the applier starts the gateway at its first config, then swaps configs,
//! // and calls client.attach(running.credentials(), running.metrics())
//! ```

pub mod backoff;
pub mod cache;
pub mod files;
pub mod join;
pub mod metrics;
pub mod renew;
pub mod snapshot;
pub mod stream;
pub mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use causeway_proto::controller::v1::{HeldBundle, Holdings};
use causeway_trust::{BundleSet, Svid, TrustBundle, TrustDomain};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::control::ControllerSettings;
use crate::config::raw::RawConfig;
use crate::config::{ConfigError, GatewayConfig, Problem};
use crate::creds::Credentials;
use crate::metrics::Metrics;
use backoff::Backoff;
use files::{DataDir, FileError};
use join::{Issued, JoinError, JoinToken};
use metrics::ControlMetrics;

/// What the control client hands each validated config to. The first call
/// starts the gateway; later calls swap its config without dropping
/// connections. `Err` carries the reason sent back to the controller in
/// the NACK; the previous config must then stay in effect.
pub trait ApplyConfig: Send + Sync {
    fn apply(&self, config: GatewayConfig) -> ApplyFuture<'_>;
}

/// The future an [`ApplyConfig`] returns.
pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Timings of the control client.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Connect and per-call timeout.
    pub timeout: Duration,
    /// Retries of a failed renewal.
    pub renew_backoff: Backoff,
    /// Reconnects of the config stream.
    pub reconnect_backoff: Backoff,
    /// How often what the gateway holds is compared with what it last
    /// reported.
    pub holdings_interval: Duration,
}

impl Default for ControlOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            renew_backoff: Backoff {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
            },
            reconnect_backoff: Backoff {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(30),
            },
            holdings_interval: Duration::from_secs(1),
        }
    }
}

/// Why the control client could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}: no controller: section; this gateway runs from its file alone")]
    NoController(String),
    #[error(transparent)]
    Files(#[from] FileError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Join(#[from] JoinError),
}

/// The running gateway's live credentials and metrics, once there is one.
#[derive(Debug)]
struct Attached {
    credentials: Arc<Credentials>,
    metrics: Arc<Metrics>,
}

/// The control client of one gateway.
#[derive(Debug)]
pub struct ControlClient {
    settings: ControllerSettings,
    trust_domain: TrustDomain,
    /// The local file's config: services and the rest come from snapshots.
    template: RawConfig,
    /// The local file's directory: relative paths in it start there.
    base: PathBuf,
    dir: DataDir,
    options: ControlOptions,
    metrics: ControlMetrics,
    /// The SVID this client last obtained or loaded: what it presents to
    /// the controller.
    svid: ArcSwapOption<Svid>,
    /// The bundles this client wrote or found on disk: what it verifies
    /// the controller with, and reports before a gateway runs.
    bundles: ArcSwap<BundleSet>,
    attached: ArcSwapOption<Attached>,
    /// The version in effect (0: none).
    applied: AtomicU64,
    /// The last ACK or NACK sent on the config stream.
    answers: watch::Sender<Option<Answer>>,
    /// The root (SHA-256 hex of its DER) the controller issues from, as
    /// the last snapshot ACKed names it; empty: no demand. The config
    /// stream writes it, the renewal task renews at once while the SVID
    /// chains to another root.
    wanted_root: watch::Sender<String>,
    /// What the gateway holds may have changed (a renewal, a snapshot):
    /// the config stream compares and reports at once instead of at its
    /// next `holdings_interval` tick.
    holdings_due: Notify,
}

/// What the client last answered the controller on the config stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub version: u64,
    /// `None`: ACK; `Some(reason)`: NACK.
    pub refused: Option<String>,
    /// When the answer was handed to the stream (after the snapshot was
    /// applied and cached).
    pub at: Instant,
}

impl ControlClient {
    /// Reads the gateway's local file. It must have a `controller:` section
    /// and none of `services`, `imports`, `peers`, `authorization`,
    /// `svid`, `bundles`.
    pub fn load(
        path: &Path,
        options: ControlOptions,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, ControlError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![Problem {
                field: String::new(),
                reason: e.to_string(),
            }],
        })?;
        let raw: RawConfig = serde_saphyr::from_str(&text).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![Problem {
                field: String::new(),
                reason: format!("not a gateway config: {e}"),
            }],
        })?;
        // Absolute, because the paths derived from the data directory are
        // validated again with every snapshot and must not be joined to the
        // file's directory twice.
        let path = std::path::absolute(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            problems: vec![Problem {
                field: String::new(),
                reason: e.to_string(),
            }],
        })?;
        Self::from_raw(
            &name,
            raw,
            path.parent().unwrap_or(Path::new(".")),
            options,
            registry,
        )
    }

    /// As [`Self::load`], from a parsed file; `base` resolves relative paths.
    pub fn from_raw(
        source_name: &str,
        raw: RawConfig,
        base: &Path,
        options: ControlOptions,
        registry: &prometheus::Registry,
    ) -> Result<Arc<Self>, ControlError> {
        if raw.controller.is_none() {
            return Err(ControlError::NoController(source_name.to_owned()));
        }
        let mut problems = Vec::new();
        for (field, set) in [
            ("services", !raw.services.is_empty()),
            ("imports", !raw.imports.is_empty()),
            ("peers", !raw.peers.is_empty()),
            ("authorization", !raw.authorization.is_empty()),
        ] {
            if set {
                problems.push(Problem {
                    field: field.into(),
                    reason: "comes from the controller under a controller: section; leave it out"
                        .into(),
                });
            }
        }
        // The whole file is checked now, except that a tcp listener's
        // service may be one the controller has not sent yet: those are
        // checked with every snapshot.
        match GatewayConfig::from_raw(source_name, raw.clone(), base) {
            Ok(_) => {}
            Err(e) => problems.extend(e.problems.into_iter().filter(|p| !awaits_snapshot(p))),
        }
        if !problems.is_empty() {
            return Err(ConfigError {
                source_name: source_name.to_owned(),
                problems,
            }
            .into());
        }
        let mut probe = raw.clone();
        probe.listeners.retain(|l| l.protocol != "tcp");
        let config = GatewayConfig::from_raw(source_name, probe, base)?;
        let Some(settings) = config.controller else {
            return Err(ControlError::NoController(source_name.to_owned()));
        };
        let dir = DataDir::open(&settings.data_dir)?;
        let svid = match dir.read_svid(&settings.gateway_id) {
            Ok(s) => s.map(Arc::new),
            Err(e) => {
                warn!("the SVID in the data directory cannot be used; joining again: {e}");
                None
            }
        };
        let bundles = dir.read_bundles();
        Ok(Arc::new(Self {
            trust_domain: config.trust_domain,
            template: raw,
            base: base.to_owned(),
            metrics: ControlMetrics::new(registry)?,
            svid: ArcSwapOption::new(svid),
            bundles: ArcSwap::from_pointee(bundles),
            attached: ArcSwapOption::empty(),
            applied: AtomicU64::new(0),
            answers: watch::Sender::new(None),
            wanted_root: watch::Sender::new(String::new()),
            holdings_due: Notify::new(),
            dir,
            options,
            settings,
        }))
    }

    pub fn settings(&self) -> &ControllerSettings {
        &self.settings
    }

    pub fn data_dir(&self) -> &DataDir {
        &self.dir
    }

    pub fn metrics(&self) -> &ControlMetrics {
        &self.metrics
    }

    /// The SVID the client presents to the controller, if any.
    pub fn svid(&self) -> Option<Arc<Svid>> {
        self.svid.load_full()
    }

    /// The version of the config in effect (0: none).
    pub fn applied_version(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    /// The last ACK or NACK sent to the controller, as it changes (for
    /// tests and `causeway-bench config-stream`, which time the ACKs).
    pub fn answers(&self) -> watch::Receiver<Option<Answer>> {
        self.answers.subscribe()
    }

    /// Makes sure the gateway has an SVID that is not expired: the one in
    /// the data directory, or a new one from a join with the token file.
    pub async fn ensure_svid(&self) -> Result<Arc<Svid>, JoinError> {
        if let Some(svid) = self.svid.load_full()
            && svid.info().not_after > crate::creds::unix_now()
        {
            return Ok(svid);
        }
        let path = self
            .settings
            .token_file
            .as_ref()
            .ok_or(JoinError::NoToken)?;
        let token = JoinToken::load(path)?;
        info!(token_id = %token.id, controller = %self.settings.address,
            id = %self.settings.gateway_id, "joining the controller");
        let issued = join::join(
            &self.settings,
            &self.trust_domain,
            &token,
            self.options.timeout,
        )
        .await?;
        self.store_issued(&issued)?;
        info!(serial = %issued.svid.info().serial,
            not_after = %crate::creds::rfc3339(issued.svid.info().not_after),
            "joined: first SVID written; the token file is not needed any more");
        Ok(Arc::new(issued.svid))
    }

    /// Writes a new SVID and the own bundle to the data directory and takes
    /// them in use for the client's own calls. An own bundle older (by
    /// sequence) than the one held is not taken: during a root rotation a
    /// replica that has not caught up must not take the new root away.
    fn store_issued(&self, issued: &Issued) -> Result<(), FileError> {
        let own = &issued.own_bundle;
        let held = self
            .bundles
            .load()
            .get(own.trust_domain())
            .and_then(TrustBundle::sequence);
        match (held, own.sequence()) {
            (Some(held), Some(sent)) if sent < held => {
                warn!(
                    held,
                    sent, "the controller answered with an older own bundle; keeping the one held"
                );
            }
            _ => {
                self.dir.write_bundle(own)?;
                self.hold_bundles(std::slice::from_ref(own));
            }
        }
        self.dir.write_svid(&issued.svid)?;
        self.svid.store(Some(Arc::new(issued.svid.clone())));
        if let Some(a) = self.attached.load_full() {
            a.metrics
                .set_svid_expiry(system_time(issued.svid.info().not_after));
        }
        self.files_written();
        Ok(())
    }

    /// New credential files are in the data directory, each written whole
    /// (one rename): the running gateway's reload task reads them now
    /// rather than waiting for them to settle, and the config stream
    /// compares holdings now rather than at its next tick.
    fn files_written(&self) {
        if let Some(a) = self.attached.load_full() {
            a.credentials.reload_now();
        }
        self.holdings_due.notify_one();
    }

    /// The root the controller issues from, as the last snapshot ACKed
    /// names it (SHA-256 hex of its DER); empty when it names none.
    pub fn wanted_root(&self) -> String {
        self.wanted_root.borrow().clone()
    }

    /// Records the root a snapshot names; wakes the renewal task only when
    /// it changes.
    fn want_root(&self, root: &str) {
        self.wanted_root.send_if_modified(|w| {
            if w == root {
                return false;
            }
            root.clone_into(w);
            true
        });
    }

    /// Whether `svid` must be renewed for root rotation: the controller
    /// names a root to issue from, and `svid` does not chain to it in the
    /// own bundle this client holds.
    fn root_demand(&self, svid: &Svid) -> Option<RootDemand> {
        let wanted = self.wanted_root.borrow().clone();
        if wanted.is_empty() {
            return None;
        }
        let held = svid_root(svid, &self.bundles.load());
        (held.as_deref() != Some(wanted.as_str())).then_some(RootDemand { wanted, held })
    }

    fn hold_bundles(&self, bundles: &[TrustBundle]) {
        let mut set = (*self.bundles.load_full()).clone();
        for b in bundles {
            let _ = set.insert(b.clone());
        }
        self.bundles.store(Arc::new(set));
    }

    /// Connects the client to a running gateway: holdings are read from
    /// its live credentials from now on, and renewals update its SVID
    /// expiry metric at once.
    pub fn attach(&self, credentials: Arc<Credentials>, metrics: Arc<Metrics>) {
        self.attached.store(Some(Arc::new(Attached {
            credentials,
            metrics,
        })));
    }

    /// What the gateway holds now: from the running gateway's credentials
    /// once attached, else from what this client wrote.
    pub fn holdings(&self) -> Holdings {
        let (svid, bundles) = match self.attached.load_full() {
            Some(a) => (Some(a.credentials.svid()), a.credentials.bundles()),
            None => (self.svid.load_full(), self.bundles.load_full()),
        };
        holdings(svid.as_deref(), &bundles)
    }

    /// Starts the control tasks: the cached config first (served at once,
    /// whether the controller is up or not), then renewals and the config
    /// stream. Dropping the handle stops them.
    pub fn spawn(self: &Arc<Self>, applier: Arc<dyn ApplyConfig>) -> ControlTasks {
        let renew = tokio::spawn(self.clone().renew_loop());
        let stream = tokio::spawn(self.clone().stream_loop(applier));
        ControlTasks(vec![renew, stream])
    }
}

/// The controller issues from a root the SVID does not chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RootDemand {
    /// The root the controller issues from (SHA-256 hex).
    wanted: String,
    /// The own bundle's root the SVID chains to, if any.
    held: Option<String>,
}

impl RootDemand {
    fn wanted_short(&self) -> &str {
        short_pin(&self.wanted)
    }

    fn held_short(&self) -> &str {
        self.held.as_deref().map_or("none of our bundle", short_pin)
    }
}

/// The first 12 hex digits of a root's SHA-256, for logs.
fn short_pin(pin: &str) -> &str {
    pin.get(..12).unwrap_or(pin)
}

/// A listener problem that only a snapshot can settle: a tcp listener's
/// service comes from the controller.
fn awaits_snapshot(p: &Problem) -> bool {
    p.field.starts_with("listeners[")
        && p.field.ends_with(".service")
        && p.reason.contains("neither a local nor an imported service")
}

/// Holdings as the proto reports them.
pub fn holdings(svid: Option<&Svid>, bundles: &BundleSet) -> Holdings {
    Holdings {
        bundles: bundles
            .bundles()
            .map(|b| HeldBundle {
                trust_domain: b.trust_domain().to_string(),
                sequence: b.sequence().unwrap_or(0),
                digest: authorities_digest(b),
            })
            .collect(),
        svid_serial: svid.map(|s| s.info().serial.clone()).unwrap_or_default(),
        svid_issuer: svid.map(|s| s.info().issuer.clone()).unwrap_or_default(),
        svid_expires_unix: svid.map(|s| s.info().not_after).unwrap_or(0),
        svid_root: svid.and_then(|s| svid_root(s, bundles)).unwrap_or_default(),
    }
}

/// SHA-256 (hex) of the own bundle's root the SVID chains to, if one does:
/// what root rotation waits on.
pub fn svid_root(svid: &Svid, bundles: &BundleSet) -> Option<String> {
    let own = bundles.get(&svid.info().spiffe_id.trust_domain())?;
    causeway_trust::verify::issuing_root(svid.chain(), own)
        .map(|root| causeway_trust::hash::sha256_hex(root))
}

/// The proto's bundle digest: the trust core's `TrustBundle::digest`, the
/// one every party reports, so that "holds the same bundle" compares alike
/// everywhere.
pub fn authorities_digest(bundle: &TrustBundle) -> String {
    bundle.digest()
}

fn system_time(unix: i64) -> std::time::SystemTime {
    u64::try_from(unix)
        .ok()
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .unwrap_or(std::time::UNIX_EPOCH)
}

/// The control client's tasks; dropping it stops them (the gateway keeps
/// serving what it has).
#[derive(Debug)]
pub struct ControlTasks(Vec<JoinHandle<()>>);

impl Drop for ControlTasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}
