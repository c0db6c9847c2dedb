//! The config stream. At start the cached snapshot, if any, is applied
//! first, so a gateway restarted while its controller is down serves at
//! once. Then, for ever: connect (mTLS), send Hello (name, the version in
//! effect, what the gateway holds), and for each snapshot: convert and
//! validate, write its bundles, hand the config to the applier, cache it,
//! ACK (or NACK with the reason, the previous config staying in effect).
//! An ACKed snapshot's `svid_root` tells the renewal task which root the
//! controller issues from. Holdings are sent again whenever what the
//! gateway holds changes: at once when the credential reload task swaps an
//! SVID or bundle, after a renewal and after a snapshot, and compared every
//! `holdings_interval` besides. When the stream or
//! the controller goes away, reconnect with backoff; the gateway keeps
//! serving what it has.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arc_swap::ArcSwapOption;
use causeway_proto::controller::v1::gateway_api_client::GatewayApiClient;
use causeway_proto::controller::v1::gateway_message::Message as Outgoing;
use causeway_proto::controller::v1::{Ack, ConfigSnapshot, GatewayMessage, Hello};
use prost::Message as _;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tracing::{error, info, warn};

use super::join::error_chain;
use super::snapshot::{self, Converted};
use super::{Answer, ApplyConfig, Attached, ControlClient, cache, tls};

/// Why a config stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("no SVID to connect with")]
    NoSvid,
    #[error("TLS config: {0}")]
    Tls(String),
    #[error("cannot reach the controller at {address}: {detail}")]
    Unreachable { address: String, detail: String },
    #[error("the controller ended the stream: {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
    #[error("the controller closed the stream")]
    Closed,
}

