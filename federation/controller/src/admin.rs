//! The admin API the `causeway` CLI uses, on a Unix socket (mode 0600: file
//! permissions are the access control). Apply admits the incoming resources
//! against the stored set and stores them in one transaction that compares
//! the set's revision, so two concurrent applies cannot both pass admission
//! against a set the other one changes.

use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::admin_api_server::AdminApi;
use causeway_resources::{Kind, Plan, Resource, admit, parse_str};
use causeway_store::{Compare, Store, Txn};
use tonic::{Request, Response, Status};

use crate::ca::LiveCa;
use crate::error::ControllerError;
use crate::federation::{PeerExports, read_exports};
use crate::forgotten;
use crate::gateways::{self, GatewayRecord, StreamStatus};
use crate::issuance::own_bundle;
use crate::keys;
use crate::metrics::Metrics;
use crate::peers::{self, HeldPeerBundle};
use crate::rotation::Rotations;
use crate::stored;
use crate::tokens::{self, now_unix};
use crate::verify::Verifier;

/// Retries of an apply that lost a race with another apply.
const APPLY_ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub(crate) struct Admin {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ca: LiveCa,
    pub(crate) metrics: Metrics,
    pub(crate) join_token_ttl: Duration,
    pub(crate) verifier: Verifier,
    pub(crate) rotations: Rotations,
}

