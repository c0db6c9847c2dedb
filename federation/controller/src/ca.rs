//! The trust domain's CA: its root (created once by the leader and kept in
//! the store, or read from files), the bundle the leader publishes, the pin
//! that join tokens carry, and the bundle digest gateways report.

use std::sync::Arc;
use std::time::Duration;

use causeway_store::{Compare, Store, Txn, WatchEvent};
use causeway_trust::{Authority, Ca, TrustBundle, TrustDomain};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::CaSource;
use crate::error::{ControllerError, Result};
use crate::follow;
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
    pub(crate) fn new(td: TrustDomain, root: Authority) -> Self {
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

/// The CA this replica issues from now. Root rotation replaces it on
/// every replica when the store's `ca/root` changes; each signing loads the
/// current one, and whoever must act on a change (the controller's own
/// SVID) subscribes.
#[derive(Debug, Clone)]
pub struct LiveCa(Arc<watch::Sender<Arc<CaState>>>);

impl LiveCa {
    pub(crate) fn new(state: CaState) -> Self {
        Self(Arc::new(watch::Sender::new(Arc::new(state))))
    }

    /// The CA in effect.
    pub fn current(&self) -> Arc<CaState> {
        self.0.borrow().clone()
    }

    pub(crate) fn changes(&self) -> watch::Receiver<Arc<CaState>> {
        self.0.subscribe()
    }

    /// Takes `state` in use unless it is the root in use already.
    pub(crate) fn replace(&self, state: CaState) -> bool {
        self.0.send_if_modified(|cur| {
            if cur.pin == state.pin {
                return false;
            }
            *cur = Arc::new(state);
            true
        })
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
            Ok(CaState::new(td.clone(), parse_root(keys::ROOT, &stored)?))
        }
    }
}

/// A root as the store keeps it (`ca/root`, `ca/standby`).
pub(crate) fn parse_root(key: &str, value: &[u8]) -> Result<Authority> {
    let root: StoredRoot =
        serde_json::from_slice(value).map_err(|e| ControllerError::corrupt(key, e))?;
    Ok(Authority::from_pem(
        root.cert_pem.as_bytes(),
        root.key_pem.as_bytes(),
    )?)
}

/// A root in the store form.
pub(crate) fn store_form(root: &Authority) -> Result<Vec<u8>> {
    serde_json::to_vec(&StoredRoot {
        cert_pem: root.cert_pem(),
        key_pem: root.key_pem(),
    })
    .map_err(|e| ControllerError::corrupt(keys::ROOT, e))
}

/// Every replica with the root in the store: follows `ca/root` and takes a
/// new root in use the moment the leader switches it (root rotation).
pub(crate) fn follow(store: Arc<dyn Store>, td: TrustDomain, live: LiveCa) -> JoinHandle<()> {
    follow::spawn(store, keys::CA, move |keys| {
        let Some(value) = keys.get(keys::ROOT) else {
            return;
        };
        match parse_root(keys::ROOT, value) {
            Ok(root) => {
                let state = CaState::new(td.clone(), root);
                let pin = state.pin.clone();
                if live.replace(state) {
                    tracing::info!(root = %short(&pin), "issuing from a new root");
                }
            }
            Err(e) => tracing::error!(error = %e, "the stored root cannot be used; keeping ours"),
        }
    })
}

/// The first characters of a pin, for logs and reports.
pub fn short(pin: &str) -> &str {
    pin.get(..12).unwrap_or(pin)
}

/// The roots the own bundle must hold, as one read of the store saw them,
/// and the compares that hold for as long as they are unchanged.
#[derive(Debug, Clone)]
pub(crate) struct StoredRoots {
    /// The issuing root and, during a rotation, the other one.
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// `ca/root` and `ca/standby` are as read.
    unchanged: Vec<Compare>,
}

impl StoredRoots {
    /// The roots whose pin is one of `pins`.
    pub(crate) fn with_pins(&self, pins: &[&String]) -> Vec<CertificateDer<'static>> {
        self.roots
            .iter()
            .filter(|r| pins.iter().any(|p| **p == sha256_hex(r)))
            .cloned()
            .collect()
    }
}

