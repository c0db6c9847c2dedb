//! What the controller records, as it records it: the benchmark watches the
//! controller's store (the same `Store` the controller runs on, in this
//! process) for the new config version the leader stores and for the
//! stream statuses the config stream writes when an ACK arrives. Each event
//! is timed when the watch delivers it.
//!
//! The keys are the controller's store layout
//! (federation/controller/src/keys.rs); the benchmark only reads them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use causeway_proto::controller::v1 as pb;
use causeway_store::{Store, WatchEvent};
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The compiled snapshot with its version (`keys::SNAPSHOT`).
const SNAPSHOT: &str = "config/snapshot";
/// `connected/<gateway>`: a stream's status (`keys::CONNECTED`).
const CONNECTED: &str = "connected/";

/// A watch whose events are timed as they arrive.
struct Timed {
    rx: mpsc::UnboundedReceiver<(Instant, anyhow::Result<WatchEvent>)>,
    task: JoinHandle<()>,
}

impl Drop for Timed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Timed {
    async fn start(
        store: &Arc<dyn Store>,
        prefix: &'static str,
        from: i64,
    ) -> anyhow::Result<Self> {
        let mut watch = store
            .watch(prefix, from)
            .await
            .with_context(|| format!("watching {prefix} in the controller's store"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(event) = watch.next().await {
                let failed = event.is_err();
                if tx
                    .send((Instant::now(), event.map_err(anyhow::Error::from)))
                    .is_err()
                    || failed
                {
                    return;
                }
            }
        });
        Ok(Self { rx, task })
    }

    async fn next(&mut self) -> anyhow::Result<(Instant, WatchEvent)> {
        match self.rx.recv().await {
            Some((at, Ok(e))) => Ok((at, e)),
            Some((_, Err(e))) => Err(e.context("the store watch broke")),
            None => bail!("the store watch ended"),
        }
    }
}

/// Both watches, started before a change is applied.
pub(crate) struct StoreEvents {
    snapshots: Timed,
    statuses: Timed,
}

/// A config version as the leader stored it.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) at: Instant,
    pub(crate) snapshot: pb::ConfigSnapshot,
    pub(crate) bytes: usize,
}

impl StoreEvents {
    /// Watches from the store's current revision on.
    pub(crate) async fn start(store: &Arc<dyn Store>) -> anyhow::Result<Self> {
        let now = store.get(SNAPSHOT).await?.revision;
        Ok(Self {
            snapshots: Timed::start(store, SNAPSHOT, now + 1).await?,
            statuses: Timed::start(store, CONNECTED, now + 1).await?,
        })
    }

    /// The first version above `above` that the leader stores.
    pub(crate) async fn stored(&mut self, above: u64) -> anyhow::Result<Stored> {
        loop {
            if let (at, WatchEvent::Put(kv)) = self.snapshots.next().await?
                && kv.key == SNAPSHOT
            {
                let s = decode(at, &kv.value)?;
                if s.snapshot.version > above {
                    return Ok(s);
                }
            }
        }
    }

    /// When the controller recorded each of `gateways` as having ACKed
    /// `version` (or a later one).
    pub(crate) async fn recorded(
        &mut self,
        gateways: &[String],
        version: u64,
    ) -> anyhow::Result<BTreeMap<String, Instant>> {
        let mut seen = BTreeMap::new();
        while seen.len() < gateways.len() {
            let (at, WatchEvent::Put(kv)) = self.statuses.next().await? else {
                continue;
            };
            let Some(name) = kv.key.strip_prefix(CONNECTED) else {
                continue;
            };
            if !gateways.iter().any(|g| g == name) || seen.contains_key(name) {
                continue;
            }
            let status: serde_json::Value = serde_json::from_slice(&kv.value)
                .with_context(|| format!("the stream status of {name}"))?;
            if status["acked_version"].as_u64().unwrap_or(0) >= version {
                seen.insert(name.to_owned(), at);
            }
        }
        Ok(seen)
    }
}

fn decode(at: Instant, value: &[u8]) -> anyhow::Result<Stored> {
    let snapshot =
        pb::ConfigSnapshot::decode(value).context("the stored config snapshot does not decode")?;
    Ok(Stored {
        at,
        snapshot,
        bytes: value.len(),
    })
}
