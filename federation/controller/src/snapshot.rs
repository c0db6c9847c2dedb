//! Compiling the stored resources into the `ConfigSnapshot` every gateway of
//! the trust domain receives, and the feed that hands each replica's
//! streams the snapshot the leader last stored.
//!
//! The leader compiles and stores the snapshot with its version
//! (`config/snapshot`); every replica watches that one key. So all replicas
//! serve the same content under the same version, and a version never
//! names two contents.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_resources::caller::{Allow, Caller};
use causeway_resources::{Peering, ResourceSet};
use causeway_store::{Store, WatchEvent};
use causeway_trust::{TrustBundle, TrustDomain};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ca::{PublishedBundle, bundle_digest};
use crate::keys;
use crate::metrics::Metrics;
use crate::peers::{self, HeldPeerBundle};

/// Compiles a snapshot (version 0; the leader sets it). `held`: the peers'
/// bundles held, by peering name (a peering without one gets its first
/// bundle).
pub(crate) fn compile(
    td: &TrustDomain,
    set: &ResourceSet,
    own: &PublishedBundle,
    held: &BTreeMap<String, HeldPeerBundle>,
) -> pb::ConfigSnapshot {
    let mut snap = pb::ConfigSnapshot::default();
    if let Ok(b) = TrustBundle::from_json(td.clone(), own.document.as_bytes()) {
        snap.bundles
            .push(bundle(&b, own.sequence, own.document.clone()));
    }
    for p in set.peerings() {
        let b = peers::effective(p, held.get(p.name.as_str()));
        snap.bundles
            .push(bundle(&b, b.sequence().unwrap_or(0), b.to_json()));
        snap.peers.push(pb::Peer {
            name: p.name.to_string(),
            trust_domain: p.trust_domain.to_string(),
            gateways: p
                .gateways
                .iter()
                .map(|g| pb::PeerGateway {
                    address: g.address.to_string(),
                    id: g.id.to_string(),
                })
                .collect(),
        });
        for i in &p.imports {
            for port in &i.ports {
                snap.imports.push(pb::Import {
                    name: i.local_name.to_string(),
                    port: u32::from(*port),
                    peer: p.name.to_string(),
                    remote_service: i.service.to_string(),
                    remote_port: u32::from(*port),
                });
            }
        }
        for r in &p.identity_map {
            snap.identity_map.push(pb::IdentityMapping {
                peer_trust_domain: p.trust_domain.to_string(),
                pattern: r.from.to_string(),
                principal: r.principal.to_string(),
            });
        }
    }
    let peerings: Vec<&Peering> = set.peerings().collect();
    for s in set.services() {
        for port in &s.ports {
            snap.services.push(pb::Service {
                name: s.name.to_string(),
                port: u32::from(port.port),
                protocol: port.protocol.as_str().to_owned(),
                endpoints: s
                    .endpoints_of(port.port)
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            });
        }
        let all: BTreeSet<u16> = s.ports.iter().map(|p| p.port).collect();
        for rule in &s.authorization {
            let covered: BTreeSet<u16> = if rule.ports.is_empty() {
                all.clone()
            } else {
                rule.ports.iter().copied().collect()
            };
            let mut local = Vec::new();
            for allow in &rule.allow {
                match foreign_domains(td, allow, &peerings) {
                    None => local.push(principal(allow)),
                    // A foreign caller reaches only the ports exported to
                    // its domain.
                    Some(domains) => {
                        let ports: Vec<u32> = covered
                            .iter()
                            .filter(|port| exported(&peerings, &domains, s.name.as_str(), **port))
                            .map(|p| u32::from(*p))
                            .collect();
                        if !ports.is_empty() {
                            snap.authorization.push(pb::Rule {
                                service: s.name.to_string(),
                                ports,
                                allow: vec![principal(allow)],
                            });
                        }
                    }
                }
            }
            if !local.is_empty() {
                snap.authorization.push(pb::Rule {
                    service: s.name.to_string(),
                    ports: rule.ports.iter().map(|p| u32::from(*p)).collect(),
                    allow: local,
                });
            }
        }
    }
    snap
}

