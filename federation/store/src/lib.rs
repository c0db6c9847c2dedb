//! The federation controller's store: every piece of controller state lives
//! behind the [`Store`] trait, with two implementations that pass one test
//! suite:
//!
//! - [`EtcdStore`] (`etcd.rs`): etcd v3 through `etcd-client`, for
//!   production and several controller replicas. Keys live under a namespace
//!   per trust domain, so two controllers can share one etcd.
//! - [`EmbeddedStore`] (`embedded/`): a single file in a data directory,
//!   for one machine and the demo.
//!
//! # The model (etcd's, kept by both backends)
//!
//! - Keys are UTF-8 strings, values are bytes. Every change bumps the store
//!   **revision** by one (all the changes of one transaction share it); a key
//!   carries the revision that created it and the one that last changed it.
//!   Revisions only grow, across restarts too.
//! - Every write is a [`Txn`]: compares ([`Compare`]) and operations
//!   ([`Op`]), applied atomically only if every compare holds. That is the
//!   compare-and-set the controller builds every update on.
//! - A [`Watch`] from revision `R + 1` after a read at revision `R` sees every
//!   later change and none twice: list, then watch from `list.revision + 1`.
//!   History older than the store's compaction point is gone: such a watch
//!   yields [`StoreError::Compacted`] as its first item.
//! - Leases ([`Store::grant`]) expire unless kept alive ([`KeepAlive`]);
//!   keys put with a lease are deleted when it ends, and watchers see those
//!   deletes.
//! - Leader election ([`Election`]) is built once, on the trait's own
//!   transactions, leases and watches, so both backends share its code and
//!   its semantics. Its fencing token ([`Leadership::fence`]) is a compare
//!   that a leader puts in its writes.
//!
//! # Why a trait object
//!
//! The controller picks its backend from its config at run time and hands
//! the same `Arc<dyn Store>` to its tasks, to the election and to test
//! doubles that inject faults. So [`Store`] is object safe: its methods
//! return boxed futures, and watches are a channel receiver ([`Watch`])
//! rather than a generic stream. An enum of the two backends would save one
//! allocation per call, which is nothing next to an fsync or a network round
//! trip, and would close the door to wrappers.
//!
//! # What differs between the backends
//!
//! - Leases of the embedded store live in its process: when it reopens a
//!   directory, the keys put with a lease of the previous process are
//!   deleted at once (one new revision). etcd keeps a lease across a client
//!   or server restart until its TTL runs out.
//! - The embedded store keeps a bounded history in memory for watches (the
//!   changes since the last file compaction, at most [`embedded::HISTORY_MAX_EVENTS`]);
//!   etcd keeps its history until it is compacted.
//! - The embedded store is one process: a second process opening the same
//!   directory gets [`StoreError::Locked`].

mod election;
pub mod embedded;
mod error;
mod etcd;
mod lease;
#[cfg(feature = "testing")]
pub mod testing;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::mpsc;

pub use election::{ELECTION_ROOT, Election, Leader, Leadership, LostReason};
pub use embedded::EmbeddedStore;
pub use error::{Result, StoreError};
pub use etcd::{EtcdConfig, EtcdStore, EtcdTls};
pub use lease::{KeepAlive, LeaseLost};

/// A boxed future, so that [`Store`] can be used as `dyn Store`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store revision. The first revision of an empty store is 1.
pub type Revision = i64;

/// The largest value a put may carry.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// The largest transaction: the sum of its keys and values. etcd refuses
/// requests over 1.5 MiB by default; both backends refuse a transaction
/// over this limit before sending or writing anything.
pub const MAX_TXN_BYTES: usize = 1024 * 1024 + 64 * 1024;

/// The most operations, and separately the most compares, one transaction
/// may hold: etcd's default `--max-txn-ops`. Both backends refuse more
/// before sending or writing anything; callers with more to change split
/// the work or say so.
pub const MAX_TXN_OPS: usize = 128;

/// A lease, by its id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A granted lease: its id and the TTL the store granted (whole seconds, at
/// least one; etcd may grant more than asked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: LeaseId,
    pub ttl: Duration,
}

/// A key and its value, with the revisions that created and last changed it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub lease: Option<LeaseId>,
}

impl fmt::Debug for KeyValue {
    // Values may be large: show their size, not their bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("lease", &self.lease)
            .finish()
    }
}

/// A read of one key, and the store revision the read saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResponse {
    pub kv: Option<KeyValue>,
    pub revision: Revision,
}

/// Every key under a prefix, sorted by key, and the store revision the read
/// saw (one consistent snapshot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListResponse {
    pub kvs: Vec<KeyValue>,
    pub revision: Revision,
}

/// A condition of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key does not exist.
    Absent(String),
    /// The key was last changed at this revision. A missing key's mod
    /// revision is 0 (as in etcd), so `ModRevision(key, 0)` is `Absent(key)`:
    /// a read-modify-write loop can use the revision it read either way.
    ModRevision(String, Revision),
    /// The key exists and holds exactly this value.
    Value(String, Vec<u8>),
}

impl Compare {
    pub fn key(&self) -> &str {
        match self {
            Compare::Absent(k) | Compare::ModRevision(k, _) | Compare::Value(k, _) => k,
        }
    }
}

/// A change in a transaction.
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: Option<LeaseId>,
    },
    /// Deleting a key that does not exist is not an error and changes
    /// nothing.
    Delete { key: String },
}

impl Op {
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Put { key, value, lease } => f
                .debug_struct("Put")
                .field("key", key)
                .field("value_len", &value.len())
                .field("lease", lease)
                .finish(),
            Op::Delete { key } => f.debug_struct("Delete").field("key", key).finish(),
        }
    }
}

