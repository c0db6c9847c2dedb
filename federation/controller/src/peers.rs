//! What the controller holds of each peer's bundle, and since when: the
//! leader records it whenever a peering's bundle appears or changes, so
//! `peer list` and the metrics can tell its age. (Refreshing it from the
//! peer's bundle endpoint comes with controller-to-controller federation.)

use std::collections::BTreeMap;
use std::sync::Arc;

use causeway_resources::ResourceSet;
use causeway_store::{Compare, Store, Txn};
use serde::{Deserialize, Serialize};

use crate::ca::bundle_digest;
use crate::error::{ControllerError, Result};
use crate::keys;
use crate::tokens::now_unix;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct HeldPeerBundle {
    pub(crate) trust_domain: String,
    pub(crate) sequence: u64,
    pub(crate) digest: String,
    pub(crate) since_unix: i64,
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

/// Leader only: one record per peering, updated when its bundle changes,
/// removed with the peering.
pub(crate) async fn sync(store: &Arc<dyn Store>, fence: Compare, set: &ResourceSet) -> Result<()> {
    let held = read_all(store).await?;
    let mut txn = Txn::new().when(fence);
    for p in set.peerings() {
        let b = &p.first_bundle.bundle;
        let digest = bundle_digest(b);
        let sequence = b.sequence().unwrap_or(0);
        match held.get(p.name.as_str()) {
            Some(h) if h.digest == digest && h.sequence == sequence => {}
            _ => {
                let record = HeldPeerBundle {
                    trust_domain: p.trust_domain.to_string(),
                    sequence,
                    digest,
                    since_unix: now_unix(),
                };
                let key = format!("{}{}", keys::PEER_BUNDLES, p.name);
                let value =
                    serde_json::to_vec(&record).map_err(|e| ControllerError::corrupt(&key, e))?;
                txn = txn.put(key, value);
            }
        }
    }
    for name in held.keys() {
        if !set.peerings().any(|p| p.name.as_str() == name) {
            txn = txn.delete(format!("{}{name}", keys::PEER_BUNDLES));
        }
    }
    if !txn.ops.is_empty() {
        let _ = store.txn(txn).await?;
    }
    Ok(())
}
