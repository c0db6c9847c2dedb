//! SVIDs for gateways: the first one against a join token (Join), the next
//! ones against the current SVID (Renew). The CSR's public key is signed;
//! the key never leaves the gateway. Every refusal is counted by reason and
//! logged.

use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_store::Store;
use causeway_trust::{CaError, IssuedSvid, SpiffeId, TrustBundle, Validity};
use tonic::Status;

use crate::ca::{self, CaState, LiveCa};
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
        self.record(&valid.gateway, &issued, true).await;
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
        let (id, name) = peer_gateway(td, peer).ok_or_else(|| {
            refuse(
                "wrong_id",
                Status::unauthenticated("renewal needs the gateway's current SVID (mutual TLS)"),
            )
        })?;
        let issued = sign(&ca, self.svid_ttl, &req.csr_der, &id).map_err(|(r, s)| refuse(r, s))?;
        self.metrics
            .svids_issued
            .with_label_values(&["renew"])
            .inc();
        tracing::info!(gateway = %name, serial = %issued.info.serial, "gateway SVID renewed");
        self.record(&name, &issued, false).await;
        self.respond(issued).await
    }

    async fn record(&self, name: &str, issued: &IssuedSvid, joined: bool) {
        let key = format!("{}{name}", keys::GATEWAYS);
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
            return;
        };
        if let Err(e) = self
            .store
            .txn(causeway_store::Txn::new().put(key, value))
            .await
        {
            tracing::warn!(gateway = name, error = %e, "recording the gateway's SVID failed");
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

/// The gateway a verified client chain belongs to: its ID and name.
pub(crate) fn peer_gateway(
    td: &causeway_trust::TrustDomain,
    peer: Option<&PeerCerts>,
) -> Option<(SpiffeId, String)> {
    let certs = peer?.0.as_ref()?;
    let leaf = certs.first()?;
    let id = causeway_trust::svid::check_leaf(leaf).ok()?.spiffe_id;
    let name = gateways::name_of(td, &id)?;
    Some((id, name))
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
