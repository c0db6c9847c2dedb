//! The store's errors, one variant per thing a caller does differently.

use std::path::PathBuf;

use crate::{LeaseId, Revision};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or did not answer in time. Retrying
    /// later may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),

    /// A watch asked for history that has been compacted away. List again
    /// and watch from the list's revision + 1.
    #[error("revision {requested} is compacted (history starts at {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },

    /// A compare of the transaction did not hold; nothing was applied.
    /// Read again and retry with the new revisions.
    #[error("transaction not applied: a compare did not hold")]
    Conflict,

    /// The lease has expired or was revoked.
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),

    /// Stored data cannot be read back: the store refuses to go on rather
    /// than serve a torn or foreign state.
    #[error("corrupt store data in {location}: {reason}")]
    Corrupt { location: String, reason: String },

    /// The embedded store's directory is held by another process (or by
    /// another store open in this one).
    #[error("store directory {} is locked by another process", path.display())]
    Locked { path: PathBuf },

    /// The embedded store's file or directory could not be read or written.
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A value or a transaction over the size limits.
    #[error("{what} is {size} bytes, over the limit of {max}")]
    TooLarge {
        what: String,
        size: usize,
        max: usize,
    },

    /// A transaction with more operations (or compares) than one may hold
    /// ([`crate::MAX_TXN_OPS`], etcd's default `--max-txn-ops`).
    #[error("a transaction of {count} {what}, over the limit of {max}")]
    TooManyOps {
        what: &'static str,
        count: usize,
        max: usize,
    },

    /// A transaction both backends refuse (empty key, key changed twice).
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),

    /// The store's configuration cannot be used (endpoints, TLS files,
    /// namespace).
    #[error("store configuration: {0}")]
    Config(String),

    /// etcd refused a request for a reason retrying will not fix.
    #[error("etcd refused the request: {0}")]
    Rejected(String),
}

impl StoreError {
    /// Whether the same call may succeed later without any change.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
