//! Leader election on any [`Store`], built from its transactions, leases and
//! watches (the algorithm of etcd's `concurrency` package), so that both
//! backends share one implementation and one behaviour.
//!
//! A candidate puts `<root><name>/<lease id>` with its lease, if absent. The
//! candidate whose key has the lowest create revision leads; the others
//! each wait for the deletion of the key just before theirs, so one
//! departure wakes one candidate. A leader's key is never rewritten, so its
//! create revision is also its mod revision: that number is the fencing
//! token. Tokens of successive leaders only grow.
//!
//! Promises:
//! - at most one [`Leadership`] per election is unlost at a time, as seen
//!   by the store: a write carrying [`Leadership::fence`] applies only while
//!   its holder's key still exists;
//! - a leader learns it lost ([`Leadership::lost`]) when its key is deleted
//!   (resigned elsewhere, lease revoked or expired) or its keep-alive fails
//!   for a whole TTL; it should stop leader-only work then. Fenced writes
//!   keep it safe in the window before it learns.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lease::LeaseLost;
use crate::{Compare, KeepAlive, KeyValue, LeaseId, Result, Revision, Store, StoreError, Txn};

/// Where election keys live, under the store's own keys.
pub const ELECTION_ROOT: &str = "_election/";

/// One election, by name.
#[derive(Debug, Clone)]
pub struct Election {
    store: Arc<dyn Store>,
    prefix: String,
}

/// The current leader of an election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    pub value: Vec<u8>,
    /// The leader's fencing token.
    pub token: Revision,
    pub lease: Option<LeaseId>,
}

/// Why a leadership ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// The leader key is gone: the lease was revoked or expired, or someone
    /// deleted it.
    KeyDeleted,
    /// The leadership's own keep-alive failed.
    Lease(LeaseLost),
    /// [`Leadership::resign`] was called.
    Resigned,
}

impl Election {
    pub fn new(store: Arc<dyn Store>, name: &str) -> Self {
        Self {
            store,
            prefix: format!("{ELECTION_ROOT}{name}/"),
        }
    }

    /// Campaigns with a lease of its own (granted for `ttl`, kept alive by
    /// the returned handle) and waits until elected. Dropping the future
    /// before then withdraws the candidacy.
    pub async fn campaign(&self, value: impl Into<Vec<u8>>, ttl: Duration) -> Result<Leadership> {
        let lease = self.store.grant(ttl).await?;
        let guard = RevokeOnDrop {
            store: Some(self.store.clone()),
            lease: lease.id,
        };
        let keep_alive = KeepAlive::spawn(self.store.clone(), lease.id, lease.ttl);
        let mut leadership = self
            .elect(value.into(), lease.id, Some(&keep_alive))
            .await?;
        leadership.owned_lease = Some(guard);
        leadership.keep_alive = Some(keep_alive);
        leadership.start_monitor();
        Ok(leadership)
    }

    /// Campaigns with a lease the caller holds and keeps alive (one lease
    /// for a process's liveness and its candidacy). Leadership ends when
    /// that lease does; resigning does not revoke it.
    pub async fn campaign_with_lease(
        &self,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Result<Leadership> {
        let mut leadership = self.elect(value.into(), lease, None).await?;
        leadership.start_monitor();
        Ok(leadership)
    }

    /// The current leader, if any.
    pub async fn observe(&self) -> Result<Option<Leader>> {
        let list = self.store.list(&self.prefix).await?;
        Ok(first(&list.kvs).map(|kv| Leader {
            value: kv.value.clone(),
            token: kv.create_revision,
            lease: kv.lease,
        }))
    }

    async fn elect(
        &self,
        value: Vec<u8>,
        lease: LeaseId,
        keep_alive: Option<&KeepAlive>,
    ) -> Result<Leadership> {
        let key = format!("{}{lease}", self.prefix);
        let put = Txn::new()
            .when(Compare::Absent(key.clone()))
            .put_with_lease(key.clone(), value, lease);
        let token = self.store.txn(put).await?.applied_or_conflict()?;
        // Withdraw the key if this future is dropped or fails before the
        // election is won (a campaign with the caller's lease must not leave
        // a candidate behind).
        let mut withdraw = DeleteOnDrop {
            store: Some(self.store.clone()),
            key: key.clone(),
            token,
        };
        loop {
            let list = self.store.list(&self.prefix).await?;
            if !list
                .kvs
                .iter()
                .any(|kv| kv.key == key && kv.mod_revision == token)
            {
                return Err(StoreError::LeaseNotFound(lease));
            }
            let Some(previous) = list
                .kvs
                .iter()
                .filter(|kv| kv.create_revision < token)
                .max_by_key(|kv| kv.create_revision)
            else {
                withdraw.store = None;
                let (tx, lost) = watch::channel(None);
                return Ok(Leadership {
                    store: self.store.clone(),
                    key,
                    token,
                    lease,
                    lost_tx: Some(tx),
                    lost,
                    keep_alive: None,
                    owned_lease: None,
                    monitor: None,
                });
            };
            let previous = previous.key.clone();
            let mut watch = self.store.watch(&self.prefix, list.revision + 1).await?;
            loop {
                let event = match keep_alive {
                    Some(ka) => tokio::select! {
                        event = watch.next() => event,
                        lost = ka.lost() => return Err(lost_error(lease, &lost)),
                    },
                    None => watch.next().await,
                };
                match event {
                    Some(Ok(crate::WatchEvent::Delete { key: gone, .. }))
                        if gone == previous || gone == key =>
                    {
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(StoreError::Compacted { .. })) => break,
                    Some(Err(e)) => return Err(e),
                    None => return Err(StoreError::Unavailable("store closed".into())),
                }
            }
        }
    }
}

/// The leader with the lowest create revision.
fn first(kvs: &[KeyValue]) -> Option<&KeyValue> {
    kvs.iter().min_by_key(|kv| kv.create_revision)
}

fn lost_error(lease: LeaseId, lost: &LeaseLost) -> StoreError {
    match lost {
        LeaseLost::Expired => StoreError::LeaseNotFound(lease),
        LeaseLost::Unreachable(e) => StoreError::Unavailable(e.clone()),
    }
}

/// Being the leader of an election. Dropping it resigns in the background
/// (when a tokio runtime is there); [`Leadership::resign`] does it now.
#[derive(Debug)]
pub struct Leadership {
    store: Arc<dyn Store>,
    key: String,
    token: Revision,
    lease: LeaseId,
    lost_tx: Option<watch::Sender<Option<LostReason>>>,
    lost: watch::Receiver<Option<LostReason>>,
    keep_alive: Option<KeepAlive>,
    owned_lease: Option<RevokeOnDrop>,
    monitor: Option<JoinHandle<()>>,
}

impl Leadership {
    /// The fencing token: the leader key's revision. Greater for every
    /// later leader.
    pub fn token(&self) -> Revision {
        self.token
    }

    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// The compare to put in a write that must apply only while this
    /// leadership holds.
    pub fn fence(&self) -> Compare {
        Compare::ModRevision(self.key.clone(), self.token)
    }

