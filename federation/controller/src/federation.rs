//! The federation API, server side: what peer controllers call on our
//! public port (see `front`). The caller is the peer controller whose SVID
//! the TLS handshake verified against the bundle we hold for its domain;
//! its trust domain must be one of our peerings'.
//!
//! - `Announce`: the peer's current bundle and the services it exports to
//!   us. The bundle is stored as held when it is not older than the one we
//!   hold (a rotation reaches our gateways without waiting for the next
//!   poll); the exports are kept for `peer show`.
//! - `Holdings`: what we hold of the caller's domain, at the controller and
//!   at each of our gateways.

use std::sync::Arc;

use causeway_proto::federation::v1 as pb;
use causeway_proto::federation::v1::federation_server::Federation;
use causeway_resources::Peering;
use causeway_store::{Store, Txn};
use causeway_trust::verify::bundle_verifies_chain;
use causeway_trust::{Expected, PeerRole, TrustBundle, TrustDomain};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::error::ControllerError;
use crate::gateways::{CONTROLLER_PATH, GatewayRecord, StreamStatus};
use crate::keys;
use crate::metrics::Metrics;
use crate::peers::{self, HeldPeerBundle, Recorded};
use crate::stored;
use crate::tls::PeerCerts;
use crate::tokens::now_unix;

/// What a peer last announced it exports to us.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PeerExports {
    pub(crate) services: Vec<ExportedService>,
    pub(crate) since_unix: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct ExportedService {
    pub(crate) service: String,
    pub(crate) ports: Vec<u16>,
}

