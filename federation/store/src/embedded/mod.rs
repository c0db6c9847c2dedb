//! The embedded store: one data directory, one store file, one process.
//!
//! Promises:
//! - durability: a transaction is acknowledged only once its record is
//!   fsynced in the store file (`log.rs`); a process killed at any point
//!   reopens with every acknowledged transaction and no partial one;
//! - revisions keep growing across restarts;
//! - one process at a time: the directory's `LOCK` file is locked
//!   (`File::try_lock`) for as long as the store is open; a second opener,
//!   in another process or this one, gets [`StoreError::Locked`];
//! - leases live in the process. Opening a directory deletes, at one new
//!   revision, every key put with a lease by the previous process: its
//!   leases ended with it;
//! - watches are served in process from an in-memory history
//!   ([`HISTORY_MAX_EVENTS`]); the history of a previous process starts at
//!   the file's snapshot, so a watch from an older revision is
//!   [`StoreError::Compacted`];
//! - a corrupt file is refused with [`StoreError::Corrupt`], never half
//!   read.
//!
//! Disk work runs on tokio's blocking pool, under one mutex that orders
//! every change: check the compares, append and fsync, apply, notify.

mod log;
mod state;

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::log::Log;
use self::state::State;
pub use self::state::{HISTORY_MAX_BYTES, HISTORY_MAX_EVENTS};
use crate::{
    BoxFuture, GetResponse, Lease, LeaseId, ListResponse, Op, Result, Revision, Store, StoreError,
    Txn, TxnResult, Watch, ttl_seconds,
};

/// The name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";
/// How often expired leases are looked for.
const EXPIRY_TICK: Duration = Duration::from_millis(100);

/// A store in a data directory. Cheap to clone; the directory is released
/// when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    core: Mutex<Core>,
    expiry: Mutex<Option<JoinHandle<()>>>,
    _lock: File,
}

#[derive(Debug)]
struct Core {
    state: State,
    log: Log,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Ok(mut expiry) = self.expiry.lock()
            && let Some(task) = expiry.take()
        {
            task.abort();
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`. Needs a tokio runtime, which
    /// runs the lease expiry task.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        let inner = tokio::task::spawn_blocking(move || open_blocking(dir))
            .await
            .map_err(|e| StoreError::Unavailable(format!("opening the store: {e}")))??;
        let inner = Arc::new(inner);
        let task = tokio::spawn(expire_leases(Arc::downgrade(&inner)));
        if let Ok(mut expiry) = inner.expiry.lock() {
            *expiry = Some(task);
        }
        Ok(Self { inner })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Runs `f` on the core under its lock, on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core, Instant) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut core = inner.lock()?;
            f(&mut core, Instant::now())
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

impl Inner {
    fn lock(&self) -> Result<MutexGuard<'_, Core>> {
        self.core.lock().map_err(|_| {
            StoreError::Unavailable("the store's state was poisoned by a panic".into())
        })
    }
}

fn open_blocking(dir: PathBuf) -> Result<Inner> {
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("creating", &dir, e))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::io("opening", &lock_path, e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { path: dir }),
        Err(TryLockError::Error(e)) => return Err(StoreError::io("locking", &lock_path, e)),
    }

    let (mut log, recovered) = Log::open(&dir)?;
    let mut state = State::from_snapshot(recovered.snapshot_revision, recovered.kvs);
    for (revision, ops) in recovered.txns {
        state.apply(revision, ops);
    }
    let orphans = state.leased_keys();
    if !orphans.is_empty() {
        let revision = state.revision() + 1;
        let ops: Vec<Op> = orphans.into_iter().map(|key| Op::Delete { key }).collect();
        tracing::info!(
            keys = ops.len(),
            revision,
            "deleting the keys of the previous process's leases"
        );
        log.append(revision, &ops)?;
        state.apply(revision, ops);
    }
    tracing::debug!(dir = %dir.display(), revision = state.revision(), "embedded store open");
    Ok(Inner {
        dir,
        core: Mutex::new(Core { state, log }),
        expiry: Mutex::new(None),
        _lock: lock,
    })
}

impl Core {
    /// Writes and applies changes at the next revision; returns it.
    fn commit(&mut self, ops: Vec<Op>) -> Result<Revision> {
        let ops = self.state.effective(ops);
        if ops.is_empty() {
            return Ok(self.state.revision());
        }
        let revision = self.state.revision() + 1;
        self.log.append(revision, &ops)?;
        self.state.apply(revision, ops);
        if self.log.wants_compaction() {
            // The transaction is durable already; a failed compaction only
            // leaves a longer file.
            if let Err(e) = self
                .log
                .compact(self.state.revision(), self.state.entries())
            {
                tracing::warn!(error = %e, "compacting the store file failed");
            }
        }
        Ok(revision)
    }

    fn end_lease(&mut self, lease: LeaseId) -> Result<()> {
        let ops = self
            .state
            .end_lease(lease)
            .ok_or(StoreError::LeaseNotFound(lease))?;
        self.commit(ops).map(|_| ())
    }
}

async fn expire_leases(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(EXPIRY_TICK).await;
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let store = EmbeddedStore { inner: strong };
        let ended = store
            .run(|core, now| {
                let expired = core.state.expired_leases(now);
                for lease in &expired {
                    core.end_lease(*lease)?;
                }
                Ok(expired)
            })
            .await;
        drop(store);
        match ended {
            Ok(ended) => {
                for lease in ended {
                    tracing::debug!(%lease, "lease expired");
                }
            }
            Err(e) => tracing::warn!(error = %e, "expiring leases failed"),
        }
    }
}

impl Store for EmbeddedStore {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<GetResponse>> {
        let key = key.to_owned();
        Box::pin(self.run(move |core, _| Ok(core.state.get(&key))))
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<ListResponse>> {
        let prefix = prefix.to_owned();
        Box::pin(self.run(move |core, _| Ok(core.state.list(&prefix))))
    }

    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult>> {
        Box::pin(async move {
            txn.validate()?;
            self.run(move |core, now| {
                core.state.check_leases(&txn.ops, now)?;
                if !core.state.compares_hold(&txn.compares) {
                    return Ok(TxnResult {
                        applied: false,
                        revision: core.state.revision(),
                    });
                }
                let revision = core.commit(txn.ops)?;
                Ok(TxnResult {
                    applied: true,
                    revision,
                })
            })
            .await
        })
    }

    fn grant(&self, ttl: Duration) -> BoxFuture<'_, Result<Lease>> {
        let secs = ttl_seconds(ttl);
        let ttl = Duration::from_secs(secs.unsigned_abs());
        Box::pin(self.run(move |core, now| {
            Ok(Lease {
                id: core.state.grant(ttl, now),
                ttl,
            })
        }))
    }

    fn keep_alive_once(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration>> {
        Box::pin(self.run(move |core, now| core.state.keep_alive(lease, now)))
    }

    fn revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.run(move |core, _| core.end_lease(lease)))
    }

    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: Revision,
    ) -> BoxFuture<'a, Result<Watch>> {
        let prefix = prefix.to_owned();
        Box::pin(self.run(move |core, _| Ok(Watch::new(core.state.watch(&prefix, from_revision)))))
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.run(move |core, _| core.state.compact(revision)))
    }
}