    /// Whether the leadership is known to be lost.
    pub fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Waits until the leadership is lost and says why.
    pub async fn lost(&self) -> LostReason {
        let mut rx = self.lost.clone();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return LostReason::Resigned;
            }
        }
    }

    /// Gives the leadership up: deletes the leader key (if still ours) and
    /// revokes the lease when the campaign granted it.
    pub async fn resign(mut self) -> Result<()> {
        self.stop(LostReason::Resigned);
        let delete = Txn::new().when(self.fence()).delete(self.key.clone());
        let deleted = self.store.txn(delete).await.map(|_| ());
        if let Some(mut owned) = self.owned_lease.take() {
            owned.store = None;
            match self.store.revoke(owned.lease).await {
                Ok(()) | Err(StoreError::LeaseNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        self.key.clear();
        deleted
    }

    fn stop(&mut self, reason: LostReason) {
        if let Some(monitor) = self.monitor.take() {
            monitor.abort();
        }
        self.keep_alive = None;
        if let Some(tx) = self.lost_tx.take() {
            tx.send_if_modified(|lost| {
                if lost.is_none() {
                    *lost = Some(reason);
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Watches the leader key and the keep-alive, and publishes the first
    /// reason the leadership ends.
    fn start_monitor(&mut self) {
        let Some(tx) = self.lost_tx.clone() else {
            return;
        };
        let store = self.store.clone();
        let key = self.key.clone();
        let token = self.token;
        let lease_lost = self.keep_alive.as_ref().map(KeepAlive::lost_receiver);
        self.monitor = Some(tokio::spawn(async move {
            let reason = tokio::select! {
                reason = key_gone(store, key, token) => reason,
                reason = crate::lease::wait_lost(lease_lost) => LostReason::Lease(reason),
            };
            tracing::warn!(?reason, "leadership lost");
            tx.send_if_modified(|lost| {
                if lost.is_none() {
                    *lost = Some(reason);
                    true
                } else {
                    false
                }
            });
        }));
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(monitor) = self.monitor.take() {
            monitor.abort();
        }
        if self.key.is_empty() {
            return;
        }
        // Resign in the background; the owned lease's guard revokes too.
        drop(DeleteOnDrop {
            store: Some(self.store.clone()),
            key: std::mem::take(&mut self.key),
            token: self.token,
        });
    }
}

/// Resolves when the leader key no longer exists at `token`. A broken watch
/// is re-established after checking the key, so a blip of the store is not
/// a lost leadership by itself (the lease decides that).
async fn key_gone(store: Arc<dyn Store>, key: String, token: Revision) -> LostReason {
    let mut from = token + 1;
    loop {
        if let Ok(mut watch) = store.watch(&key, from).await {
            loop {
                match watch.next().await {
                    Some(Ok(crate::WatchEvent::Delete { key: k, .. })) if k == key => {
                        return LostReason::KeyDeleted;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "leader key watch broke");
                        break;
                    }
                    None => break,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        match store.get(&key).await {
            Ok(read) => match read.kv {
                Some(kv) if kv.mod_revision == token => from = read.revision + 1,
                _ => return LostReason::KeyDeleted,
            },
            Err(e) => tracing::debug!(error = %e, "leader key check failed"),
        }
    }
}

/// Deletes a candidate key (if still the same one) in the background.
#[derive(Debug)]
struct DeleteOnDrop {
    store: Option<Arc<dyn Store>>,
    key: String,
    token: Revision,
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let (Some(store), Ok(runtime)) = (self.store.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let key = std::mem::take(&mut self.key);
        let txn = Txn::new()
            .when(Compare::ModRevision(key.clone(), self.token))
            .delete(key);
        runtime.spawn(async move {
            if let Err(e) = store.txn(txn).await {
                tracing::debug!(error = %e, "withdrawing a candidate key failed; its lease will end it");
            }
        });
    }
}

/// Revokes a lease in the background.
#[derive(Debug)]
struct RevokeOnDrop {
    store: Option<Arc<dyn Store>>,
    lease: LeaseId,
}

impl Drop for RevokeOnDrop {
    fn drop(&mut self) {
        let (Some(store), Ok(runtime)) = (self.store.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let lease = self.lease;
        runtime.spawn(async move {
            if let Err(e) = store.revoke(lease).await {
                tracing::debug!(error = %e, %lease, "revoking a lease failed; it will expire");
            }
        });
    }
}
