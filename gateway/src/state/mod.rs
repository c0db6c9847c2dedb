//! The config in effect, and its replacement while the gateway runs.
//!
//! [`Live`] is the one owner of everything a call reads that a new config
//! may change: the validated config, the local endpoints (round robin and
//! passive health), the peers' dialling slots, the per-peer stream limits
//! and the HTTP client pools. They sit together in one immutable
//! [`Snapshot`] behind an `ArcSwap`, so that a call sees one config from
//! start to end, whatever is applied meanwhile, and a new call sees the
//! new one whole:
//!
//! ```text
//! call:   snapshot = live.load()          one atomic load + a reference count;
//!         route, check, connect, copy     no lock, nothing allocated
//!         (the snapshot is held to the end of the call)
//! apply:  validate ─► compare with the current (fields that cannot change
//!         live are refused) ─► build the next snapshot, taking over what
//!         did not change ─► one atomic store
//! ```
//!
//! Nothing open is touched: a call holding the old snapshot keeps its
//! endpoints, its peer connection and its stream permit until it ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use causeway_trust::{SpiffeId, TrustDomain};
use tokio::sync::Semaphore;

use crate::config::{Destination, GatewayConfig, Import, PrincipalName};
use crate::creds::unix_now;
use crate::reason::Reason;
use crate::transport::dial::PeerSlots;
use endpoints::{LocalUpstreams, RoundRobin};
use pools::HttpClients;

pub mod endpoints;
pub mod pools;

/// Where a destination is served.
#[derive(Debug)]
pub enum Route<'a> {
    /// A local service the caller may reach: its endpoints.
    Local(&'a RoundRobin),
    /// A peer's service; the peer's rules decide.
    Import(&'a Import),
}

/// Why a local caller cannot be routed to a destination.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("{}:{} is neither a local nor an imported service", .0.service, .0.port)]
    NoRoute(Destination),
    #[error("no rule allows {caller} to reach {}:{}", .destination.service, .destination.port)]
    Denied {
        caller: SpiffeId,
        destination: Destination,
    },
}

impl RouteError {
    /// Its label, from the closed set.
    pub fn reason(&self) -> Reason {
        match self {
            Self::NoRoute(_) => Reason::NoRoute,
            Self::Denied { .. } => Reason::Denied,
        }
    }
}

/// Where a config came from: a file, or the controller's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// A file path, or the control plane source (`controller`, say).
    pub source: String,
    /// The source's own version of it, when it has one.
    pub version: Option<String>,
}

impl Origin {
    pub fn new(source: impl Into<String>, version: Option<String>) -> Self {
        Self {
            source: source.into(),
            version,
        }
    }
}

impl Default for Origin {
    fn default() -> Self {
        Self::new("start", None)
    }
}

/// Everything a call reads that a config may change, as of one config.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<GatewayConfig>,
    pub upstreams: LocalUpstreams,
    /// Dialling state per peer (empty where nothing dials, as in an
    /// inbound-only test).
    pub peers: PeerSlots,
    /// Streams each peer trust domain may have open at once, over all its
    /// connections.
    pub per_peer: BTreeMap<TrustDomain, Arc<Semaphore>>,
    /// Pooled clients to local upstreams (kept while connect_timeout is).
    pub http: HttpClients,
    pub origin: Origin,
    /// 1 for the config the gateway started with, then one more per apply.
    pub generation: u64,
    /// When it took effect (Unix seconds).
    pub applied_unix: i64,
}

impl Snapshot {
    /// The first snapshot of a gateway.
    pub fn first(config: Arc<GatewayConfig>, peers: PeerSlots, origin: Origin) -> Self {
        let limit = stream_limit(&config);
        Self {
            upstreams: LocalUpstreams::from_config(&config),
            per_peer: config
                .peers
                .values()
                .map(|p| (p.trust_domain.clone(), Arc::new(Semaphore::new(limit))))
                .collect(),
            http: HttpClients::new(config.limits.connect_timeout),
            config,
            peers,
            origin,
            generation: 1,
            applied_unix: unix_now(),
        }
    }

