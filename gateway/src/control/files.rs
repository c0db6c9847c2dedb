//! The gateway's data directory under a controller: its key and SVID chain
//! (one file, 0600), the bundles it holds, and the last good config. Every
//! write goes to a temporary file in the same directory, is synced, and is
//! renamed over the old one, so a reader (the credential reload task, or
//! the next start after a crash) sees the old contents or the new, never a
//! mix.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use causeway_trust::{BundleSet, SpiffeId, Svid, TrustBundle, TrustDomain, pem};
use rustls_pki_types::PrivateKeyDer;

use crate::config::control::{bundle_path, svid_path};

/// The file of the last good config snapshot (protobuf).
pub const SNAPSHOT_FILE: &str = "config-snapshot.pb";

/// A file in the data directory could not be read, written or parsed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
}

impl FileError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the directory (0700) and its `bundles/` if needed.
    pub fn open(root: &Path) -> Result<Self, FileError> {
        for dir in [root.to_owned(), root.join("bundles")] {
            let mut b = fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
                b.mode(0o700);
                b.create(&dir).map_err(FileError::io(&dir))?;
                // An existing directory keeps its mode through create().
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(FileError::io(&dir))?;
            }
            #[cfg(not(unix))]
            b.create(&dir).map_err(FileError::io(&dir))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn svid_path(&self) -> PathBuf {
        svid_path(&self.root)
    }

    pub fn bundle_path(&self, td: &TrustDomain) -> PathBuf {
        bundle_path(&self.root, td)
    }

    pub fn snapshot_path(&self) -> PathBuf {
        self.root.join(SNAPSHOT_FILE)
    }

    /// Writes the key and the chain (leaf first) to the SVID file, 0600.
    pub fn write_svid(&self, svid: &Svid) -> Result<(), FileError> {
        let path = self.svid_path();
        let (label, der): (&str, &[u8]) = match svid.key() {
            PrivateKeyDer::Pkcs8(k) => ("PRIVATE KEY", k.secret_pkcs8_der()),
            PrivateKeyDer::Sec1(k) => ("EC PRIVATE KEY", k.secret_sec1_der()),
            PrivateKeyDer::Pkcs1(k) => ("RSA PRIVATE KEY", k.secret_pkcs1_der()),
            _ => {
                return Err(FileError::Invalid {
                    path,
                    detail: "unsupported private key encoding".into(),
                });
            }
        };
        let mut text = pem::encode(label, der);
        text.push_str(&pem::encode_certificates(svid.chain()));
        write_atomic(&path, text.as_bytes(), true)
    }

    /// The SVID on disk, if there is one; checked to carry `id` and to hold
    /// a key that belongs to its leaf.
    pub fn read_svid(&self, id: &SpiffeId) -> Result<Option<Svid>, FileError> {
        let path = self.svid_path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FileError::io(&path)(e)),
        };
        let invalid = |detail: String| FileError::Invalid {
            path: path.clone(),
            detail,
        };
        let svid = Svid::from_pem(&text, &text).map_err(|e| invalid(e.to_string()))?;
        if svid.spiffe_id() != id {
            return Err(invalid(format!(
                "holds an SVID for {}, not {id}",
                svid.spiffe_id()
            )));
        }
        causeway_trust::tls::SvidSource::new(svid.clone()).map_err(|e| invalid(e.to_string()))?;
        Ok(Some(svid))
    }

    /// Writes a bundle as a SPIFFE bundle document, unless its file holds
    /// exactly that document already. Every snapshot carries every peer's
    /// bundle; rewriting the unchanged ones (two fsyncs each) cost a
    /// gateway with 50 peers ~70 ms of blocking writes per config version,
    /// and 20 such gateways on one disk seconds (docs/benchmarks.md).
    pub fn write_bundle(&self, bundle: &TrustBundle) -> Result<(), FileError> {
        let path = self.bundle_path(bundle.trust_domain());
        let document = bundle.to_json();
        if fs::read(&path).is_ok_and(|held| held == document.as_bytes()) {
            return Ok(());
        }
        write_atomic(&path, document.as_bytes(), false)
    }

    /// Every bundle file that parses; the others are skipped (the
    /// credential reload task reports them).
    pub fn read_bundles(&self) -> BundleSet {
        let mut set = BundleSet::new();
        let Ok(entries) = fs::read_dir(self.root.join("bundles")) else {
            return set;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(td) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| TrustDomain::new(n).ok())
            else {
                continue;
            };
            if let Ok(text) = fs::read(&path)
                && let Ok(b) = TrustBundle::from_json(td, &text)
            {
                let _ = set.insert(b);
            }
        }
        set
    }
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `contents` to `path` atomically: a temporary file in the same
/// directory (0600 when `private`, from its creation), synced, renamed over
/// `path`, and the directory synced.
pub fn write_atomic(path: &Path, contents: &[u8], private: bool) -> Result<(), FileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp-{}-{n}", std::process::id()));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        let mut f = opts.open(&tmp).map_err(FileError::io(&tmp))?;
        f.write_all(contents).map_err(FileError::io(&tmp))?;
        f.sync_all().map_err(FileError::io(&tmp))?;
        fs::rename(&tmp, path).map_err(FileError::io(path))?;
        // The rename is durable once the directory is synced.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::os::unix::fs::MetadataExt;
    use std::time::Duration;

    use causeway_trust::ca::Authority;
    use causeway_trust::{TrustBundle, TrustDomain};

    use super::DataDir;

    fn bundle(td: &TrustDomain) -> TrustBundle {
        let root = Authority::new_root(td, Duration::from_secs(3600)).unwrap();
        TrustBundle::new(td.clone(), vec![root.cert().clone()]).with_sequence(1)
    }

    #[test]
    fn an_unchanged_bundle_is_not_written_again_and_a_changed_one_is() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let td = TrustDomain::new("west.example").unwrap();
        let first = bundle(&td);
        dir.write_bundle(&first).unwrap();
        let path = dir.bundle_path(&td);
        let inode = std::fs::metadata(&path).unwrap().ino();

        // Each write renames a new file over the old one: same inode, no write.
        dir.write_bundle(&first).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().ino(), inode);

        let second = bundle(&td);
        dir.write_bundle(&second).unwrap();
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), second.to_json());
    }
}