impl ControlClient {
    pub(super) async fn stream_loop(self: Arc<Self>, applier: Arc<dyn ApplyConfig>) {
        let mut last_applied: Option<Vec<u8>> = None;
        match cache::load(&self.dir) {
            Ok(Some(snap)) => {
                let version = snap.version;
                match self.apply(&snap, applier.as_ref()).await {
                    Ok(()) => {
                        self.metrics.config("cached");
                        info!(
                            version,
                            "serving the cached config until the controller answers"
                        );
                        last_applied = Some(snap.encode_to_vec());
                    }
                    Err(reason) => error!(version, "the cached config cannot be applied: {reason}"),
                }
            }
            Ok(None) => {}
            Err(e) => warn!("ignoring the cached config: {e}"),
        }
        let mut retry = self.options.reconnect_backoff.start();
        loop {
            let result = self
                .stream_once(applier.as_ref(), &mut last_applied, &mut retry)
                .await;
            self.metrics.connected.set(0);
            let delay = retry.next_delay();
            match result {
                Ok(()) | Err(StreamError::Closed) => {
                    info!(retry_in = ?delay, "config stream closed by the controller; reconnecting")
                }
                Err(e) => warn!(retry_in = ?delay,
                    "config stream down, serving the config in effect: {e}"),
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn stream_once(
        &self,
        applier: &dyn ApplyConfig,
        last_applied: &mut Option<Vec<u8>>,
        retry: &mut super::backoff::Retry,
    ) -> Result<(), StreamError> {
        let svid = self.svid.load_full().ok_or(StreamError::NoSvid)?;
        let config = tls::mtls_config(
            &svid,
            (*self.bundles.load_full()).clone(),
            &self.settings.controller_id,
        )
        .map_err(StreamError::Tls)?;
        let unreachable = |detail: String| StreamError::Unreachable {
            address: self.settings.address.clone(),
            detail,
        };
        let channel = match tls::connect(&self.settings, config, self.options.timeout).await {
            Ok(c) => c,
            Err(e) => {
                self.metrics.connects.with_label_values(&["error"]).inc();
                return Err(unreachable(error_chain(&e)));
            }
        };
        let (tx, rx) = mpsc::channel::<GatewayMessage>(8);
        let mut reported = self.holdings();
        let hello = GatewayMessage {
            message: Some(Outgoing::Hello(Hello {
                gateway: self.settings.name.clone(),
                version: self.applied.load(Ordering::Relaxed),
                holdings: Some(reported.clone()),
            })),
        };
        tx.send(hello).await.map_err(|_| StreamError::Closed)?;
        let status = |s: tonic::Status| StreamError::Status {
            code: s.code(),
            message: s.message().to_owned(),
        };
        let mut inbound = tokio::time::timeout(
            self.options.timeout,
            GatewayApiClient::new(channel).stream_config(ReceiverStream::new(rx)),
        )
        .await
        .map_err(|_| unreachable("no answer in time".into()))?
        .map_err(|s| {
            self.metrics.connects.with_label_values(&["error"]).inc();
            status(s)
        })?
        .into_inner();
        self.metrics.connects.with_label_values(&["ok"]).inc();
        self.metrics.connected.set(1);
        info!(controller = %self.settings.address, "config stream up");
        let mut ticks = tokio::time::interval(self.options.holdings_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = CredentialChanges::default();
        loop {
            tokio::select! {
                msg = inbound.message() => {
                    let Some(snap) = msg.map_err(status)? else {
                        return Err(StreamError::Closed);
                    };
                    retry.reset();
                    self.answer(&snap, applier, last_applied, &tx).await?;
                }
                _ = ticks.tick() => {}
                () = self.holdings_due.notified() => {}
                () = changes.next(&self.attached) => {}
            }
            // Whatever woke the loop, what the gateway holds may have
            // changed: report it at once (the tick is the fallback).
            let now = self.holdings();
            if now != reported {
                let msg = GatewayMessage {
                    message: Some(Outgoing::Holdings(now.clone())),
                };
                tx.send(msg).await.map_err(|_| StreamError::Closed)?;
                reported = now;
            }
        }
    }

    /// Applies one snapshot from the stream (unless it is the one in effect)
    /// and answers it; an ACKed snapshot's `svid_root` becomes the root the
    /// renewal task works towards.
    async fn answer(
        &self,
        snap: &ConfigSnapshot,
        applier: &dyn ApplyConfig,
        last_applied: &mut Option<Vec<u8>>,
        tx: &mpsc::Sender<GatewayMessage>,
    ) -> Result<(), StreamError> {
        let version = snap.version;
        let bytes = snap.encode_to_vec();
        let result = if last_applied.as_ref() == Some(&bytes) {
            self.metrics.config("unchanged");
            Ok(())
        } else {
            self.apply(snap, applier).await
        };
        let error = match result {
            Ok(()) => {
                *last_applied = Some(bytes);
                String::new()
            }
            Err(reason) => reason,
        };
        let refused = (!error.is_empty()).then(|| error.clone());
        let ack = GatewayMessage {
            message: Some(Outgoing::Ack(Ack { version, error })),
        };
        tx.send(ack).await.map_err(|_| StreamError::Closed)?;
        self.answers.send_replace(Some(Answer {
            version,
            refused: refused.clone(),
            at: Instant::now(),
        }));
        if refused.is_none() {
            self.want_root(&snap.svid_root);
        }
        Ok(())
    }

    /// Converts, validates, writes the bundles, applies and caches one
    /// snapshot; `Err` is the NACK reason, and then the config in effect
    /// stays.
    pub async fn apply(
        &self,
        snap: &ConfigSnapshot,
        applier: &dyn ApplyConfig,
    ) -> Result<(), String> {
        let version = snap.version;
        let resolved = match resolve_peer_names(snap).await {
            Ok(r) => r,
            Err(e) => return Err(self.refused(version, e)),
        };
        let snap = resolved.as_ref().unwrap_or(snap);
        let held = self.bundles.load_full();
        let converted = snapshot::convert(&self.template, &self.base, snap, |td| {
            held.get(td).is_some()
        });
        let Converted {
            config, bundles, ..
        } = match converted {
            Ok(c) => c,
            Err(e) => return Err(self.refused(version, e.to_string())),
        };
        for b in &bundles {
            if let Err(e) = self.dir.write_bundle(b) {
                return Err(self.refused(version, format!("cannot write a bundle: {e}")));
            }
        }
        self.hold_bundles(&bundles);
        if let Err(reason) = applier.apply(config).await {
            return Err(self.refused(version, reason));
        }
        self.applied.store(version, Ordering::Relaxed);
        self.metrics
            .config_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.metrics.config("applied");
        if let Err(e) = cache::store(&self.dir, snap) {
            // Applied all the same; a restart would serve the previous cache.
            warn!(version, "cannot cache the config applied: {e}");
        }
        info!(version, "config applied");
        // The bundles written are read by the reload task now.
        self.files_written();
        Ok(())
    }

    fn refused(&self, version: u64, reason: String) -> String {
        self.metrics.config("refused");
        warn!(
            version,
            "config refused, keeping the config in effect: {reason}"
        );
        reason
    }
}

/// Changes of the running gateway's credentials, once the client is
/// attached to one: the reload task swapped an SVID or a bundle.
#[derive(Default)]
struct CredentialChanges {
    from: Option<Arc<Attached>>,
    changes: Option<watch::Receiver<u64>>,
}

impl CredentialChanges {
    /// Returns at the next change, or at once when the client was attached
    /// (again) since the last call; never while it is not attached.
    async fn next(&mut self, attached: &ArcSwapOption<Attached>) {
        let current = attached.load_full();
        let same = match (&self.from, &current) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.changes = current.as_ref().map(|a| a.credentials.changes());
            self.from = current;
            return;
        }
        let alive = match self.changes.as_mut() {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        };
        if !alive {
            // Not attached, or the gateway is gone: the tick goes on.
            std::future::pending::<()>().await;
        }
    }
}

/// How long resolving one peer gateway's host name may take.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Peer gateway addresses given as `host:port` names, resolved: the data
/// plane dials IP addresses. `None` when every address is one already. A
/// name that does not resolve refuses the version (the config in effect
/// stays); names are resolved again with every version.
async fn resolve_peer_names(snap: &ConfigSnapshot) -> Result<Option<ConfigSnapshot>, String> {
    let named = snap.peers.iter().any(|p| {
        p.gateways
            .iter()
            .any(|g| g.address.parse::<std::net::SocketAddr>().is_err())
    });
    if !named {
        return Ok(None);
    }
    let mut out = snap.clone();
    for (i, p) in out.peers.iter_mut().enumerate() {
        for (j, g) in p.gateways.iter_mut().enumerate() {
            if g.address.parse::<std::net::SocketAddr>().is_ok() {
                continue;
            }
            let at = format!("peers[{i}].gateways[{j}].address");
            let found =
                tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host(g.address.as_str()))
                    .await
                    .map_err(|_| format!("{at}: resolving {} timed out", g.address))?
                    .map_err(|e| format!("{at}: cannot resolve {}: {e}", g.address))?
                    .collect::<Vec<_>>();
            // IPv4 first: the peer socket's family is chosen at start.
            let pick = found
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| found.first())
                .ok_or_else(|| format!("{at}: {} resolves to no address", g.address))?;
            tracing::debug!(name = %g.address, address = %pick, "resolved a peer gateway");
            g.address = pick.to_string();
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod resolve_tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use causeway_proto::controller::v1 as pb;

    use super::*;

    fn snap(addresses: &[&str]) -> ConfigSnapshot {
        ConfigSnapshot {
            peers: vec![pb::Peer {
                name: "west".into(),
                trust_domain: "west.globex.example".into(),
                gateways: addresses
                    .iter()
                    .map(|a| pb::PeerGateway {
                        address: (*a).into(),
                        id: "spiffe://west.globex.example/causeway/gateway/w".into(),
                    })
                    .collect(),
            }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn peer_host_names_resolve_and_bad_ones_refuse_the_version() {
        assert!(
            resolve_peer_names(&snap(&["127.0.0.1:15443"]))
                .await
                .unwrap()
                .is_none()
        );
        let r = resolve_peer_names(&snap(&["localhost:15443", "127.0.0.2:1"]))
            .await
            .unwrap()
            .unwrap();
        let got: Vec<&str> = r.peers[0]
            .gateways
            .iter()
            .map(|g| g.address.as_str())
            .collect();
        assert!(
            ["127.0.0.1:15443", "[::1]:15443"].contains(&got[0]),
            "{got:?}"
        );
        assert_eq!(got[1], "127.0.0.2:1");
        let e = resolve_peer_names(&snap(&["no-such-host.invalid:1"]))
            .await
            .unwrap_err();
        assert!(e.starts_with("peers[0].gateways[0].address"), "{e}");
    }
}
