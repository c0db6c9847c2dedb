//! The controller's own serving certificate: an SVID
//! `spiffe://<td>/causeway/controller` issued from the CA in process, with
//! the chain `[leaf, root]`, renewed at half of its lifetime. One task owns
//! it and swaps it into the [`SvidSource`] the TLS config resolves from, so
//! the next handshake presents the new one.

use std::sync::Arc;
use std::time::Duration;

use causeway_trust::tls::SvidSource;
use causeway_trust::{Svid, Validity};
use tokio::task::JoinHandle;

use crate::ca::CaState;
use crate::error::{ControllerError, Result};
use crate::gateways::CONTROLLER_PATH;
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

/// Renews the controller's SVID at half of `ttl`; on failure retries every
/// second, keeping the current one until it expires.
pub(crate) fn spawn_renewal(
    ca: Arc<CaState>,
    source: SvidSource,
    ttl: Duration,
    metrics: Metrics,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = ttl / 2;
        loop {
            tokio::time::sleep(wait).await;
            match issue(&ca, ttl).and_then(|svid| {
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
                    tracing::info!(%serial, "renewed the controller's SVID");
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
