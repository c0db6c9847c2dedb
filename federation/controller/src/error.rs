//! The controller's errors, by what the caller does about them.

use causeway_store::StoreError;
use causeway_trust::CaError;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The store failed; [`StoreError::is_retryable`] says whether to retry.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The CA could not load, create or sign.
    #[error("CA: {0}")]
    Ca(#[from] CaError),
    /// A value in the store cannot be read back.
    #[error("store key {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A listener or file of the controller itself.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// TLS configuration.
    #[error("TLS: {0}")]
    Tls(String),
    /// A leader-fenced write found this replica no longer leading.
    #[error("this replica no longer leads")]
    NotLeader,
    /// A compare-and-set kept losing to other writers.
    #[error("conflict: {0}")]
    Conflict(String),
}

impl ControllerError {
    pub(crate) fn corrupt(key: &str, reason: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            key: key.to_owned(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

impl From<ControllerError> for tonic::Status {
    fn from(e: ControllerError) -> Self {
        match &e {
            ControllerError::Store(s) if s.is_retryable() => {
                tonic::Status::unavailable(e.to_string())
            }
            _ => tonic::Status::internal(e.to_string()),
        }
    }
}

pub(crate) type Result<T, E = ControllerError> = std::result::Result<T, E>;