fn bundle(b: &TrustBundle, sequence: u64, document: String) -> pb::Bundle {
    pb::Bundle {
        trust_domain: b.trust_domain().to_string(),
        document,
        sequence,
        digest: bundle_digest(b),
    }
}

fn principal(a: &Allow) -> pb::Principal {
    use pb::principal::Match;
    pb::Principal {
        r#match: Some(match a {
            Allow::Principal(p) => Match::Principal(p.to_string()),
            Allow::Caller(Caller::Id(id)) => Match::Id(id.to_string()),
            Allow::Caller(Caller::Pattern(p)) => Match::Pattern(p.to_string()),
            Allow::Caller(Caller::TrustDomain(td)) => Match::TrustDomain(td.to_string()),
        }),
    }
}

/// `None` for a local selector; else the peer domains its callers come
/// from (for a principal: every peering whose identity map names it).
fn foreign_domains(
    local: &TrustDomain,
    a: &Allow,
    peerings: &[&Peering],
) -> Option<Vec<TrustDomain>> {
    match a {
        Allow::Caller(c) => {
            let td = c.trust_domain();
            (td != *local).then(|| vec![td])
        }
        Allow::Principal(p) => Some(
            peerings
                .iter()
                .filter(|peer| peer.identity_map.iter().any(|r| r.principal == *p))
                .map(|peer| peer.trust_domain.clone())
                .collect(),
        ),
    }
}

fn exported(peerings: &[&Peering], domains: &[TrustDomain], service: &str, port: u16) -> bool {
    peerings.iter().any(|p| {
        domains.contains(&p.trust_domain)
            && p.exports
                .iter()
                .any(|e| e.service.as_str() == service && e.ports.contains(&port))
    })
}

/// The snapshot's content without its version, to tell whether anything
/// changed.
pub(crate) fn fingerprint(snap: &pb::ConfigSnapshot) -> Vec<u8> {
    let mut s = snap.clone();
    s.version = 0;
    s.encode_to_vec()
}

/// Counts by kind, for logs.
pub(crate) fn describe(snap: &pb::ConfigSnapshot) -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("services", snap.services.len()),
        ("imports", snap.imports.len()),
        ("peers", snap.peers.len()),
        ("rules", snap.authorization.len()),
        ("bundles", snap.bundles.len()),
    ])
}

/// The stored snapshot, published on a `watch` for this replica's streams.
pub(crate) type Feed = watch::Receiver<Option<Arc<pb::ConfigSnapshot>>>;

/// Watches `config/snapshot` and publishes every new version. One task owns
/// the feed; it re-reads after any watch failure.
pub(crate) fn spawn_feed(store: Arc<dyn Store>, metrics: Metrics) -> (Feed, JoinHandle<()>) {
    let (tx, rx) = watch::channel(None);
    let task = tokio::spawn(async move {
        loop {
            match store.get(keys::SNAPSHOT).await {
                Ok(read) => {
                    if let Some(kv) = read.kv {
                        publish(&tx, &kv.value, &metrics);
                    }
                    if let Ok(mut w) = store.watch(keys::SNAPSHOT, read.revision + 1).await {
                        loop {
                            match w.next().await {
                                Some(Ok(WatchEvent::Put(kv))) => publish(&tx, &kv.value, &metrics),
                                Some(Ok(WatchEvent::Delete { .. })) => {}
                                Some(Err(e)) => {
                                    tracing::debug!(error = %e, "snapshot watch broke");
                                    break;
                                }
                                None => break,
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading the config snapshot failed"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (rx, task)
}

fn publish(tx: &watch::Sender<Option<Arc<pb::ConfigSnapshot>>>, bytes: &[u8], metrics: &Metrics) {
    match pb::ConfigSnapshot::decode(bytes) {
        Ok(snap) => {
            tx.send_if_modified(|cur| {
                if cur.as_ref().is_some_and(|c| c.version >= snap.version) {
                    return false;
                }
                #[allow(clippy::cast_precision_loss, reason = "a gauge")]
                metrics.config_version.set(snap.version as f64);
                *cur = Some(Arc::new(snap));
                true
            });
        }
        Err(e) => tracing::error!(error = %e, "the stored config snapshot does not decode"),
    }
}
