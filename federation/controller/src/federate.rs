//! The leader's side of federation, one task per peering while it leads:
//!
//! - keep the peer's bundle current: a [`Refresher`] polls the peer's
//!   bundle endpoint (authenticated with the bundle held) at the peer's
//!   refresh hint; each new bundle is recorded as held (`peers::record`),
//!   which recompiles the gateways' config;
//! - tell the peer ours: announce our bundle and what we export to it over
//!   the federation API whenever either changes, retrying with backoff
//!   until the peer has it.
//!
//! A bundle the peer announced to any replica lands in the store; when it
//! is newer than the refresher's, the refresher restarts from it (so that
//! after the peer's root rotation we authenticate its endpoint with the
//! new root).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use causeway_exchange::refresh::RefreshEvent;
use causeway_exchange::{RefreshPolicy, Refresher};
use causeway_proto::federation::v1 as pb;
use causeway_proto::federation::v1::federation_client::FederationClient;
use causeway_resources::{Peering, ResourceSet};
use causeway_store::{Compare, Store};
use causeway_trust::tls::SvidSource;
use causeway_trust::{BundleSet, Expected, SharedBundles, SpiffeVerifier, TrustBundle};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::client;
use crate::metrics::Metrics;
use crate::peers::{self, Recorded};
use crate::view::BundleView;

/// Longest wait between two announcement attempts to a peer that does not
/// answer.
const MAX_ANNOUNCE_BACKOFF: Duration = Duration::from_secs(30);

/// What the peer tasks share.
#[derive(Debug, Clone)]
pub(crate) struct Federate {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) svid: SvidSource,
    pub(crate) view: BundleView,
    pub(crate) metrics: Metrics,
    pub(crate) policy: RefreshPolicy,
}

/// The running peer tasks, by peering name; each stops when dropped.
#[derive(Debug, Default)]
pub(crate) struct PeerTasks(BTreeMap<String, (Peering, Task)>);

#[derive(Debug)]
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PeerTasks {
    /// One task per peering of `set`, restarted when its peering changed.
    pub(crate) fn reconcile(&mut self, federate: &Federate, fence: &Compare, set: &ResourceSet) {
        self.0
            .retain(|name, (p, _)| set.peerings().any(|q| q.name.as_str() == name && q == p));
        for p in set.peerings() {
            if !self.0.contains_key(p.name.as_str()) {
                let task = tokio::spawn(federate.clone().run_peer(fence.clone(), p.clone()));
                self.0.insert(p.name.to_string(), (p.clone(), Task(task)));
            }
        }
    }
}

