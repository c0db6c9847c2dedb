//! The config stream: one task per connected gateway. It sends the current
//! snapshot at once and every later version, and records the gateway's
//! ACKs, NACKs and holdings in the store under the serving replica's lease,
//! so a gateway whose stream ends (or whose replica dies) is no longer
//! "connected".

use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_store::{Compare, LeaseId, Revision, Store, Txn};
use causeway_trust::{SvidInfo, TrustDomain};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::forgotten;
use crate::gateways::{Holdings, StreamStatus};
use crate::issuance::peer_gateway;
use crate::keys;
use crate::metrics::Metrics;
use crate::snapshot::Feed;
use crate::tls::PeerCerts;

/// How long a gateway has to say Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) type Outbound = ReceiverStream<Result<pb::ConfigSnapshot, Status>>;

#[derive(Debug, Clone)]
pub(crate) struct Streams {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) feed: Feed,
    pub(crate) metrics: Metrics,
    pub(crate) lease: LeaseId,
    /// This replica's node ID, recorded with each stream's status.
    pub(crate) node: String,
}

impl Streams {
    pub(crate) async fn open(
        &self,
        peer: Option<&PeerCerts>,
        inbound: Streaming<pb::GatewayMessage>,
    ) -> Result<Outbound, Status> {
        let (svid, name) = peer_gateway(&self.trust_domain, peer).ok_or_else(|| {
            Status::unauthenticated("the config stream needs the gateway's SVID (mutual TLS)")
        })?;
        if let Some(t) = forgotten::covering(&self.store, &name, &svid).await?.0 {
            let message = t.refusal(&name);
            tracing::warn!(gateway = %name, serial = %svid.serial, "config stream refused: forgotten");
            return Err(Status::permission_denied(message));
        }
        let (tx, rx) = mpsc::channel(4);
        let run = StreamTask {
            streams: self.clone(),
            name,
            status: StreamStatus {
                spiffe_id: svid.spiffe_id.to_string(),
                replica: self.node.clone(),
                ..StreamStatus::default()
            },
            svid,
            written: None,
            tx,
        };
        tokio::spawn(run.run(inbound));
        Ok(ReceiverStream::new(rx))
    }
}

struct StreamTask {
    streams: Streams,
    name: String,
    status: StreamStatus,
    /// The SVID the gateway connected with.
    svid: SvidInfo,
    /// The revision of our last status write, to delete only our own.
    written: Option<Revision>,
    tx: mpsc::Sender<Result<pb::ConfigSnapshot, Status>>,
}

impl StreamTask {
    async fn run(mut self, mut inbound: Streaming<pb::GatewayMessage>) {
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(pb::GatewayMessage {
                message: Some(pb::gateway_message::Message::Hello(h)),
            }))) => h,
            _ => {
                let _ = self
                    .tx
                    .send(Err(Status::invalid_argument(
                        "the stream must start with a Hello",
                    )))
                    .await;
                return;
            }
        };
        if hello.gateway != self.name {
            let _ = self
                .tx
                .send(Err(Status::permission_denied(format!(
                    "Hello names gateway {:?}, but the SVID is {}",
                    hello.gateway, self.status.spiffe_id
                ))))
                .await;
            return;
        }
        tracing::info!(gateway = %self.name, version = hello.version, "config stream open");
        self.status.acked_version = hello.version;
        if let Some(h) = &hello.holdings {
            self.status.holdings = Holdings::from(h);
        }
        self.write().await;
        // Forgotten between the open and our write of `connected/`: the
        // forget did not see the stream, so the stream must see it.
        match forgotten::covering(&self.streams.store, &self.name, &self.svid).await {
            Ok((None, _)) => {}
            Ok((Some(t), _)) => {
                let _ = self
                    .tx
                    .send(Err(Status::permission_denied(t.refusal(&self.name))))
                    .await;
                return self.close().await;
            }
            Err(e) => {
                let _ = self.tx.send(Err(Status::from(e))).await;
                return self.close().await;
            }
        }
        let mut feed = self.streams.feed.clone();
        let current = feed.borrow_and_update().clone();
        if let Some(snap) = current
            && !self.send(&snap).await
        {
            return self.close().await;
        }
        loop {
            tokio::select! {
                changed = feed.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let snap = feed.borrow_and_update().clone();
                    if let Some(snap) = snap && !self.send(&snap).await {
                        break;
                    }
                }
                msg = inbound.message() => match msg {
                    Ok(Some(m)) => self.receive(m).await,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(gateway = %self.name, error = %e, "config stream broke");
                        break;
                    }
                },
            }
        }
        self.close().await;
    }

    async fn send(&mut self, snap: &pb::ConfigSnapshot) -> bool {
        if self.tx.send(Ok(snap.clone())).await.is_err() {
            return false;
        }
        self.streams
            .metrics
            .config_versions
            .with_label_values(&["pushed"])
            .inc();
        self.status.sent_version = snap.version;
        self.write().await;
        true
    }

    async fn receive(&mut self, m: pb::GatewayMessage) {
        use pb::gateway_message::Message;
        match m.message {
            Some(Message::Ack(ack)) => {
                let metrics = &self.streams.metrics.config_versions;
                if ack.error.is_empty() {
                    metrics.with_label_values(&["ack"]).inc();
                    self.status.acked_version = ack.version;
                    self.status.last_error.clear();
                } else {
                    metrics.with_label_values(&["nack"]).inc();
                    tracing::warn!(gateway = %self.name, version = ack.version, error = %ack.error, "config version refused (NACK)");
                    self.status.last_error = format!("version {}: {}", ack.version, ack.error);
                }
            }
            Some(Message::Holdings(h)) => self.status.holdings = Holdings::from(&h),
            Some(Message::Hello(_)) | None => return,
        }
        self.write().await;
    }

    async fn write(&mut self) {
        let key = format!("{}{}", keys::CONNECTED, self.name);
        let Ok(value) = serde_json::to_vec(&self.status) else {
            return;
        };
        let txn = Txn::new().put_with_lease(key, value, self.streams.lease);
        match self.streams.store.txn(txn).await {
            Ok(r) => self.written = Some(r.revision),
            Err(e) => {
                tracing::warn!(gateway = %self.name, error = %e, "recording the stream status failed")
            }
        }
    }

    async fn close(self) {
        tracing::info!(gateway = %self.name, "config stream closed");
        if let Some(rev) = self.written {
            let key = format!("{}{}", keys::CONNECTED, self.name);
            let txn = Txn::new()
                .when(Compare::ModRevision(key.clone(), rev))
                .delete(key);
            let _ = self.streams.store.txn(txn).await;
        }
    }
}