/// A transaction: its operations are applied together, at one revision, if
/// and only if every compare holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub ops: Vec<Op>,
}

impl Txn {
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }

    #[must_use]
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
            lease: None,
        });
        self
    }

    #[must_use]
    pub fn put_with_lease(
        mut self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        lease: LeaseId,
    ) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
            lease: Some(lease),
        });
        self
    }

    #[must_use]
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }

    /// The checks both backends make before anything is sent or written, so
    /// that they refuse the same transactions: no empty key, no key changed
    /// twice, values and the whole within [`MAX_VALUE_BYTES`] and
    /// [`MAX_TXN_BYTES`], at most [`MAX_TXN_OPS`] operations and as many
    /// compares.
    pub fn validate(&self) -> Result<()> {
        for (what, count) in [
            ("operations", self.ops.len()),
            ("compares", self.compares.len()),
        ] {
            if count > MAX_TXN_OPS {
                return Err(StoreError::TooManyOps {
                    what,
                    count,
                    max: MAX_TXN_OPS,
                });
            }
        }
        let mut total = 0usize;
        let mut seen = std::collections::HashSet::new();
        for compare in &self.compares {
            if compare.key().is_empty() {
                return Err(StoreError::InvalidTxn("empty key in a compare".into()));
            }
        }
        for op in &self.ops {
            let key = op.key();
            if key.is_empty() {
                return Err(StoreError::InvalidTxn("empty key in an operation".into()));
            }
            if !seen.insert(key) {
                return Err(StoreError::InvalidTxn(format!(
                    "key {key:?} is changed twice in one transaction"
                )));
            }
            total = total.saturating_add(key.len());
            if let Op::Put { value, .. } = op {
                if value.len() > MAX_VALUE_BYTES {
                    return Err(StoreError::TooLarge {
                        what: format!("value of {key:?}"),
                        size: value.len(),
                        max: MAX_VALUE_BYTES,
                    });
                }
                total = total.saturating_add(value.len());
            }
        }
        if total > MAX_TXN_BYTES {
            return Err(StoreError::TooLarge {
                what: "transaction".into(),
                size: total,
                max: MAX_TXN_BYTES,
            });
        }
        Ok(())
    }
}

/// The outcome of a transaction: whether it was applied, and the store
/// revision after it (the revision of its changes when it was applied and
/// changed something).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct TxnResult {
    pub applied: bool,
    pub revision: Revision,
}

impl TxnResult {
    /// The revision, or [`StoreError::Conflict`] when a compare did not hold.
    pub fn applied_or_conflict(self) -> Result<Revision> {
        if self.applied {
            Ok(self.revision)
        } else {
            Err(StoreError::Conflict)
        }
    }
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key's new value; `kv.mod_revision` is the change's revision.
    Put(KeyValue),
    /// The key was deleted at `revision` (by a delete or its lease ending).
    Delete { key: String, revision: Revision },
}

impl WatchEvent {
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

/// The changes under a prefix, in revision order. Dropping it cancels the
/// watch.
///
/// An error is the last item: [`StoreError::Compacted`] when the start
/// revision's history is gone, [`StoreError::Unavailable`] when the store
/// connection broke. Recover by listing again and watching from the list's
/// revision + 1. Events wait in memory until read: a consumer is expected
/// to keep up.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::UnboundedReceiver<Result<WatchEvent>>,
}

impl Watch {
    pub(crate) fn new(rx: mpsc::UnboundedReceiver<Result<WatchEvent>>) -> Self {
        Self { rx }
    }

    /// The next change; `None` when the store is gone or after an error.
    pub async fn next(&mut self) -> Option<Result<WatchEvent>> {
        self.rx.recv().await
    }
}

/// The controller's store. Object safe: use it as `Arc<dyn Store>`.
///
/// Every method is cancel safe in the sense that dropping its future either
/// leaves the store unchanged or lets the change complete; a transaction is
/// never half applied.
pub trait Store: Send + Sync + fmt::Debug {
    /// One key.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<GetResponse>>;

    /// Every key starting with `prefix` (`""`: every key), at one revision.
    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<ListResponse>>;

    /// Applies `txn` if every compare holds. Refuses an invalid transaction
    /// ([`Txn::validate`]) and a put with an unknown lease
    /// ([`StoreError::LeaseNotFound`]) without applying anything.
    fn txn(&self, txn: Txn) -> BoxFuture<'_, Result<TxnResult>>;

    /// A new lease that ends `ttl` after its last keep-alive (rounded up to
    /// whole seconds, at least one).
    fn grant(&self, ttl: Duration) -> BoxFuture<'_, Result<Lease>>;

    /// Restarts the lease's TTL once and returns it; see [`KeepAlive`] for a
    /// task that does so until dropped.
    fn keep_alive_once(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration>>;

    /// Ends the lease now and deletes its keys (one revision).
    fn revoke(&self, lease: LeaseId) -> BoxFuture<'_, Result<()>>;

    /// The changes to keys under `prefix` from `from_revision` on
    /// (`0`: from the next change).
    fn watch<'a>(
        &'a self,
        prefix: &'a str,
        from_revision: Revision,
    ) -> BoxFuture<'a, Result<Watch>>;

    /// Forgets the history before `revision`: a later watch from an older
    /// revision yields [`StoreError::Compacted`]. Current values stay.
    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>>;
}

/// Whole seconds, at least one: the lease granularity both backends use.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs.max(1)).unwrap_or(i64::MAX)
}