impl Federate {
    async fn run_peer(self, fence: Compare, peering: Peering) {
        let name = peering.name.to_string();
        let mut held = self.view.held.clone();
        let start = peers::effective(&peering, held.borrow_and_update().get(&name));
        let mut refresher = self.refresher(&peering, start);
        let mut updates = refresher.subscribe();
        let mut own = self.view.own_changes.clone();
        own.mark_changed();
        let mut announce_at: Option<Instant> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            let due = announce_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                r = updates.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let bundle = updates.borrow_and_update().clone();
                    match peers::record(&self.store, Some(fence.clone()), &name, &bundle).await {
                        Ok(Recorded::Updated(h)) => tracing::info!(peer = %name, sequence = h.sequence, digest = %h.digest, "refreshed a peer's bundle"),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(peer = %name, error = %e, "recording a peer's bundle failed");
                            if matches!(e, crate::ControllerError::NotLeader) {
                                return;
                            }
                        }
                    }
                }
                r = held.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let record = held.borrow_and_update().get(&name).cloned();
                    let Some(stored) = record.and_then(|r| r.bundle(&peering.trust_domain)) else {
                        continue;
                    };
                    let current = refresher.current();
                    if newer(&stored, &current) {
                        tracing::info!(peer = %name, sequence = ?stored.sequence(), "following the peer's announced bundle");
                        refresher = self.refresher(&peering, stored);
                        updates = refresher.subscribe();
                    }
                }
                r = own.changed() => {
                    if r.is_err() {
                        return;
                    }
                    own.borrow_and_update();
                    announce_at = Some(Instant::now());
                    backoff = Duration::from_secs(1);
                }
                () = tokio::time::sleep_until(due), if announce_at.is_some() => {
                    let ours = self.view.own_changes.borrow().clone();
                    match self.announce(&peering, &refresher.current(), &ours).await {
                        Ok(reply) => {
                            self.metrics.announcements_sent.with_label_values(&[&name, "ok"]).inc();
                            let held = reply.held.unwrap_or_default();
                            tracing::info!(peer = %name, sequence = held.sequence, in_sync = held.digest == ours.digest(), "announced our bundle");
                            announce_at = None;
                            backoff = Duration::from_secs(1);
                        }
                        Err(e) => {
                            self.metrics.announcements_sent.with_label_values(&[&name, "failed"]).inc();
                            tracing::info!(peer = %name, error = %e, retry_in = ?backoff, "announcing our bundle failed");
                            announce_at = Some(Instant::now() + backoff);
                            backoff = (backoff * 2).min(MAX_ANNOUNCE_BACKOFF);
                        }
                    }
                }
            }
        }
    }

    fn refresher(&self, peering: &Peering, held: TrustBundle) -> Refresher {
        let metrics = self.metrics.clone();
        let name = peering.name.to_string();
        Refresher::spawn(
            peering.bundle_endpoint.url.to_string(),
            peering.bundle_endpoint.spiffe_id.clone(),
            held,
            None,
            self.policy.clone(),
            move |event| {
                let result = match event {
                    RefreshEvent::Updated(_) => "updated",
                    RefreshEvent::Unchanged => "unchanged",
                    RefreshEvent::Failed(e) => {
                        tracing::debug!(peer = %name, error = %e, "fetching a peer's bundle failed");
                        e.reason()
                    }
                };
                metrics
                    .peer_bundle_fetches
                    .with_label_values(&[&name, result])
                    .inc();
            },
        )
    }

    /// Announces `ours` and our exports to the peer, whose controller must
    /// present the peering's endpoint ID, chaining to `theirs`.
    async fn announce(
        &self,
        peering: &Peering,
        theirs: &TrustBundle,
        ours: &TrustBundle,
    ) -> Result<pb::AnnounceReply, String> {
        let url = &peering.bundle_endpoint.url;
        let mut api = peer_client(&self.svid, peering, theirs)?;
        let announcement = pb::Announcement {
            document: ours.to_json(),
            sequence: ours.sequence().unwrap_or(0),
            digest: ours.digest(),
            exports: peering
                .exports
                .iter()
                .map(|e| pb::ExportedService {
                    service: e.service.to_string(),
                    ports: e.ports.iter().map(|p| u32::from(*p)).collect(),
                })
                .collect(),
        };
        api.announce(announcement)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("{}: {}", url, s.message()))
    }
}

/// The federation API of `peering`'s controller, which must present the
/// peering's endpoint ID chaining to `theirs`; we present `svid`.
pub(crate) fn peer_client(
    svid: &SvidSource,
    peering: &Peering,
    theirs: &TrustBundle,
) -> Result<FederationClient<Channel>, String> {
    let set = BundleSet::from_bundles([theirs.clone()]).map_err(|e| format!("{e:?}"))?;
    let verifier = Arc::new(SpiffeVerifier::new(
        SharedBundles::new(set),
        Expected::ids([peering.bundle_endpoint.spiffe_id.clone()]),
    ));
    let tls =
        causeway_trust::tls::client_config(svid, verifier, &[b"h2"]).map_err(|e| e.to_string())?;
    let url = &peering.bundle_endpoint.url;
    client::federation(&url.host.to_string(), url.port.unwrap_or(443), tls)
        .map_err(|e| e.to_string())
}

/// Whether `a` should replace `b`: a later sequence, or the same with
/// other roots (the store is the authority on ties).
fn newer(a: &TrustBundle, b: &TrustBundle) -> bool {
    let (sa, sb) = (a.sequence().unwrap_or(0), b.sequence().unwrap_or(0));
    sa > sb || (sa == sb && a.digest() != b.digest())
}
