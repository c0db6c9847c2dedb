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
                    // its domain, and only if the export's callers list
                    // (when it has one) selects it too.
                    Some(domains) => {
                        for peer in peerings
                            .iter()
                            .filter(|p| domains.contains(&p.trust_domain))
                        {
                            for export in peer.exports.iter().filter(|e| e.service == s.name) {
                                let ports: Vec<u32> = covered
                                    .iter()
                                    .filter(|port| export.ports.contains(port))
                                    .map(|p| u32::from(*p))
                                    .collect();
                                let allow =
                                    exported_to(allow, peer, export.callers.as_deref(), &domains);
                                if !ports.is_empty() && !allow.is_empty() {
                                    snap.authorization.push(pb::Rule {
                                        service: s.name.to_string(),
                                        ports,
                                        allow,
                                    });
                                }
                            }
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

/// The selectors that let `peer`'s callers named by `allow` in through an
/// export whose callers list is `callers` (`None`: every caller of the
/// peer). A principal stays a principal when only this peer's identity map
/// yields it and the export names no callers; otherwise it becomes the
/// identity map's patterns, each narrowed to the export's callers, so that
/// one peer's callers never ride on another's export.
fn exported_to(
    allow: &Allow,
    peer: &Peering,
    callers: Option<&[Caller]>,
    domains: &[TrustDomain],
) -> Vec<pb::Principal> {
    let selected: Vec<Caller> = match allow {
        Allow::Caller(c) if c.trust_domain() == peer.trust_domain => vec![c.clone()],
        Allow::Caller(_) => Vec::new(),
        Allow::Principal(_) if callers.is_none() && domains.len() == 1 => {
            return vec![principal(allow)];
        }
        Allow::Principal(name) => peer
            .identity_map
            .iter()
            .filter(|r| r.principal == *name)
            .map(|r| Caller::Pattern(r.from.clone()))
            .collect(),
    };
    let narrowed: Vec<Caller> = match callers {
        None => selected,
        Some(callers) => selected
            .iter()
            .flat_map(|s| callers.iter().filter_map(|c| s.intersect(c)))
            .collect(),
    };
    let mut out = Vec::new();
    for c in narrowed {
        let p = principal(&Allow::Caller(c));
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use std::path::Path;

    use causeway_resources::{Entry, Origin, parse_str};
    use pb::principal::Match;

    use super::*;

    /// The example inventory Service at east and east's peering with west,
    /// the peering's export `callers` replaced by `callers` (`None`: the
    /// line removed).
    fn compiled(callers: Option<&str>) -> Vec<pb::Rule> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let old =
            "      callers:\n        - pattern: spiffe://west.globex.example/ns/payments/sa/*\n";
        let peering = read("peering-west.yaml");
        assert!(peering.contains(old));
        let peering = peering.replace(
            old,
            &callers.map_or(String::new(), |c| {
                format!("      callers:\n        - {c}\n")
            }),
        );
        let mut entries = Vec::new();
        for (name, text) in [
            ("peering", peering),
            ("service", read("service-inventory.yaml")),
        ] {
            entries.extend(
                parse_str(name, &text, &dir)
                    .unwrap()
                    .into_iter()
                    .map(|e| Entry {
                        origin: Origin::store(),
                        resource: e.resource,
                    }),
            );
        }
        let set = ResourceSet::new(entries);
        let td = TrustDomain::new("east.acme.example").unwrap();
        let own = PublishedBundle {
            sequence: 1,
            document: set.peerings().next().unwrap().first_bundle.bundle.to_json(),
        };
        compile(&td, &set, &own, &BTreeMap::new())
            .authorization
            .into_iter()
            .filter(|r| {
                r.allow.iter().all(|a| match a.r#match.as_ref().unwrap() {
                    Match::Principal(_) => true,
                    Match::Id(s) | Match::Pattern(s) | Match::TrustDomain(s) => {
                        s.contains("west.globex.example")
                    }
                })
            })
            .collect()
    }

    fn allows(rules: &[pb::Rule]) -> Vec<(Vec<u32>, Match)> {
        rules
            .iter()
            .flat_map(|r| {
                r.allow
                    .iter()
                    .map(|a| (r.ports.clone(), a.r#match.clone().unwrap()))
            })
            .collect()
    }

    #[test]
    fn an_exports_callers_narrow_what_the_service_allows() {
        let w = "spiffe://west.globex.example";
        // The callers list and the identity map name the same pattern.
        assert_eq!(
            allows(&compiled(Some(&format!("pattern: {w}/ns/payments/sa/*")))),
            [(vec![8080], Match::Pattern(format!("{w}/ns/payments/sa/*")))]
        );
        // A narrower list: only that ID.
        assert_eq!(
            allows(&compiled(Some(&format!("id: {w}/ns/payments/sa/api")))),
            [(vec![8080], Match::Id(format!("{w}/ns/payments/sa/api")))]
        );
        // A list the service's rule does not meet: no foreign caller at all.
        assert_eq!(
            allows(&compiled(Some(&format!("pattern: {w}/ns/audit/**")))),
            []
        );
        // No list: the principal, as the identity map yields it.
        assert_eq!(
            allows(&compiled(None)),
            [(vec![8080], Match::Principal("west-payments".into()))]
        );
    }
}
