//! Every replica's view of the bundles in the store, kept current by
//! following `bundle/own` and `peer-bundles/`:
//!
//! - our own published bundle: what the bundle endpoint serves, what the
//!   gateway API verifies gateways against, what announcements carry;
//! - the peers' bundles held: what the public port verifies peer
//!   controllers against.
//!
//! One task per prefix owns its part and publishes whole values; readers
//! load them lock-free.

use std::collections::BTreeMap;
use std::sync::Arc;

use causeway_exchange::PublishedBundle as Served;
use causeway_store::Store;
use causeway_trust::{BundleSet, SharedBundles, TrustBundle, TrustDomain};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ca::PublishedBundle;
use crate::follow;
use crate::keys;
use crate::peers::HeldPeerBundle;

/// The bundles this replica serves and verifies with.
#[derive(Debug, Clone)]
pub(crate) struct BundleView {
    /// The document the bundle endpoint serves.
    pub(crate) served: Served,
    /// Our own bundle, for verifying our gateways.
    pub(crate) own: SharedBundles,
    /// Our own bundle, for whoever acts on its changes.
    pub(crate) own_changes: watch::Receiver<TrustBundle>,
    /// The peers' bundles held, for verifying peer controllers.
    pub(crate) peers: SharedBundles,
    /// The records of `peer-bundles/`, by peering name.
    pub(crate) held: watch::Receiver<BTreeMap<String, HeldPeerBundle>>,
}

/// Starts following; `initial` is our bundle until the published one is
/// read (the CA's root, sequence 0).
pub(crate) fn spawn(
    store: &Arc<dyn Store>,
    td: &TrustDomain,
    initial: TrustBundle,
) -> (BundleView, Vec<JoinHandle<()>>) {
    let served = Served::new(&initial);
    let own = SharedBundles::new(BundleSet::from_bundles([initial.clone()]).unwrap_or_default());
    let (own_tx, own_changes) = watch::channel(initial);
    let peers = SharedBundles::new(BundleSet::new());
    let (held_tx, held) = watch::channel(BTreeMap::new());
    let view = BundleView {
        served: served.clone(),
        own: own.clone(),
        own_changes,
        peers: peers.clone(),
        held,
    };

    let td_own = td.clone();
    let own_task = follow::spawn(store.clone(), keys::OWN_BUNDLE, move |keys| {
        let Some(value) = keys.get(keys::OWN_BUNDLE) else {
            return;
        };
        let bundle = serde_json::from_slice::<PublishedBundle>(value)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                TrustBundle::from_json(td_own.clone(), p.document.as_bytes())
                    .map(|b| b.with_sequence(p.sequence))
                    .map_err(|e| e.to_string())
            });
        match bundle {
            Ok(b) if !b.x509_authorities().is_empty() => {
                if own_tx.borrow().digest() == b.digest()
                    && own_tx.borrow().sequence() == b.sequence()
                {
                    return;
                }
                match BundleSet::from_bundles([b.clone()]) {
                    Ok(set) => own.store(set),
                    Err(e) => tracing::error!(error = ?e, "our published bundle has a bad root"),
                }
                served.publish(&b);
                tracing::info!(sequence = ?b.sequence(), digest = %b.digest(), "serving our bundle");
                own_tx.send_replace(b);
            }
            Ok(_) => tracing::error!("our published bundle holds no root"),
            Err(e) => tracing::error!(error = %e, "our published bundle does not parse"),
        }
    });

    let peer_task = follow::spawn(store.clone(), keys::PEER_BUNDLES, move |keys| {
        let mut records = BTreeMap::new();
        let mut set = BundleSet::new();
        for (key, value) in keys {
            let name = key.trim_start_matches(keys::PEER_BUNDLES).to_owned();
            let record = match serde_json::from_slice::<HeldPeerBundle>(value) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(%key, error = %e, "a held peer bundle does not parse");
                    continue;
                }
            };
            if let Some(b) = TrustDomain::new(&record.trust_domain)
                .ok()
                .and_then(|td| record.bundle(&td))
                && let Err(e) = set.insert(b)
            {
                tracing::warn!(%key, error = ?e, "a held peer bundle has a bad root");
            }
            records.insert(name, record);
        }
        peers.store(set);
        held_tx.send_replace(records);
    });
    (view, vec![own_task, peer_task])
}
