#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The store suite against the embedded store.

mod suite;

use std::sync::Arc;
use std::time::Duration;

use causeway_store::{EmbeddedStore, Store, StoreError};
use tempfile::TempDir;

struct EmbeddedBackend {
    store: Option<Arc<dyn Store>>,
    dir: TempDir,
}

/// Opens the directory, waiting out the previous handle of this process:
/// its lease-expiry task may hold the store for one last tick after the
/// handle is dropped.
async fn reopen(dir: &std::path::Path) -> EmbeddedStore {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        match EmbeddedStore::open(dir).await {
            Err(StoreError::Locked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other.expect("open the store"),
        }
    }
}

impl suite::Backend for EmbeddedBackend {
    const LEASES_SURVIVE_RESTART: bool = false;

    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).await.unwrap();
        Self {
            store: Some(Arc::new(store)),
            dir,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("store open")
    }

    async fn restart(&mut self) {
        self.store = None;
        self.store = Some(Arc::new(reopen(self.dir.path()).await));
    }
}

store_suite!(EmbeddedBackend);
