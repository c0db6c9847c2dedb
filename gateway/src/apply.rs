//! Applying a new config to a running gateway, from a file (SIGHUP) or the
//! controller's stream.
//!
//! ```text
//! new GatewayConfig (validated whole by GatewayConfig::from_raw)
//!   ─► draining? refuse
//!   ─► config::live::live_changes(current, new)   a field that cannot change
//!        live (trust domain, ID, SVID files, the own bundle file, admin,
//!        peer listener, listeners) ─► refused, each named; the current
//!        config stays
//!   ─► bundle files of other domains added or moved: read and checked
//!        (a bad one refuses the config), not yet in use
//!   ─► peer slots: unchanged peers keep theirs (and their connection),
//!        changed or new peers get a client config verifying their IDs
//!   ─► peer listener TLS/QUIC config rebuilt if the accepted peer gateway
//!        IDs or the QUIC limits changed (built before anything is swapped)
//!   ─► Snapshot::next (endpoints, permits, HTTP pools taken over)
//!   ─► the bundles taken in use (and watched), then one atomic store of
//!        the snapshot; then the new server config for new handshakes
//! ```
//!
//! Applies are serialised (a lock held only while building and swapping,
//! never across an await); calls never take that lock.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use causeway_trust::tls::SvidSource;
use causeway_trust::verify::RefusalObserver;
use causeway_trust::{SharedBundles, SpiffeId};
use tracing::info;

use crate::config::live::{Changes, live_changes};
use crate::config::{ConfigError, GatewayConfig, Problem};
use crate::creds::{Credentials, ReloadError};
use crate::drain::Drain;
use crate::proxy::inbound::accept::peer_server_config;
use crate::proxy::outbound::Outbound;
use crate::state::{Live, Origin, Snapshot};
use crate::transport::quic::TunnelError;

/// Why a new config was not applied. The config in effect stays.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("{}", not_live(.0))]
    NotLive(Vec<Problem>),
    #[error("building the peer TLS configs: {0}")]
    Tunnel(#[from] TunnelError),
    #[error("a bundle the config names: {0}")]
    Bundle(#[from] ReloadError),
    #[error("the gateway is draining")]
    Draining,
}

fn not_live(problems: &[Problem]) -> String {
    let mut s = String::from("the config changes fields that cannot change live");
    for p in problems {
        s.push_str(&format!("\n  {}: {}", p.field, p.reason));
    }
    s
}

impl ApplyError {
    /// A short, closed-set label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::NotLive(_) => "not_live",
            Self::Tunnel(_) => "tls",
            Self::Bundle(_) => "bundle",
            Self::Draining => "draining",
        }
    }

    /// The fields at fault, for a NACK.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Self::Invalid(e) => e.problems.clone(),
            Self::NotLive(p) => p.clone(),
            Self::Tunnel(e) => vec![Problem {
                field: "peers".into(),
                reason: e.to_string(),
            }],
            Self::Bundle(e) => vec![Problem {
                field: "bundles".into(),
                reason: e.to_string(),
            }],
            Self::Draining => Vec::new(),
        }
    }
}

/// A config in effect after an apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The snapshot's generation (1 was the start config).
    pub generation: u64,
    pub changes: Changes,
}

/// What rebuilding the peer listener's TLS config needs.
#[derive(Clone)]
pub(crate) struct PeerTls {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) svid: SvidSource,
    pub(crate) bundles: SharedBundles,
    pub(crate) observer: Option<RefusalObserver>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Inner {
    live: Arc<Live>,
    outbound: Arc<Outbound>,
    credentials: Arc<Credentials>,
    peer_tls: Option<PeerTls>,
    drain: Drain,
    lock: Mutex<()>,
}

/// A handle that applies new configs to a running gateway; cheap to clone
/// and to move into a task (the controller's config stream client holds
/// one).
#[derive(Debug, Clone)]
pub struct ConfigApplier {
    inner: Arc<Inner>,
}

impl ConfigApplier {
    pub(crate) fn new(
        live: Arc<Live>,
        outbound: Arc<Outbound>,
        credentials: Arc<Credentials>,
        peer_tls: Option<PeerTls>,
        drain: Drain,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                live,
                outbound,
                credentials,
                peer_tls,
                drain,
                lock: Mutex::new(()),
            }),
        }
    }

    /// The snapshot in effect.
    pub fn current(&self) -> Arc<Snapshot> {
        self.inner.live.load()
    }

    /// Puts `new` in effect for every new call, connection and stream;
    /// open ones keep the config they started with. Refused, with the
    /// config in effect kept, when `new` changes a field that cannot
    /// change live or while the gateway drains.
    pub fn apply(&self, new: GatewayConfig, origin: Origin) -> Result<Applied, ApplyError> {
        let i = &self.inner;
        let _serial = self.lock();
        if i.drain.is_draining() {
            return Err(ApplyError::Draining);
        }
        let current = i.live.load();
        let changes = live_changes(&current.config, &new).map_err(ApplyError::NotLive)?;
        // A new peer's bundle must be held before the config that dials or
        // accepts its gateways is in effect.
        let bundles = match changes.bundles.is_empty() {
            true => None,
            false => Some(
                i.credentials
                    .prepare_bundle_files(&new.credentials.bundles)?,
            ),
        };
        let new = Arc::new(new);
        let slots = i.outbound.dialer.slots(&new, &current.peers)?;
        let server = match &i.peer_tls {
            Some(t) if listener_changes(&current.config, &new) => Some((
                &t.endpoint,
                peer_server_config(&new, &t.svid, &t.bundles, t.observer.clone())?,
            )),
            _ => None,
        };
        let next = current.next(new, slots, origin);
        let (generation, source) = (next.generation, next.origin.clone());
        if let Some(b) = bundles {
            i.credentials.commit_bundle_files(b);
        }
        i.live.store(next);
        if let Some((endpoint, server)) = server {
            endpoint.set_server_config(Some(server));
        }
        info!(generation, source = %source.source, version = ?source.version,
            "config applied: {changes}");
        Ok(Applied {
            generation,
            changes,
        })
    }

    /// Reads and validates a config file, then applies it (SIGHUP).
    pub fn apply_file(&self, path: &Path) -> Result<Applied, ApplyError> {
        let config = GatewayConfig::load(path)?;
        self.apply(config, Origin::new(path.display().to_string(), None))
    }

    /// Held while the drain starts, so that no apply re-opens the peer
    /// listener behind it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.inner
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the peer listener needs a new server config: other peer gateway
/// IDs to accept, or other QUIC limits.
fn listener_changes(old: &GatewayConfig, new: &GatewayConfig) -> bool {
    let ids = |c: &GatewayConfig| c.peer_gateway_ids().collect::<BTreeSet<SpiffeId>>();
    let (o, n) = (&old.limits, &new.limits);
    ids(old) != ids(new)
        || o.idle_timeout != n.idle_timeout
        || o.max_streams_per_connection != n.max_streams_per_connection
}
