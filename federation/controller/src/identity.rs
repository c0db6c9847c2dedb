//! The controller's own serving certificate: an SVID
//! `spiffe://<td>/causeway/controller` issued from the CA in process, with
//! the chain `[leaf, root]`, renewed at half of its lifetime. One task owns
//! it and swaps it into the [`SvidSource`] the TLS config resolves from, so
//! the next handshake presents the new one.

use std::sync::Arc;
use std::time::Duration;

use causeway_store::{LeaseId, Store, Txn};
use causeway_trust::tls::SvidSource;
use causeway_trust::{Svid, Validity};
use tokio::task::JoinHandle;

use crate::ca::{CaState, LiveCa};
use crate::error::{ControllerError, Result};
use crate::gateways::CONTROLLER_PATH;
use crate::keys;
use crate::metrics::Metrics;

pub(crate) fn issue(ca: &CaState, ttl: Duration) -> Result<Svid> {
    let id = ca
        .ca
        .trust_domain()
        .workload_id(CONTROLLER_PATH)
        .map_err(|e| ControllerError::Tls(e.to_string()))?;
    let svid = ca.ca.issue_with_new_key(&id, Validity::starting_now(ttl))?;
    let mut chain = svid.chain().to_vec();
    chain.push(ca.root.clone());
    Svid::new(chain, svid.key().clone_key()).map_err(|e| ControllerError::Tls(e.to_string()))
}

/// What each replica records under its lease (`replicas/<node>`): the root
/// its own SVID chains to. A rotation waits for every replica's.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct Replica {
    /// SHA-256 (hex) of the root.
    pub(crate) svid_root: String,
    pub(crate) svid_serial: String,
}

/// Where the replica records itself.
#[derive(Debug, Clone)]
pub(crate) struct ReplicaRecord {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) node: String,
    pub(crate) lease: LeaseId,
}

impl ReplicaRecord {
    async fn write(&self, svid: &Svid, root: &str) {
        let record = Replica {
            svid_root: root.to_owned(),
            svid_serial: svid.info().serial.clone(),
        };
        let Ok(value) = serde_json::to_vec(&record) else {
            return;
        };
        let key = format!("{}{}", keys::REPLICAS, self.node);
        if let Err(e) = self
            .store
            .txn(Txn::new().put_with_lease(key, value, self.lease))
            .await
        {
            tracing::warn!(error = %e, "recording this replica's SVID failed");
        }
    }
}

/// Renews the controller's SVID at half of `ttl`, and at once when the CA
/// switches to another root; on failure retries every second, keeping the
/// current one until it expires. Each new SVID is recorded under the
/// replica's lease.
pub(crate) fn spawn_renewal(
    ca: LiveCa,
    source: SvidSource,
    ttl: Duration,
    metrics: Metrics,
    record: ReplicaRecord,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = ca.changes();
        changes.mark_unchanged();
        // The root the SVID in use was issued from: the last of its chain.
        let mut issued_from = source
            .svid()
            .chain()
            .last()
            .map(|root| crate::ca::sha256_hex(root))
            .unwrap_or_default();
        tracing::info!(serial = %source.svid().info().serial, root = %crate::ca::short(&issued_from),
            issuing = %crate::ca::short(&ca.current().pin), "the controller's SVID");
        record.write(&source.svid(), &issued_from).await;
        // The CA may have switched since that SVID was issued.
        let mut wait = if issued_from == ca.current().pin {
            ttl / 2
        } else {
            Duration::ZERO
        };
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                r = changes.changed() => if r.is_err() { return },
            }
            let state = ca.current();
            match issue(&state, ttl).and_then(|svid| {
                let serial = svid.info().serial.clone();
                source
                    .replace(svid)
                    .map(|()| serial)
                    .map_err(|e| ControllerError::Tls(e.to_string()))
            }) {
                Ok(serial) => {
                    metrics
                        .svids_issued
                        .with_label_values(&["controller"])
                        .inc();
                    if issued_from == state.pin {
                        tracing::info!(%serial, "renewed the controller's SVID");
                    } else {
                        tracing::info!(%serial, root = %crate::ca::short(&state.pin),
                            "the controller's SVID now chains to the new root");
                    }
                    issued_from = state.pin.clone();
                    record.write(&source.svid(), &issued_from).await;
                    wait = ttl / 2;
                }
                Err(e) => {
                    tracing::error!(error = %e, "renewing the controller's SVID failed; retrying");
                    wait = Duration::from_secs(1);
                }
            }
        }
    })
}