pub(crate) async fn read_exports(
    store: &Arc<dyn Store>,
    peering: &str,
) -> Result<Option<PeerExports>, ControllerError> {
    let key = format!("{}{peering}", keys::PEER_EXPORTS);
    match store.get(&key).await?.kv {
        Some(kv) => serde_json::from_slice(&kv.value)
            .map(Some)
            .map_err(|e| ControllerError::corrupt(&key, e)),
        None => Ok(None),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct FederationApi {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) metrics: Metrics,
}

impl FederationApi {
    /// The peering of the calling controller, from its verified SVID.
    async fn caller<T>(&self, req: &Request<T>) -> Result<Peering, Status> {
        let id = req
            .extensions()
            .get::<PeerCerts>()
            .and_then(|p| p.0.as_ref())
            .and_then(|certs| certs.first())
            .and_then(|leaf| causeway_trust::svid::check_leaf(leaf).ok())
            .map(|info| info.spiffe_id)
            .ok_or_else(|| {
                Status::unauthenticated("the federation API needs a peer controller's SVID")
            })?;
        let td = id.trust_domain();
        if td == self.trust_domain || id.path() != CONTROLLER_PATH {
            return Err(Status::permission_denied(format!(
                "{id} is not a peer controller"
            )));
        }
        let set = stored::read(&self.store).await?.set;
        set.peerings()
            .find(|p| p.trust_domain == td)
            .cloned()
            .ok_or_else(|| Status::permission_denied(format!("no peering with {td}")))
    }
}

fn held(h: &HeldPeerBundle) -> pb::HeldBundle {
    pb::HeldBundle {
        sequence: h.sequence,
        digest: h.digest.clone(),
        since_unix: h.since_unix,
    }
}

#[tonic::async_trait]
impl Federation for FederationApi {
    async fn announce(
        &self,
        req: Request<pb::Announcement>,
    ) -> Result<Response<pb::AnnounceReply>, Status> {
        let peering = self.caller(&req).await?;
        let chain = req
            .extensions()
            .get::<PeerCerts>()
            .and_then(|p| p.0.clone())
            .unwrap_or_default();
        let a = req.into_inner();
        let td = peering.trust_domain.clone();
        let bundle = TrustBundle::from_json(td.clone(), a.document.as_bytes())
            .map_err(|e| Status::invalid_argument(format!("the bundle of {td}: {e}")))?;
        if bundle.x509_authorities().is_empty() {
            return Err(Status::invalid_argument(format!(
                "the bundle of {td} holds no X.509 authority"
            )));
        }
        if bundle.digest() != a.digest {
            return Err(Status::invalid_argument(format!(
                "the bundle's digest is {}, not the {} announced",
                bundle.digest(),
                a.digest
            )));
        }
        if bundle.sequence().unwrap_or(0) != a.sequence {
            return Err(Status::invalid_argument(format!(
                "the document says sequence {:?}, the announcement {}",
                bundle.sequence(),
                a.sequence
            )));
        }
        // A bundle that does not verify the announcer's own chain would
        // lock the peer out: its next announcement, and every fetch from
        // its endpoint, would be refused. No correct rotation sends one
        // (the controller's SVID moves to the new root before the old root
        // leaves).
        if let Err(e) =
            bundle_verifies_chain(&bundle, &chain, PeerRole::Client, &Expected::AnyKnownDomain)
        {
            tracing::warn!(peer = %peering.name, sequence = a.sequence, error = %e,
                "a peer announced a bundle that does not verify its own certificate; kept ours");
            self.metrics
                .announcements_received
                .with_label_values(&[peering.name.as_str(), "refused"])
                .inc();
            return Err(Status::failed_precondition(format!(
                "the bundle of {td} at sequence {} does not verify the certificate it was \
                 announced with ({e}); holding it would refuse your controller from then on, \
                 so the bundle held stays",
                a.sequence
            )));
        }
        let recorded = peers::record(&self.store, None, peering.name.as_str(), &bundle).await?;
        let outcome = match &recorded {
            Recorded::Updated(h) => {
                tracing::info!(peer = %peering.name, sequence = h.sequence, digest = %h.digest, "a peer announced a new bundle");
                "updated"
            }
            Recorded::Unchanged(_) => "unchanged",
            Recorded::Older(h) => {
                tracing::warn!(peer = %peering.name, got = a.sequence, held = h.sequence, "a peer announced an older bundle; kept ours");
                "older"
            }
        };
        self.metrics
            .announcements_received
            .with_label_values(&[peering.name.as_str(), outcome])
            .inc();

        let mut services = Vec::new();
        for e in a.exports {
            let ports = e
                .ports
                .iter()
                .map(|p| u16::try_from(*p))
                .collect::<Result<Vec<u16>, _>>()
                .map_err(|_| Status::invalid_argument(format!("export {}: bad port", e.service)))?;
            services.push(ExportedService {
                service: e.service,
                ports,
            });
        }
        let current = read_exports(&self.store, peering.name.as_str()).await?;
        if current.as_ref().map(|c| &c.services) != Some(&services) {
            let key = format!("{}{}", keys::PEER_EXPORTS, peering.name);
            let value = serde_json::to_vec(&PeerExports {
                services,
                since_unix: now_unix(),
            })
            .map_err(|e| Status::internal(e.to_string()))?;
            let _ = self
                .store
                .txn(Txn::new().put(key, value))
                .await
                .map_err(ControllerError::from)?;
        }
        Ok(Response::new(pb::AnnounceReply {
            held: Some(held(recorded.held())),
        }))
    }

    async fn holdings(
        &self,
        req: Request<pb::HoldingsRequest>,
    ) -> Result<Response<pb::HoldingsReport>, Status> {
        let peering = self.caller(&req).await?;
        let td = peering.trust_domain.as_str();
        let controller = peers::read_all(&self.store)
            .await?
            .get(peering.name.as_str())
            .filter(|h| h.trust_domain == td)
            .map(held);
        let mut gateways = std::collections::BTreeMap::new();
        let known = self
            .store
            .list(keys::GATEWAYS)
            .await
            .map_err(ControllerError::from)?;
        for kv in known.kvs {
            if serde_json::from_slice::<GatewayRecord>(&kv.value).is_ok() {
                let name = kv.key.trim_start_matches(keys::GATEWAYS).to_owned();
                gateways.insert(
                    name.clone(),
                    pb::GatewayHolding {
                        name,
                        ..Default::default()
                    },
                );
            }
        }
        let connected = self
            .store
            .list(keys::CONNECTED)
            .await
            .map_err(ControllerError::from)?;
        for kv in connected.kvs {
            let Ok(s) = serde_json::from_slice::<StreamStatus>(&kv.value) else {
                continue;
            };
            let name = kv.key.trim_start_matches(keys::CONNECTED).to_owned();
            let g = gateways.entry(name.clone()).or_default();
            g.name = name;
            g.connected = true;
            g.bundle = s
                .holdings
                .bundles
                .iter()
                .find(|b| b.trust_domain == td)
                .map(|b| pb::HeldBundle {
                    sequence: b.sequence,
                    digest: b.digest.clone(),
                    since_unix: 0,
                });
        }
        Ok(Response::new(pb::HoldingsReport {
            trust_domain: self.trust_domain.to_string(),
            controller,
            gateways: gateways.into_values().collect(),
        }))
    }
}
