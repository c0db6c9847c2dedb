//! SVIDs for gateways: the first one against a join token (Join), the next
//! ones against the current SVID (Renew). The CSR's public key is signed;
//! the key never leaves the gateway. Every refusal is counted by reason and
//! logged.

use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_store::Store;
use causeway_trust::{CaError, IssuedSvid, SpiffeId, SvidInfo, TrustBundle, Validity};
use tonic::Status;

use crate::ca::{self, CaState, LiveCa};
use crate::forgotten;
use crate::gateways::{self, GatewayRecord};
use crate::keys;
use crate::metrics::Metrics;
use crate::tls::PeerCerts;
use crate::tokens::{self, Token, TokenError, now_unix};

#[derive(Debug, Clone)]
pub(crate) struct Issuer {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ca: LiveCa,
    pub(crate) svid_ttl: Duration,
    pub(crate) metrics: Metrics,
}

impl Issuer {
    pub(crate) async fn join(&self, req: pb::JoinRequest) -> Result<pb::SvidResponse, Status> {
        let refuse = |reason: &'static str, status: Status| {
            self.metrics.refused("join", reason);
            tracing::warn!(reason, message = status.message(), "join refused");
            status
        };
        let token_refused = |e: TokenError| {
            let reason = e.reason();
            let status = match e {
                TokenError::Store(s) => Status::unavailable(s.to_string()),
                e => Status::permission_denied(e.to_string()),
            };
            refuse(reason, status)
        };
        let token = Token::parse(&req.token).map_err(token_refused)?;
        let ca = self.ca.current();
        let valid = tokens::check(&self.store, &token, &ca.pin)
            .await
            .map_err(token_refused)?;
        let id = gateways::gateway_id(ca.ca.trust_domain(), &valid.gateway)
            .map_err(|e| refuse("bad_token", Status::permission_denied(e.to_string())))?;
        // Sign first, use the token after: a bad CSR does not burn the
        // token, and nothing is handed out unless the token was ours to use.
        let issued = sign(&ca, self.svid_ttl, &req.csr_der, &id).map_err(|(r, s)| refuse(r, s))?;
        tokens::consume(&self.store, &token, &valid)
            .await
            .map_err(token_refused)?;
        self.metrics.join_tokens.with_label_values(&["used"]).inc();
        self.metrics.svids_issued.with_label_values(&["join"]).inc();
        tracing::info!(gateway = %valid.gateway, serial = %issued.info.serial, "gateway joined");
        self.record(&valid.gateway, &issued, Record::Join).await;
        self.respond(issued).await
    }

    pub(crate) async fn renew(
        &self,
        peer: Option<&PeerCerts>,
        req: pb::RenewRequest,
    ) -> Result<pb::SvidResponse, Status> {
        let refuse = |reason: &'static str, status: Status| {
            self.metrics.refused("renew", reason);
            tracing::warn!(reason, message = status.message(), "renewal refused");
            status
        };
        let ca = self.ca.current();
        let td = ca.ca.trust_domain();
        let (svid_info, name) = peer_gateway(td, peer).ok_or_else(|| {
            refuse(
                "wrong_id",
                Status::unauthenticated("renewal needs the gateway's current SVID (mutual TLS)"),
            )
        })?;
        let (forgotten, fence) = forgotten::covering(&self.store, &name, &svid_info)
            .await
            .map_err(|e| refuse("store", Status::from(e)))?;
        if let Some(t) = forgotten {
            return Err(refuse(
                "forgotten",
                Status::permission_denied(t.refusal(&name)),
            ));
        }
        let id = svid_info.spiffe_id.clone();
        let issued = sign(&ca, self.svid_ttl, &req.csr_der, &id).map_err(|(r, s)| refuse(r, s))?;
        let mut fence = fence;
        for _ in 0..2 {
            if self.record(&name, &issued, Record::Renew(fence)).await != Recorded::Forgotten {
                break;
            }
            // The tombstone changed while we signed: forgotten now (the
            // SVID is not handed out), or swept (record again).
            let (t, revision) = forgotten::covering(&self.store, &name, &svid_info)
                .await
                .map_err(|e| refuse("store", Status::from(e)))?;
            if let Some(t) = t {
                return Err(refuse(
                    "forgotten",
                    Status::permission_denied(t.refusal(&name)),
                ));
            }
            fence = revision;
        }
        self.metrics
            .svids_issued
            .with_label_values(&["renew"])
            .inc();
        tracing::info!(gateway = %name, serial = %issued.info.serial, "gateway SVID renewed");
        self.respond(issued).await
    }

    /// Records the SVID issued to `name`: a Renew writes only if the
    /// name's tombstone is as it was when the SVID was checked. A store failure is
    /// logged, not fatal: the SVID is valid either way.
    async fn record(&self, name: &str, issued: &IssuedSvid, how: Record) -> Recorded {
        let key = format!("{}{name}", keys::GATEWAYS);
        let joined = matches!(how, Record::Join);
        let joined_unix = match self.store.get(&key).await.ok().and_then(|r| r.kv) {
            Some(kv) if !joined => serde_json::from_slice::<GatewayRecord>(&kv.value)
                .map(|r| r.joined_unix)
                .unwrap_or_else(|_| now_unix()),
            _ => now_unix(),
        };
        let record = GatewayRecord {
            spiffe_id: issued.info.spiffe_id.to_string(),
            joined_unix,
            svid_serial: issued.info.serial.clone(),
            svid_expires_unix: issued.info.not_after,
        };
        let Ok(value) = serde_json::to_vec(&record) else {
            return Recorded::Failed;
        };
        let tombstone = forgotten::key(name);
        let txn = match how {
            // The tombstone stays: it refuses only SVIDs issued before the
            // forget, so the old machine's SVID cannot renew its way back
            // in, and the new one is not concerned.
            Record::Join => {
                if let Ok((Some(t), _)) = forgotten::read(&self.store, name).await {
                    tracing::info!(
                        gateway = name,
                        forgotten_unix = t.forgotten_unix,
                        "a forgotten gateway joined again; its SVIDs from before stay refused"
                    );
                }
                causeway_store::Txn::new().put(key, value)
            }
            Record::Renew(fence) => causeway_store::Txn::new()
                .when(causeway_store::Compare::ModRevision(tombstone, fence))
                .put(key, value),
        };
        match self.store.txn(txn).await {
            Ok(r) if r.applied => Recorded::Written,
            Ok(_) => Recorded::Forgotten,
            Err(e) => {
                tracing::warn!(gateway = name, error = %e, "recording the gateway's SVID failed");
                Recorded::Failed
            }
        }
    }

    async fn respond(&self, issued: IssuedSvid) -> Result<pb::SvidResponse, Status> {
        Ok(pb::SvidResponse {
            spiffe_id: issued.info.spiffe_id.to_string(),
            expires_unix: issued.info.not_after,
            chain_der: issued.chain.iter().map(|c| c.to_vec()).collect(),
            own_bundle: Some(
                own_bundle(&self.store, &self.ca.current())
                    .await
                    .map_err(Status::from)?,
            ),
        })
    }
}

