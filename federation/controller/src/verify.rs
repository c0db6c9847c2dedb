//! `causeway bundles verify`: whether every party holds the bundle it must.
//!
//! | party | must hold | from |
//! | --- | --- | --- |
//! | each of our gateways | every bundle of the config version last sent (ours and each peer's) | its stream's holdings report |
//! | each peer's controller | our published bundle | its `Holdings` over the federation API |
//! | each peer's gateways | our published bundle | the same report |
//!
//! "Holds" compares digests (`TrustBundle::digest()`, the set of roots);
//! sequences are shown. A party that cannot be asked (a gateway not
//! connected, a peer unreachable) is out of sync: nobody can vouch for what
//! it holds. Gateways whose last SVID has expired are gone and not listed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_proto::federation::v1 as fpb;
use causeway_store::Store;
use causeway_trust::TrustDomain;
use causeway_trust::tls::SvidSource;
use prost::Message;

use crate::error::{ControllerError, Result};
use crate::federate::peer_client;
use crate::gateways;
use crate::keys;
use crate::peers;
use crate::stored;
use crate::view::BundleView;

/// How long one peer has to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) const LOCAL_GATEWAY: &str = "local_gateway";
pub(crate) const PEER_CONTROLLER: &str = "peer_controller";
pub(crate) const PEER_GATEWAY: &str = "peer_gateway";

#[derive(Debug, Clone)]
pub(crate) struct Verifier {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) svid: SvidSource,
    pub(crate) view: BundleView,
}

struct Want {
    sequence: u64,
    digest: String,
}

impl Verifier {
    /// The report; `only`: the rows about this trust domain's bundle.
    pub(crate) async fn report(
        &self,
        only: Option<&TrustDomain>,
    ) -> Result<pb::VerifyBundlesResponse> {
        let mut rows = Vec::new();
        let wanted = |td: &str| only.is_none_or(|o| o.as_str() == td);

        // Our gateways: every bundle of the config they were sent.
        let snapshot = match self.store.get(keys::SNAPSHOT).await?.kv {
            Some(kv) => pb::ConfigSnapshot::decode(kv.value.as_slice())
                .map_err(|e| ControllerError::corrupt(keys::SNAPSHOT, e))?,
            None => pb::ConfigSnapshot::default(),
        };
        let want: BTreeMap<String, Want> = snapshot
            .bundles
            .iter()
            .filter(|b| wanted(&b.trust_domain))
            .map(|b| {
                (
                    b.trust_domain.clone(),
                    Want {
                        sequence: b.sequence,
                        digest: b.digest.clone(),
                    },
                )
            })
            .collect();
        let gateways = gateways::accountable(&self.store).await?;
        for (name, status) in &gateways {
            for (td, w) in &want {
                let held = status
                    .as_ref()
                    .and_then(|s| s.holdings.bundles.iter().find(|b| &b.trust_domain == td))
                    .map(|b| (b.sequence, b.digest.clone()));
                let problem = match (status, &held) {
                    (None, _) => Some("not connected".to_owned()),
                    (Some(_), None) => Some("holds none".to_owned()),
                    (Some(_), Some((_, d))) if *d == w.digest => None,
                    (Some(_), Some((s, _))) => Some(format!(
                        "holds sequence {s}, not {} (other roots)",
                        w.sequence
                    )),
                };
                rows.push(row(
                    LOCAL_GATEWAY,
                    self.trust_domain.as_str(),
                    name,
                    td,
                    w,
                    held,
                    problem,
                ));
            }
        }

        // Each peer: its controller and its gateways, holding ours.
        let ours = self.view.own_changes.borrow().clone();
        let own_td = self.trust_domain.to_string();
        if wanted(&own_td) {
            let w = Want {
                sequence: ours.sequence().unwrap_or(0),
                digest: ours.digest(),
            };
            let set = stored::read(&self.store).await?.set;
            let held = peers::read_all(&self.store).await?;
            for p in set.peerings() {
                let theirs = peers::effective(p, held.get(p.name.as_str()));
                let peer_td = p.trust_domain.to_string();
                let report = match peer_client(&self.svid, p, &theirs) {
                    Ok(mut api) => {
                        match tokio::time::timeout(
                            PEER_TIMEOUT,
                            api.holdings(fpb::HoldingsRequest {}),
                        )
                        .await
                        {
                            Ok(Ok(r)) => Ok(r.into_inner()),
                            Ok(Err(s)) => Err(format!("unreachable: {}", status_chain(&s))),
                            Err(_) => {
                                Err(format!("unreachable: no answer within {PEER_TIMEOUT:?}"))
                            }
                        }
                    }
                    Err(e) => Err(format!("unreachable: {e}")),
                };
                match report {
                    Err(problem) => rows.push(row(
                        PEER_CONTROLLER,
                        &peer_td,
                        "",
                        &own_td,
                        &w,
                        None,
                        Some(problem),
                    )),
                    Ok(r) => {
                        let held = |h: &Option<fpb::HeldBundle>| {
                            h.as_ref().map(|h| (h.sequence, h.digest.clone()))
                        };
                        let judge = |h: &Option<(u64, String)>, connected: bool| match h {
                            _ if !connected => Some("not connected".to_owned()),
                            None => Some("holds none".to_owned()),
                            Some((_, d)) if *d == w.digest => None,
                            Some((s, _)) => Some(format!(
                                "holds sequence {s}, not {} (other roots)",
                                w.sequence
                            )),
                        };
                        let c = held(&r.controller);
                        let problem = judge(&c, true);
                        rows.push(row(PEER_CONTROLLER, &peer_td, "", &own_td, &w, c, problem));
                        for g in &r.gateways {
                            let h = held(&g.bundle);
                            let problem = judge(&h, g.connected);
                            rows.push(row(
                                PEER_GATEWAY,
                                &peer_td,
                                &g.name,
                                &own_td,
                                &w,
                                h,
                                problem,
                            ));
                        }
                    }
                }
            }
        }
        rows.sort_by_key(|r| r.in_sync);
        Ok(pb::VerifyBundlesResponse {
            in_sync: rows.iter().all(|r| r.in_sync),
            parties: rows,
        })
    }
}

fn row(
    kind: &str,
    party_td: &str,
    name: &str,
    bundle_td: &str,
    want: &Want,
    held: Option<(u64, String)>,
    problem: Option<String>,
) -> pb::PartyHolding {
    let (held_sequence, held_digest) = held.unwrap_or_default();
    pb::PartyHolding {
        kind: kind.to_owned(),
        party_trust_domain: party_td.to_owned(),
        name: name.to_owned(),
        bundle_trust_domain: bundle_td.to_owned(),
        want_sequence: want.sequence,
        want_digest: want.digest.clone(),
        held_sequence,
        held_digest,
        in_sync: problem.is_none(),
        problem: problem.unwrap_or_default(),
    }
}

/// A status's message and the chain of errors under it: "operation was
/// canceled" alone does not say that the peer closed the connection after
/// refusing our certificate.
fn status_chain(s: &tonic::Status) -> String {
    let mut out = s.message().to_owned();
    let mut next = std::error::Error::source(s);
    while let Some(e) = next {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}
