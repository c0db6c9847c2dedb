//! Following a prefix of the store: the keys under it, handed whole to a
//! callback after the first read and after every change. The read and the
//! watch leave no gap (the watch starts at the revision after the list);
//! a broken watch reads the prefix again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use causeway_store::{Store, WatchEvent};
use tokio::task::JoinHandle;

/// The keys under the prefix and their values.
pub(crate) type Snapshot = BTreeMap<String, Vec<u8>>;

/// Calls `on_change` with everything under `prefix` now and after every
/// change, until the task is aborted.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    prefix: &'static str,
    mut on_change: impl FnMut(&Snapshot) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match store.list(prefix).await {
                Ok(list) => {
                    let mut keys: Snapshot =
                        list.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
                    on_change(&keys);
                    match store.watch(prefix, list.revision + 1).await {
                        Ok(mut watch) => loop {
                            match watch.next().await {
                                Some(Ok(WatchEvent::Put(kv))) => {
                                    keys.insert(kv.key, kv.value);
                                }
                                Some(Ok(WatchEvent::Delete { key, .. })) => {
                                    keys.remove(&key);
                                }
                                Some(Err(e)) => {
                                    tracing::debug!(error = %e, prefix, "watch broke; reading again");
                                    break;
                                }
                                None => break,
                            }
                            on_change(&keys);
                        },
                        Err(e) => tracing::debug!(error = %e, prefix, "watch failed"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, prefix, "reading the store failed"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}
