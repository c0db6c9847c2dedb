//! Keeping a lease alive, the same way on every backend.
//!
//! A [`KeepAlive`] is a task that restarts the lease's TTL every third of
//! it. It promises to report the lease as lost ([`KeepAlive::lost`]) when
//! the store says the lease is gone, or when no keep-alive succeeded for a
//! whole TTL (the store is unreachable, so the lease must be presumed
//! expired). Dropping it stops the keep-alives: the lease then ends at its
//! TTL unless revoked sooner.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{LeaseId, Store, StoreError};

/// Why a lease is no longer held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseLost {
    /// The store says the lease is gone (expired or revoked).
    Expired,
    /// No keep-alive succeeded for a whole TTL; the last error.
    Unreachable(String),
}

/// Keeps a lease alive until dropped.
#[derive(Debug)]
pub struct KeepAlive {
    lease: LeaseId,
    lost: watch::Receiver<Option<LeaseLost>>,
    task: JoinHandle<()>,
}

impl KeepAlive {
    /// Starts keeping `lease` (granted for `ttl`) alive. Needs a tokio
    /// runtime.
    pub fn spawn(store: Arc<dyn Store>, lease: LeaseId, ttl: Duration) -> Self {
        let (tx, lost) = watch::channel(None);
        let task = tokio::spawn(run(store, lease, ttl, tx));
        Self { lease, lost, task }
    }

    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// Whether the lease is known to be lost.
    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Waits until the lease is lost and says why.
    pub async fn lost(&self) -> LeaseLost {
        wait_lost(Some(self.lost.clone())).await
    }

    pub(crate) fn lost_receiver(&self) -> watch::Receiver<Option<LeaseLost>> {
        self.lost.clone()
    }
}

/// Waits for a lease-lost verdict; forever when there is no keep-alive.
pub(crate) async fn wait_lost(rx: Option<watch::Receiver<Option<LeaseLost>>>) -> LeaseLost {
    let Some(mut rx) = rx else {
        return std::future::pending().await;
    };
    loop {
        if let Some(reason) = rx.borrow_and_update().clone() {
            return reason;
        }
        if rx.changed().await.is_err() {
            // The task ended without a verdict: only when aborted, which
            // happens when its `KeepAlive` is dropped.
            return LeaseLost::Unreachable("keep-alive stopped".into());
        }
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    store: Arc<dyn Store>,
    lease: LeaseId,
    ttl: Duration,
    tx: watch::Sender<Option<LeaseLost>>,
) {
    let period = (ttl / 3).max(Duration::from_millis(100));
    let retry = (period / 4).max(Duration::from_millis(50));
    let mut deadline = Instant::now() + ttl;
    let mut wait = period;
    loop {
        tokio::time::sleep(wait).await;
        let attempt = tokio::time::timeout(period, store.keep_alive_once(lease)).await;
        let error = match attempt {
            Ok(Ok(granted)) => {
                deadline = Instant::now() + granted;
                wait = period;
                continue;
            }
            Ok(Err(StoreError::LeaseNotFound(_))) => {
                tracing::warn!(%lease, "lease expired");
                let _ = tx.send(Some(LeaseLost::Expired));
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("keep-alive took longer than {period:?}"),
        };
        if Instant::now() >= deadline {
            tracing::warn!(%lease, %error, "no keep-alive succeeded for a whole TTL");
            let _ = tx.send(Some(LeaseLost::Unreachable(error)));
            return;
        }
        tracing::debug!(%lease, %error, "keep-alive failed, retrying");
        wait = retry;
    }
}
