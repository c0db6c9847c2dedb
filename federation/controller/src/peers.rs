//! What the controller holds of each peer's bundle, and since when. One
//! record per peering (`peer-bundles/<peering>`), holding the document
//! itself: the config snapshot gives gateways the held bundle, not the
//! peering file's first one.
//!
//! A record starts from the peering's first bundle and then only moves
//! forward: [`record`] refuses another trust domain and a sequence older
//! than the one held. It is written by the leader's refreshers and by
//! whichever replica receives the peer's announcement, each with a
//! compare-and-set on the record, so that two writers never lose a newer
//! bundle to an older one.

use std::collections::BTreeMap;
use std::sync::Arc;

use causeway_resources::ResourceSet;
use causeway_store::{Compare, Store, Txn};
use causeway_trust::{TrustBundle, TrustDomain};
use serde::{Deserialize, Serialize};

use crate::error::{ControllerError, Result};
use crate::keys;
use crate::tokens::now_unix;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HeldPeerBundle {
    pub(crate) trust_domain: String,
    pub(crate) sequence: u64,
    pub(crate) digest: String,
    pub(crate) since_unix: i64,
    /// The SPIFFE bundle document held (empty in records written before
    /// documents were kept: the peering's first bundle stands in).
    #[serde(default)]
    pub(crate) document: String,
}

impl HeldPeerBundle {
    fn of(bundle: &TrustBundle) -> Self {
        Self {
            trust_domain: bundle.trust_domain().to_string(),
            sequence: bundle.sequence().unwrap_or(0),
            digest: bundle.digest(),
            since_unix: now_unix(),
            document: bundle.to_json(),
        }
    }

    /// The bundle held, if the record carries a valid document of `td`.
    pub(crate) fn bundle(&self, td: &TrustDomain) -> Option<TrustBundle> {
        if self.document.is_empty() || self.trust_domain != td.as_str() {
            return None;
        }
        TrustBundle::from_json(td.clone(), self.document.as_bytes()).ok()
    }
}

fn key(peering: &str) -> String {
    format!("{}{peering}", keys::PEER_BUNDLES)
}

pub(crate) async fn read_all(store: &Arc<dyn Store>) -> Result<BTreeMap<String, HeldPeerBundle>> {
    let list = store.list(keys::PEER_BUNDLES).await?;
    let mut out = BTreeMap::new();
    for kv in list.kvs {
        let name = kv.key.trim_start_matches(keys::PEER_BUNDLES).to_owned();
        let held =
            serde_json::from_slice(&kv.value).map_err(|e| ControllerError::corrupt(&kv.key, e))?;
        out.insert(name, held);
    }
    Ok(out)
}

/// The bundle to use for a peering: the held one when it is of the
/// peering's trust domain and not older than the first bundle, else the
/// first bundle.
pub(crate) fn effective(
    p: &causeway_resources::Peering,
    held: Option<&HeldPeerBundle>,
) -> TrustBundle {
    let first = &p.first_bundle.bundle;
    match held.and_then(|h| h.bundle(&p.trust_domain)) {
        Some(h) if h.sequence().unwrap_or(0) >= first.sequence().unwrap_or(0) => h,
        _ => first.clone(),
    }
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Stored: it differs from what was held.
    Updated(HeldPeerBundle),
    /// The same bundle was held already.
    Unchanged(HeldPeerBundle),
    /// Refused: older than the bundle held (the held one stays).
    Older(HeldPeerBundle),
}

impl Recorded {
    pub(crate) fn held(&self) -> &HeldPeerBundle {
        match self {
            Self::Updated(h) | Self::Unchanged(h) | Self::Older(h) => h,
        }
    }
}

/// Stores `bundle` as the one held for `peering` unless it is older than
/// the held one. `fence`: the leader's, when the leader writes. Retries its
/// compare-and-set when another writer got in between.
pub(crate) async fn record(
    store: &Arc<dyn Store>,
    fence: Option<Compare>,
    peering: &str,
    bundle: &TrustBundle,
) -> Result<Recorded> {
    let key = key(peering);
    for _ in 0..8 {
        let read = store.get(&key).await?;
        let (current, mod_revision) = match &read.kv {
            Some(kv) => (
                Some(
                    serde_json::from_slice::<HeldPeerBundle>(&kv.value)
                        .map_err(|e| ControllerError::corrupt(&kv.key, e))?,
                ),
                kv.mod_revision,
            ),
            None => (None, 0),
        };
        let new = HeldPeerBundle::of(bundle);
        if let Some(cur) = &current
            && cur.trust_domain == new.trust_domain
        {
            if cur.digest == new.digest && cur.sequence == new.sequence && !cur.document.is_empty()
            {
                return Ok(Recorded::Unchanged(cur.clone()));
            }
            if new.sequence < cur.sequence {
                return Ok(Recorded::Older(cur.clone()));
            }
        }
        let value = serde_json::to_vec(&new).map_err(|e| ControllerError::corrupt(&key, e))?;
        let mut txn = Txn::new().when(Compare::ModRevision(key.clone(), mod_revision));
        if let Some(f) = &fence {
            txn = txn.when(f.clone());
        }
        if store.txn(txn.put(key.clone(), value)).await?.applied {
            return Ok(Recorded::Updated(new));
        }
        if let Some(f) = &fence
            && !fence_holds(store, f).await?
        {
            return Err(ControllerError::NotLeader);
        }
    }
    Err(ControllerError::Conflict(format!(
        "{key}: kept changing under the write"
    )))
}

async fn fence_holds(store: &Arc<dyn Store>, fence: &Compare) -> Result<bool> {
    Ok(store.txn(Txn::new().when(fence.clone())).await?.applied)
}

/// Leader only: a record for every peering that has none (from its first
/// bundle) or whose first bundle is newer than the held one (the peering
/// was applied again with a newer export), or whose trust domain changed;
/// records of removed peerings go.
pub(crate) async fn sync(store: &Arc<dyn Store>, fence: Compare, set: &ResourceSet) -> Result<()> {
    let held = read_all(store).await?;
    for p in set.peerings() {
        let first = &p.first_bundle.bundle;
        let stale = match held.get(p.name.as_str()) {
            None => true,
            Some(h) => {
                h.trust_domain != p.trust_domain.as_str()
                    || h.document.is_empty()
                    || h.sequence < first.sequence().unwrap_or(0)
            }
        };
        if stale {
            if let Some(h) = held.get(p.name.as_str())
                && h.trust_domain != p.trust_domain.as_str()
            {
                let _ = store
                    .txn(Txn::new().when(fence.clone()).delete(key(p.name.as_str())))
                    .await?;
            }
            record(store, Some(fence.clone()), p.name.as_str(), first).await?;
        }
    }
    let gone: Vec<&String> = held
        .keys()
        .filter(|name| !set.peerings().any(|p| p.name.as_str() == name.as_str()))
        .collect();
    // Two keys per peering, in transactions the store takes.
    for chunk in gone.chunks(causeway_store::MAX_TXN_OPS / 2) {
        let txn = chunk
            .iter()
            .fold(Txn::new().when(fence.clone()), |t, name| {
                t.delete(key(name))
                    .delete(format!("{}{name}", keys::PEER_EXPORTS))
            });
        if !store.txn(txn).await?.applied {
            break;
        }
    }
    Ok(())
}