    /// The snapshot after this one, for `config`: unchanged endpoints keep
    /// their state, peer domains still configured keep their stream
    /// permits (resized to a new limit), the HTTP pools stay unless the
    /// connect timeout changed.
    pub fn next(&self, config: Arc<GatewayConfig>, peers: PeerSlots, origin: Origin) -> Self {
        let limit = stream_limit(&config);
        let old_limit = stream_limit(&self.config);
        let per_peer = config
            .peers
            .values()
            .map(|p| {
                let sem = match self.per_peer.get(&p.trust_domain) {
                    Some(s) => {
                        resize(s, old_limit, limit);
                        s.clone()
                    }
                    None => Arc::new(Semaphore::new(limit)),
                };
                (p.trust_domain.clone(), sem)
            })
            .collect();
        let http = if config.limits.connect_timeout == self.config.limits.connect_timeout {
            self.http.clone()
        } else {
            HttpClients::new(config.limits.connect_timeout)
        };
        Self {
            upstreams: LocalUpstreams::next(&config, &self.upstreams),
            per_peer,
            http,
            config,
            peers,
            origin,
            generation: self.generation.saturating_add(1),
            applied_unix: unix_now(),
        }
    }

    /// Where `dest` is served, if `caller` may go there: local services are
    /// checked against the local rules here; an import's peer decides.
    pub fn route(&self, caller: &SpiffeId, dest: &Destination) -> Result<Route<'_>, RouteError> {
        if let Some(rr) = self.upstreams.get(dest) {
            if !self.config.authorizes(caller, dest) {
                return Err(RouteError::Denied {
                    caller: caller.clone(),
                    destination: dest.clone(),
                });
            }
            return Ok(Route::Local(rr));
        }
        self.config
            .imports
            .get(dest)
            .map(Route::Import)
            .ok_or_else(|| RouteError::NoRoute(dest.clone()))
    }

    /// The import serving `dest`, if it is one.
    pub fn import(&self, dest: &Destination) -> Option<&Import> {
        self.config.imports.get(dest)
    }

    /// The trust domain on the other side of a call to `dest`: the peer's
    /// for an import, this gateway's own otherwise (a metric label).
    pub fn peer_domain(&self, dest: &Destination) -> &str {
        self.config
            .imports
            .get(dest)
            .and_then(|i| self.config.peers.get(&i.peer))
            .map_or(self.config.trust_domain.as_str(), |p| {
                p.trust_domain.as_str()
            })
    }

    /// The local principal of a caller asserted by a gateway of `peer`.
    pub fn principal_of(&self, peer: &TrustDomain, caller: &SpiffeId) -> Option<&PrincipalName> {
        self.config.identity_map.lookup(peer, caller)
    }
}

fn stream_limit(config: &GatewayConfig) -> usize {
    usize::try_from(config.limits.max_streams_per_peer).unwrap_or(usize::MAX)
}

/// Moves a semaphore's capacity from `old` to `new` permits. A larger
/// limit adds permits at once. A smaller one removes the permits free at
/// this moment (tokio cannot take back those open streams hold), so a
/// peer at its limit during the apply keeps up to the old limit until a
/// later apply: a shrink is best effort.
fn resize(sem: &Semaphore, old: usize, new: usize) {
    if new > old {
        sem.add_permits(new - old);
    } else if new < old {
        sem.forget_permits(old - new);
    }
}

/// The one owner of the snapshot in effect.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Snapshot>,
}

impl Live {
    pub fn new(first: Snapshot) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(first),
        })
    }

    /// A gateway's first snapshot without peer slots (nothing dials).
    pub fn without_dialer(config: Arc<GatewayConfig>) -> Arc<Self> {
        Self::new(Snapshot::first(config, PeerSlots::new(), Origin::default()))
    }

    /// The snapshot in effect, to hold for the length of a call.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The config in effect.
    pub fn config(&self) -> Arc<GatewayConfig> {
        self.current.load().config.clone()
    }

    /// Reads a field of the snapshot in effect without taking a reference
    /// (for a value needed before an await, such as a timeout).
    pub fn with<T>(&self, f: impl FnOnce(&Snapshot) -> T) -> T {
        f(&self.current.load())
    }

    /// Puts `next` in effect for every call from now on.
    pub(crate) fn store(&self, next: Snapshot) {
        self.current.store(Arc::new(next));
    }
}
