//! Watching the credential files: what the reload task knows of each
//! source's contents, by hash, and the task's handle.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use causeway_trust::TrustDomain;
use tokio::task::JoinHandle;

use super::owner::ReloadError;

/// Stops the reload task when dropped.
#[derive(Debug)]
pub struct ReloadTask(pub(super) JoinHandle<()>);

impl Drop for ReloadTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the task knows of one source's contents, by hash.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// The contents in use.
    pub(super) applied: Option<u64>,
    /// The contents read on the previous tick.
    pub(super) seen: Option<u64>,
    /// Contents refused; not tried again until they change.
    pub(super) refused: Option<u64>,
    /// The last refusal logged and counted.
    pub(super) logged: Option<(u64, &'static str)>,
}

impl Watch {
    /// Whether to try the contents with this hash now.
    pub(super) fn step(&mut self, hash: u64, forced: bool) -> bool {
        if self.applied == Some(hash) {
            self.seen = Some(hash);
            return false;
        }
        if self.refused == Some(hash) && !forced {
            return false;
        }
        let stable = self.seen == Some(hash);
        self.seen = Some(hash);
        stable || forced
    }
}

#[derive(Debug, Default)]
pub(super) struct Watches {
    pub(super) svid: Watch,
    pub(super) bundles: BTreeMap<TrustDomain, Watch>,
}

/// The hash of what was read, and what was read or why it could not be.
pub(super) type Hashed<T> = (u64, Result<T, ReloadError>);

/// Reads files whole; the hash covers every file's contents, or the error.
/// Credential files are a few kilobytes on a local or memory file system
/// (a Kubernetes secret volume), so they are read in place, not on a
/// blocking thread.
pub(super) fn read_hashed(paths: &[&PathBuf]) -> Hashed<Vec<Vec<u8>>> {
    let mut h = DefaultHasher::new();
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        match std::fs::read(path) {
            Ok(bytes) => {
                bytes.hash(&mut h);
                out.push(bytes);
            }
            Err(e) => {
                let detail = e.to_string();
                (path, &detail).hash(&mut h);
                let err = ReloadError::Unreadable {
                    path: (*path).clone(),
                    detail,
                };
                return (h.finish(), Err(err));
            }
        }
    }
    (h.finish(), Ok(out))
}