#[tonic::async_trait]
impl AdminApi for Admin {
    async fn start_rotation(
        &self,
        req: Request<pb::StartRotationRequest>,
    ) -> Result<Response<pb::RotationResponse>, Status> {
        self.rotations
            .start(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn rotation_status(
        &self,
        req: Request<pb::RotationStatusRequest>,
    ) -> Result<Response<pb::RotationResponse>, Status> {
        let n = usize::try_from(req.into_inner().history).unwrap_or(usize::MAX);
        Ok(Response::new(self.rotations.status(n).await?))
    }

    async fn abort_rotation(
        &self,
        req: Request<pb::AbortRotationRequest>,
    ) -> Result<Response<pb::RotationResponse>, Status> {
        self.rotations
            .abort(&req.into_inner().aborted_by)
            .await
            .map(Response::new)
    }

    async fn resume_rotation(
        &self,
        req: Request<pb::ResumeRotationRequest>,
    ) -> Result<Response<pb::RotationResponse>, Status> {
        self.rotations
            .resume(&req.into_inner().resumed_by)
            .await
            .map(Response::new)
    }

    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let req = req.into_inner();
        let mut incoming = Vec::new();
        let mut problems = Vec::new();
        for f in &req.files {
            match parse_str(&f.name, &f.content, std::path::Path::new("")) {
                Ok(mut entries) => incoming.append(&mut entries),
                Err(e) => problems.extend(e.problems.iter().map(ToString::to_string)),
            }
        }
        if !problems.is_empty() {
            return Ok(Response::new(pb::ApplyResponse {
                plan: String::new(),
                applied: false,
                problems,
            }));
        }
        let ca = self.ca.current();
        let td = ca.ca.trust_domain();
        for _ in 0..APPLY_ATTEMPTS {
            let current = stored::read(&self.store).await?;
            let plan = Plan::new(&current.set, &incoming);
            let admitted = match admit(td, &current.set, incoming.clone()) {
                Ok(a) => a,
                Err(e) => {
                    return Ok(Response::new(pb::ApplyResponse {
                        plan: plan.to_string(),
                        applied: false,
                        problems: e.problems.iter().map(ToString::to_string).collect(),
                    }));
                }
            };
            if req.dry_run || plan.is_noop() {
                return Ok(Response::new(pb::ApplyResponse {
                    plan: plan.to_string(),
                    applied: !req.dry_run,
                    problems: Vec::new(),
                }));
            }
            let mut txn = Txn::new()
                .when(Compare::ModRevision(
                    keys::RESOURCES_META.into(),
                    current.meta_revision,
                ))
                .put(keys::RESOURCES_META, (current.meta_counter + 1).to_string());
            for entry in &incoming {
                let r = &entry.resource;
                // What admission kept: the incoming resource as admitted.
                let Some(kept) = admitted.get(r.kind(), r.name()) else {
                    continue;
                };
                if current.set.get(r.kind(), r.name()).map(|e| &e.resource) == Some(&kept.resource)
                {
                    continue;
                }
                let yaml = kept
                    .resource
                    .to_yaml()
                    .map_err(|e| Status::internal(e.to_string()))?;
                txn = txn.put(keys::resource(r.kind().as_str(), r.name()), yaml);
            }
            // One transaction holds the whole apply (all or nothing), and
            // the store takes at most MAX_TXN_OPS operations in one.
            if txn.ops.len() > causeway_store::MAX_TXN_OPS {
                return Ok(Response::new(pb::ApplyResponse {
                    plan: plan.to_string(),
                    applied: false,
                    problems: vec![format!(
                        "this apply changes {} resources; one apply changes at most {} (one store transaction): apply the files in parts",
                        txn.ops.len() - 1,
                        causeway_store::MAX_TXN_OPS - 1
                    )],
                }));
            }
            match self.store.txn(txn).await.map_err(ControllerError::from)? {
                r if r.applied => {
                    tracing::info!(revision = r.revision, plan = %plan, "applied");
                    return Ok(Response::new(pb::ApplyResponse {
                        plan: plan.to_string(),
                        applied: true,
                        problems: Vec::new(),
                    }));
                }
                _ => tracing::info!("apply raced another; admitting again"),
            }
        }
        Err(Status::aborted("the resources kept changing; apply again"))
    }

    async fn list_peers(
        &self,
        _req: Request<pb::ListPeersRequest>,
    ) -> Result<Response<pb::ListPeersResponse>, Status> {
        let current = stored::read(&self.store).await?;
        let held = peers::read_all(&self.store).await?;
        let peers = current
            .set
            .peerings()
            .map(|p| summary(p, held.get(p.name.as_str()), None))
            .collect();
        Ok(Response::new(pb::ListPeersResponse { peers }))
    }

    async fn show_peer(
        &self,
        req: Request<pb::ShowPeerRequest>,
    ) -> Result<Response<pb::ShowPeerResponse>, Status> {
        let name = req.into_inner().name;
        let current = stored::read(&self.store).await?;
        let Some(entry) = current.set.get(Kind::Peering, &name) else {
            return Err(Status::not_found(format!("no peering named {name:?}")));
        };
        let Resource::Peering(p) = &entry.resource else {
            return Err(Status::internal("a peering key holds another kind"));
        };
        let held = peers::read_all(&self.store).await?;
        Ok(Response::new(pb::ShowPeerResponse {
            resource: entry
                .resource
                .to_yaml()
                .map_err(|e| Status::internal(e.to_string()))?,
            summary: Some(summary(
                p,
                held.get(&name),
                read_exports(&self.store, &name).await?.as_ref(),
            )),
        }))
    }

    async fn create_token(
        &self,
        req: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let req = req.into_inner();
        gateways::check_name(&req.gateway).map_err(Status::invalid_argument)?;
        let ttl = match req.ttl_seconds {
            0 => self.join_token_ttl,
            s => Duration::from_secs(s),
        };
        let (token, expires_unix) =
            tokens::create(&self.store, &req.gateway, ttl, &self.ca.current().pin)
                .await
                .map_err(ControllerError::from)?;
        self.metrics
            .join_tokens
            .with_label_values(&["created"])
            .inc();
        tracing::info!(gateway = %req.gateway, expires_unix, "join token created");
        Ok(Response::new(pb::CreateTokenResponse {
            token: token.to_string(),
            expires_unix,
        }))
    }

    async fn export_bundle(
        &self,
        _req: Request<pb::ExportBundleRequest>,
    ) -> Result<Response<pb::ExportBundleResponse>, Status> {
        let b = own_bundle(&self.store, &self.ca.current()).await?;
        Ok(Response::new(pb::ExportBundleResponse {
            document: b.document,
        }))
    }

    async fn list_gateways(
        &self,
        _req: Request<pb::ListGatewaysRequest>,
    ) -> Result<Response<pb::ListGatewaysResponse>, Status> {
        let known = self
            .store
            .list(keys::GATEWAYS)
            .await
            .map_err(ControllerError::from)?;
        let connected = self
            .store
            .list(keys::CONNECTED)
            .await
            .map_err(ControllerError::from)?;
        let mut out = std::collections::BTreeMap::<String, pb::GatewayStatus>::new();
        for kv in known.kvs {
            let name = kv.key.trim_start_matches(keys::GATEWAYS).to_owned();
            let Ok(r) = serde_json::from_slice::<GatewayRecord>(&kv.value) else {
                continue;
            };
            out.insert(
                name.clone(),
                pb::GatewayStatus {
                    name,
                    spiffe_id: r.spiffe_id,
                    holdings: Some(pb::HoldingsView {
                        bundles: Vec::new(),
                        svid_serial: r.svid_serial,
                        svid_expires_unix: r.svid_expires_unix,
                    }),
                    ..Default::default()
                },
            );
        }
        for kv in connected.kvs {
            let name = kv.key.trim_start_matches(keys::CONNECTED).to_owned();
            let Ok(s) = serde_json::from_slice::<StreamStatus>(&kv.value) else {
                continue;
            };
            let g = out.entry(name.clone()).or_default();
            g.name = name;
            g.spiffe_id = s.spiffe_id;
            g.connected = true;
            g.acked_version = s.acked_version;
            g.last_error = s.last_error;
            g.holdings = Some(pb::HoldingsView {
                bundles: s
                    .holdings
                    .bundles
                    .iter()
                    .map(|b| pb::BundleView {
                        trust_domain: b.trust_domain.clone(),
                        sequence: b.sequence,
                        digest: b.digest.clone(),
                    })
                    .collect(),
                svid_serial: s.holdings.svid_serial,
                svid_expires_unix: s.holdings.svid_expires_unix,
            });
        }
        Ok(Response::new(pb::ListGatewaysResponse {
            gateways: out.into_values().collect(),
        }))
    }

    async fn forget_gateway(
        &self,
        req: Request<pb::ForgetGatewayRequest>,
    ) -> Result<Response<pb::ForgetGatewayResponse>, Status> {
        let req = req.into_inner();
        let t = forgotten::forget(&self.store, &req.name, &req.forgotten_by).await?;
        let rotation_paused = match crate::rotation::current(&self.store).await {
            Ok(Some((r, _))) => r.paused,
            Ok(None) => String::new(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the rotation after a forget failed");
                String::new()
            }
        };
        Ok(Response::new(pb::ForgetGatewayResponse {
            name: req.name,
            spiffe_id: t.spiffe_id,
            svid_serials: t.svid_serials,
            svid_expires_unix: t.svid_expires_unix,
            forgotten_unix: t.forgotten_unix,
            rotation_paused,
        }))
    }

    async fn verify_bundles(
        &self,
        req: Request<pb::VerifyBundlesRequest>,
    ) -> Result<Response<pb::VerifyBundlesResponse>, Status> {
        let td = req.into_inner().trust_domain;
        let only = if td.is_empty() {
            None
        } else {
            Some(
                causeway_trust::TrustDomain::new(&td)
                    .map_err(|e| Status::invalid_argument(format!("--trust-domain {td:?}: {e}")))?,
            )
        };
        Ok(Response::new(self.verifier.report(only.as_ref()).await?))
    }
}

fn summary(
    p: &causeway_resources::Peering,
    held: Option<&HeldPeerBundle>,
    offered: Option<&PeerExports>,
) -> pb::PeerSummary {
    let effective = peers::effective(p, held);
    pb::PeerSummary {
        bundle_digest: effective.digest(),
        offered: offered
            .map(|o| {
                o.services
                    .iter()
                    .map(|e| {
                        let ports: Vec<String> = e.ports.iter().map(ToString::to_string).collect();
                        format!("{}:{}", e.service, ports.join(","))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        offered_since_unix: offered.map_or(0, |o| o.since_unix),
        name: p.name.to_string(),
        trust_domain: p.trust_domain.to_string(),
        bundle_sequence: held
            .map(|h| h.sequence)
            .unwrap_or_else(|| p.first_bundle.bundle.sequence().unwrap_or(0)),
        bundle_age_seconds: held.map(|h| now_unix() - h.since_unix).unwrap_or(0),
        exports: u32::try_from(p.exports.len()).unwrap_or(u32::MAX),
        imports: u32::try_from(p.imports.len()).unwrap_or(u32::MAX),
    }
}
