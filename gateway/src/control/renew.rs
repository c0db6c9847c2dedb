//! Renewal: at about half of the SVID's remaining lifetime (±10%), a new
//! key and CSR go to the controller over mutual TLS with the current SVID.
//! A failure is retried with exponential backoff and jitter, each wait at
//! most a quarter of what the SVID has left; until a renewal succeeds the
//! last good SVID stays in use, on disk and in the client, until it
//! expires. Each success writes the new key and chain to
//! the data directory in one rename; the gateway's credential reload task
//! swaps them in for the next handshakes.

use std::sync::Arc;

use causeway_proto::controller::v1::RenewRequest;
use causeway_proto::controller::v1::gateway_api_client::GatewayApiClient;
use tracing::{error, info, warn};

use super::ControlClient;
use super::backoff::{renew_delay, renew_retry_delay, unit_random};
use super::join::{self, Issued, JoinError, error_chain};
use super::tls;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl ControlClient {
    /// Renews once: new key, CSR, Renew over mTLS, answer checked, files
    /// written. Nothing changes on failure.
    pub async fn renew_once(&self) -> Result<Issued, JoinError> {
        let current = self.svid.load_full().ok_or(JoinError::NoSvid)?;
        let address = self.settings.address.clone();
        let unreachable = |detail: String| JoinError::Unreachable {
            address: address.clone(),
            detail,
        };
        let config = tls::mtls_config(
            &current,
            (*self.bundles.load_full()).clone(),
            &self.settings.controller_id,
        )
        .map_err(JoinError::Tls)?;
        let (csr_der, key) = join::csr(&self.settings.gateway_id)?;
        let channel = tls::connect(&self.settings, config, self.options.timeout)
            .await
            .map_err(|e| unreachable(error_chain(&e)))?;
        let response = tokio::time::timeout(
            self.options.timeout,
            GatewayApiClient::new(channel).renew(RenewRequest { csr_der }),
        )
        .await
        .map_err(|_| unreachable("no answer in time".into()))?
        .map_err(|s| JoinError::Refused {
            code: s.code(),
            message: s.message().to_owned(),
        })?
        .into_inner();
        let issued = join::check_response(response, key, &self.settings.gateway_id, None)?;
        self.store_issued(&issued)?;
        Ok(issued)
    }

    /// Renews for ever: waits for the renewal point, renews, retries with
    /// backoff until it succeeds.
    pub(super) async fn renew_loop(self: Arc<Self>) {
        loop {
            let Some(svid) = self.svid.load_full() else {
                // No SVID: nothing to renew with (a join is the caller's).
                return;
            };
            let wait = renew_delay(svid.info().not_after, now_ms(), unit_random());
            tokio::time::sleep(wait).await;
            let mut retry = self.options.renew_backoff.start();
            loop {
                match self.renew_once().await {
                    Ok(issued) => {
                        let i = issued.svid.info();
                        self.metrics.renewal("ok", "renewed");
                        info!(serial = %i.serial, previous_serial = %svid.info().serial,
                            not_after = %crate::reload::rfc3339(i.not_after), "SVID renewed");
                        break;
                    }
                    Err(e) => {
                        self.metrics.renewal("error", e.reason());
                        let current = self.svid.load_full();
                        let expired = current
                            .as_ref()
                            .is_none_or(|s| s.info().not_after < crate::reload::unix_now());
                        let delay = renew_retry_delay(
                            retry.next_delay(),
                            current.as_ref().map_or(0, |s| s.info().not_after),
                            now_ms(),
                        );
                        if expired {
                            error!(reason = e.reason(), retry_in = ?delay,
                                "SVID renewal failed and the SVID has EXPIRED; peers refuse this gateway until a renewal succeeds (or it joins again with a new token): {e}");
                        } else {
                            warn!(reason = e.reason(), retry_in = ?delay,
                                "SVID renewal failed; keeping the SVID in use: {e}");
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
            }
        }
    }
}
