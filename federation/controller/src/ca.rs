//! The trust domain's CA: its root (created once by the leader and kept in
//! the store, or read from files), the bundle the leader publishes, the pin
//! that join tokens carry, and the bundle digest gateways report.

use std::sync::Arc;
use std::time::Duration;

use causeway_store::{Compare, Store, Txn, WatchEvent};
use causeway_trust::{Authority, Ca, TrustBundle, TrustDomain};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::config::CaSource;
use crate::error::{ControllerError, Result};
use crate::keys;

/// The root as the store keeps it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredRoot {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

/// The trust domain's own bundle as the leader publishes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PublishedBundle {
    pub sequence: u64,
    pub document: String,
}

/// What every replica signs with.
#[derive(Debug)]
pub struct CaState {
    pub ca: Ca,
    pub root: CertificateDer<'static>,
    /// Lower-case hex SHA-256 of the root's DER: what join tokens pin.
    pub pin: String,
}

impl CaState {
    fn new(td: TrustDomain, root: Authority) -> Self {
        let der = root.cert().clone();
        Self {
            pin: sha256_hex(&der),
            root: der,
            ca: Ca::with_root(td, root),
        }
    }

    /// The own bundle (without sequence): what gateways and the controller
    /// verify SVIDs of this domain with.
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::new(self.ca.trust_domain().clone(), vec![self.root.clone()])
    }
}

pub use causeway_trust::hash::{hex, sha256_hex};

/// A bundle's digest as the config stream and every report carry it: the
/// trust core's [`TrustBundle::digest`], independent of the authorities'
/// order, the sequence and the refresh hint.
pub fn bundle_digest(bundle: &TrustBundle) -> String {
    bundle.digest()
}

/// Leader only: creates the root if the store holds none. The compare on
/// the key's absence means two leaders (one deposed but not yet aware) can
/// never leave two roots; the fence keeps a deposed leader from writing.
pub(crate) async fn ensure_root(
    store: &Arc<dyn Store>,
    fence: Compare,
    td: &TrustDomain,
    ttl: Duration,
) -> Result<()> {
    if store.get(keys::ROOT).await?.kv.is_some() {
        return Ok(());
    }
    let root = Authority::new_root(td, ttl)?;
    let stored = StoredRoot {
        cert_pem: root.cert_pem(),
        key_pem: root.key_pem(),
    };
    let value = serde_json::to_vec(&stored).map_err(|e| ControllerError::corrupt(keys::ROOT, e))?;
    let txn = Txn::new()
        .when(fence)
        .when(Compare::Absent(keys::ROOT.into()))
        .put(keys::ROOT, value);
    if store.txn(txn).await?.applied {
        tracing::info!(trust_domain = %td, "created the trust domain's root");
    }
    Ok(())
}

/// Every replica: the CA from files, or the root in the store (waiting for
/// the leader to create it).
pub(crate) async fn load(
    store: &Arc<dyn Store>,
    td: &TrustDomain,
    source: &CaSource,
) -> Result<CaState> {
    match source {
        CaSource::Files { cert, key } => {
            let read = |p: &std::path::Path| {
                std::fs::read(p)
                    .map_err(|e| ControllerError::io(format!("read {}", p.display()), e))
            };
            let root = Authority::from_pem(&read(cert)?, &read(key)?)?;
            Ok(CaState::new(td.clone(), root))
        }
        CaSource::Store { .. } => {
            let stored = wait_for(store, keys::ROOT).await?;
            let root: StoredRoot = serde_json::from_slice(&stored)
                .map_err(|e| ControllerError::corrupt(keys::ROOT, e))?;
            let root = Authority::from_pem(root.cert_pem.as_bytes(), root.key_pem.as_bytes())?;
            Ok(CaState::new(td.clone(), root))
        }
    }
}

/// The value of `key`, waiting until it exists.
pub(crate) async fn wait_for(store: &Arc<dyn Store>, key: &str) -> Result<Vec<u8>> {
    loop {
        let read = store.get(key).await?;
        if let Some(kv) = read.kv {
            return Ok(kv.value);
        }
        let mut watch = store.watch(key, read.revision + 1).await?;
        loop {
            match watch.next().await {
                Some(Ok(WatchEvent::Put(kv))) if kv.key == key => return Ok(kv.value),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, key, "watch broke; reading again");
                    break;
                }
                None => break,
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Leader only: publishes the own bundle when what is published differs
/// from the CA's roots, with the next sequence number.
pub(crate) async fn publish_bundle(
    store: &Arc<dyn Store>,
    fence: Compare,
    ca: &CaState,
) -> Result<()> {
    let read = store.get(keys::OWN_BUNDLE).await?;
    let (sequence, mod_revision) = match &read.kv {
        Some(kv) => {
            let published: PublishedBundle = serde_json::from_slice(&kv.value)
                .map_err(|e| ControllerError::corrupt(keys::OWN_BUNDLE, e))?;
            let held =
                TrustBundle::from_json(ca.ca.trust_domain().clone(), published.document.as_bytes())
                    .map_err(|e| ControllerError::corrupt(keys::OWN_BUNDLE, e))?;
            if bundle_digest(&held) == bundle_digest(&ca.bundle()) {
                return Ok(());
            }
            (published.sequence + 1, kv.mod_revision)
        }
        None => (1, 0),
    };
    let bundle = ca.bundle().with_sequence(sequence);
    let value = serde_json::to_vec(&PublishedBundle {
        sequence,
        document: bundle.to_json(),
    })
    .map_err(|e| ControllerError::corrupt(keys::OWN_BUNDLE, e))?;
    let txn = Txn::new()
        .when(fence)
        .when(Compare::ModRevision(keys::OWN_BUNDLE.into(), mod_revision))
        .put(keys::OWN_BUNDLE, value);
    if store.txn(txn).await?.applied {
        tracing::info!(sequence, "published the trust domain's bundle");
    }
    Ok(())
}

/// The published own bundle, if any.
pub(crate) async fn published(store: &Arc<dyn Store>) -> Result<Option<PublishedBundle>> {
    match store.get(keys::OWN_BUNDLE).await?.kv {
        Some(kv) => serde_json::from_slice(&kv.value)
            .map(Some)
            .map_err(|e| ControllerError::corrupt(keys::OWN_BUNDLE, e)),
        None => Ok(None),
    }
}