/// The roots the own bundle must hold now: the issuing root, and during a
/// rotation the other one (`ca/standby`). Both keys come from one read, at
/// one revision: a rotation swaps them in one transaction, and two reads
/// on either side of the swap would see the old root twice and the new one
/// never.
pub(crate) async fn bundle_roots(
    store: &Arc<dyn Store>,
    source: &CaSource,
    live: &CaState,
) -> Result<StoredRoots> {
    if let CaSource::Files { .. } = source {
        return Ok(StoredRoots {
            roots: vec![live.root.clone()],
            unchanged: Vec::new(),
        });
    }
    let read = store.list(keys::CA).await?;
    let mut roots = Vec::new();
    let mut unchanged = Vec::new();
    for key in [keys::ROOT, keys::STANDBY] {
        match read.kvs.iter().find(|kv| kv.key == key) {
            Some(kv) => {
                roots.push(parse_root(key, &kv.value)?.cert().clone());
                unchanged.push(Compare::ModRevision(key.into(), kv.mod_revision));
            }
            None => unchanged.push(Compare::Absent(key.into())),
        }
    }
    if roots.is_empty() {
        roots.push(live.root.clone());
    }
    Ok(StoredRoots { roots, unchanged })
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
/// from `roots`, with the next sequence number. Returns the sequence
/// published now or already. The write holds only while the roots are as
/// read: a bundle computed before a rotation's swap and written after it
/// would drop the root that issues; that race is a [`ControllerError::Conflict`].
pub(crate) async fn publish_bundle(
    store: &Arc<dyn Store>,
    fence: Compare,
    td: &TrustDomain,
    roots: StoredRoots,
) -> Result<u64> {
    let wanted = TrustBundle::new(td.clone(), roots.roots);
    let read = store.get(keys::OWN_BUNDLE).await?;
    let (sequence, mod_revision) = match &read.kv {
        Some(kv) => {
            let published: PublishedBundle = serde_json::from_slice(&kv.value)
                .map_err(|e| ControllerError::corrupt(keys::OWN_BUNDLE, e))?;
            let held = TrustBundle::from_json(td.clone(), published.document.as_bytes())
                .map_err(|e| ControllerError::corrupt(keys::OWN_BUNDLE, e))?;
            if bundle_digest(&held) == bundle_digest(&wanted) {
                return Ok(published.sequence);
            }
            (published.sequence + 1, kv.mod_revision)
        }
        None => (1, 0),
    };
    let bundle = wanted.with_sequence(sequence);
    let value = serde_json::to_vec(&PublishedBundle {
        sequence,
        document: bundle.to_json(),
    })
    .map_err(|e| ControllerError::corrupt(keys::OWN_BUNDLE, e))?;
    let txn = roots
        .unchanged
        .into_iter()
        .fold(Txn::new().when(fence), Txn::when)
        .when(Compare::ModRevision(keys::OWN_BUNDLE.into(), mod_revision))
        .put(keys::OWN_BUNDLE, value);
    if !store.txn(txn).await?.applied {
        return Err(ControllerError::Conflict(
            "the published bundle or the stored roots changed meanwhile".into(),
        ));
    }
    let pins: Vec<String> = bundle
        .x509_authorities()
        .iter()
        .map(|r| short(&sha256_hex(r)).to_owned())
        .collect();
    tracing::info!(
        sequence,
        roots = %pins.join(", "),
        "published the trust domain's bundle"
    );
    Ok(sequence)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    /// A bundle computed from the roots before a change of `ca/` is not
    /// written after it: the leader's publish and the rotation's swap run
    /// side by side, and a stale computation would drop the issuing root.
    #[tokio::test]
    async fn a_bundle_of_roots_that_changed_meanwhile_is_not_published() {
        let dir = tempfile::TempDir::new().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            causeway_store::EmbeddedStore::open(dir.path().join("s"))
                .await
                .unwrap(),
        );
        let td = TrustDomain::new("alpha.example").unwrap();
        let ttl = Duration::from_secs(3600);
        let source = CaSource::Store { root_ttl: ttl };
        let fence = Compare::Absent("no-such-key".into());
        let old = Authority::new_root(&td, ttl).unwrap();
        let new = Authority::new_root(&td, ttl).unwrap();
        let put = Txn::new()
            .put(keys::ROOT, store_form(&old).unwrap())
            .put(keys::STANDBY, store_form(&new).unwrap());
        assert!(store.txn(put).await.unwrap().applied);
        let live = load(&store, &td, &source).await.unwrap();

        // Read with both roots; the rotation's swap lands; the write that
        // was computed before it does not.
        let stale = bundle_roots(&store, &source, &live).await.unwrap();
        assert_eq!(stale.roots.len(), 2);
        let swap = Txn::new()
            .put(keys::ROOT, store_form(&new).unwrap())
            .put(keys::STANDBY, store_form(&old).unwrap());
        assert!(store.txn(swap).await.unwrap().applied);
        let e = publish_bundle(&store, fence.clone(), &td, stale)
            .await
            .unwrap_err();
        assert!(matches!(e, ControllerError::Conflict(_)), "{e:?}");
        assert!(published(&store).await.unwrap().is_none());

        // Read again: both roots, published.
        let fresh = bundle_roots(&store, &source, &live).await.unwrap();
        assert_eq!(
            publish_bundle(&store, fence.clone(), &td, fresh)
                .await
                .unwrap(),
            1
        );

        // The old root leaves; a read from before it left writes nothing
        // (it is what is published already).
        let before = bundle_roots(&store, &source, &live).await.unwrap();
        let drop = Txn::new().delete(keys::STANDBY);
        assert!(store.txn(drop).await.unwrap().applied);
        assert_eq!(
            publish_bundle(&store, fence.clone(), &td, before)
                .await
                .unwrap(),
            1
        );
        let after = bundle_roots(&store, &source, &live).await.unwrap();
        assert_eq!(after.roots, vec![new.cert().clone()]);
        assert_eq!(publish_bundle(&store, fence, &td, after).await.unwrap(), 2);
        let doc = published(&store).await.unwrap().unwrap();
        let held = TrustBundle::from_json(td.clone(), doc.document.as_bytes()).unwrap();
        assert_eq!(held.x509_authorities(), [new.cert().clone()]);
    }
}