/// The own bundle as published (with its sequence), or built from the CA
/// before the leader has published it.
pub(crate) async fn own_bundle(
    store: &Arc<dyn Store>,
    state: &CaState,
) -> crate::error::Result<pb::Bundle> {
    let td = state.ca.trust_domain();
    let (sequence, bundle) = match ca::published(store).await? {
        Some(p) => {
            let b = TrustBundle::from_json(td.clone(), p.document.as_bytes())
                .map_err(|e| crate::error::ControllerError::corrupt(keys::OWN_BUNDLE, e))?;
            (p.sequence, b)
        }
        None => (0, state.bundle()),
    };
    Ok(pb::Bundle {
        trust_domain: td.to_string(),
        document: bundle.to_json(),
        sequence,
        digest: bundle.digest(),
    })
}

/// The gateway a verified client chain belongs to: its SVID (ID, serial,
/// validity) and name.
pub(crate) fn peer_gateway(
    td: &causeway_trust::TrustDomain,
    peer: Option<&PeerCerts>,
) -> Option<(SvidInfo, String)> {
    let certs = peer?.0.as_ref()?;
    let leaf = certs.first()?;
    let info = causeway_trust::svid::check_leaf(leaf).ok()?;
    let name = gateways::name_of(td, &info.spiffe_id)?;
    Some((info, name))
}

/// How an SVID is recorded.
#[derive(Debug, Clone, Copy)]
enum Record {
    Join,
    /// The revision of the name's tombstone key when the renewal was
    /// checked (0: none).
    Renew(causeway_store::Revision),
}

/// What recording an SVID did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    Written,
    /// The tombstone changed since the renewal was checked.
    Forgotten,
    /// The store failed (logged).
    Failed,
}

fn sign(
    ca: &CaState,
    ttl: Duration,
    csr: &[u8],
    id: &SpiffeId,
) -> Result<IssuedSvid, (&'static str, Status)> {
    ca.ca
        .sign_csr(csr, Validity::starting_now(ttl), |asked| asked == id)
        .map_err(|e| match e {
            CaError::CsrIdNotAllowed { .. } | CaError::CsrWrongTrustDomain { .. } => (
                "wrong_id",
                Status::permission_denied(format!("{e}; this gateway may have only {id}")),
            ),
            CaError::SignerExpired { .. } | CaError::Generate(_) | CaError::Random => {
                ("store", Status::internal(e.to_string()))
            }
            e => ("bad_csr", Status::invalid_argument(e.to_string())),
        })
}
