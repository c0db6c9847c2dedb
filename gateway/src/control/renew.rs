//! Renewal: at about half of the SVID's remaining lifetime (±10%), a new
//! key and CSR go to the controller over mutual TLS with the current SVID.
//! A failure is retried with exponential backoff and jitter, each wait at
//! most a quarter of what the SVID has left; until a renewal succeeds the
//! last good SVID stays in use, on disk and in the client, until it
//! expires. Each success writes the new key and chain to
//! the data directory in one rename; the gateway's credential reload task
//! swaps them in for the next handshakes (told to read them at once).
//!
//! Root rotation: when the last snapshot ACKed names a root the controller
//! issues from (`ConfigSnapshot.svid_root`) and the SVID does not chain to
//! it in the own bundle held, the renewal runs at once instead of at the
//! renewal point, and again (200 ms doubling to 5 s) while the SVID issued
//! still chains elsewhere; then the normal schedule resumes.

use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1::RenewRequest;
use causeway_proto::controller::v1::gateway_api_client::GatewayApiClient;
use causeway_trust::Svid;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::ControlClient;
use super::backoff::{Backoff, MIN_RENEW_RETRY, renew_delay, renew_retry_delay, unit_random};
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

    /// Renews for ever: waits for the renewal point, or for the controller
    /// to name a root the SVID does not chain to, renews, retries with
    /// backoff until it succeeds.
    pub(super) async fn renew_loop(self: Arc<Self>) {
        let mut wanted = self.wanted_root.subscribe();
        loop {
            let Some(svid) = self.svid.load_full() else {
                // No SVID: nothing to renew with (a join is the caller's).
                return;
            };
            // The renewal point is fixed once per SVID: a snapshot naming
            // a root must not push it back.
            let due = Instant::now() + renew_delay(svid.info().not_after, now_ms(), unit_random());
            let cause = loop {
                if let Some(d) = self.root_demand(&svid) {
                    info!(serial = %svid.info().serial, "renewing now: the controller issues from root {}, our SVID chains to {}",
                        d.wanted_short(), d.held_short());
                    break Cause::RootRotation;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(due) => break Cause::Schedule,
                    changed = wanted.changed() => {
                        if changed.is_err() {
                            // The client is going away with its tasks.
                            tokio::time::sleep_until(due).await;
                            break Cause::Schedule;
                        }
                    }
                }
            };
            self.renew_until_done(&svid, cause, &mut wanted).await;
        }
    }

    /// One renewal, retried until it succeeds: with the renewal backoff
    /// after a failure; after a success whose SVID still does not chain to
    /// the root the controller issues from (the replica that answered had
    /// not switched yet), with [`ROOT_RETRY`], never in a busy loop. A
    /// renewal for root rotation stops retrying once the controller no
    /// longer asks for it.
    async fn renew_until_done(
        &self,
        previous: &Svid,
        mut cause: Cause,
        wanted: &mut watch::Receiver<String>,
    ) {
        let mut retry = self.options.renew_backoff.start();
        let mut again = ROOT_RETRY.start();
        loop {
            match self.renew_once().await {
                Ok(issued) => {
                    let i = issued.svid.info();
                    self.metrics.renewal("ok", cause.label());
                    info!(serial = %i.serial, previous_serial = %previous.info().serial,
                        not_after = %crate::creds::rfc3339(i.not_after), cause = cause.label(), "SVID renewed");
                    let Some(d) = self.root_demand(&issued.svid) else {
                        return;
                    };
                    let delay = again.next_delay();
                    warn!(retry_in = ?delay, serial = %i.serial,
                        "the renewed SVID chains to {}, but the controller issues from root {}; renewing again",
                        d.held_short(), d.wanted_short());
                    cause = Cause::RootRotation;
                    // A change of the root wanted is looked at at once.
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        _ = wanted.changed() => {}
                    }
                }
                Err(e) => {
                    self.metrics.renewal("error", e.reason());
                    let current = self.svid.load_full();
                    let expired = current
                        .as_ref()
                        .is_none_or(|s| s.info().not_after < crate::creds::unix_now());
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
            if cause == Cause::RootRotation
                && let Some(current) = self.svid.load_full()
                && self.root_demand(&current).is_none()
            {
                // The controller stopped asking (or the SVID in use
                // already chains to the root wanted): back to the schedule,
                // which renews at once if the SVID is past its point.
                return;
            }
        }
    }
}

/// Retries of a renewal that succeeded but whose SVID does not chain to
/// the root the controller issues from.
pub const ROOT_RETRY: Backoff = Backoff {
    base: MIN_RENEW_RETRY,
    cap: Duration::from_secs(5),
};

/// Why a renewal runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The SVID reached its renewal point.
    Schedule,
    /// The controller issues from another root than the SVID's.
    RootRotation,
}

impl Cause {
    /// The `reason` label of a successful renewal.
    fn label(self) -> &'static str {
        match self {
            Self::Schedule => "renewed",
            Self::RootRotation => "root_rotation",
        }
    }
}
