//! PKI as code: the files of a CA directory, written by `causeway ca init` and
//! read by everything that issues or verifies from them.
//!
//! ```text
//! DIR/ca.json            trust domain, which authority signs, bundle sequence
//! DIR/root.pem           the bundle's X.509 authorities (the root, or the upstream root)
//! DIR/root.key           the root key (absent when the root is upstream)   0600
//! DIR/intermediate.pem   the signing intermediate, with --intermediate
//! DIR/intermediate.key   its key                                           0600
//! ```

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bundle::TrustBundle;
use crate::ca::{Authority, Ca, CaError};
use crate::id::TrustDomain;
use crate::pem;

const CONFIG: &str = "ca.json";
const ROOT_CERT: &str = "root.pem";
const ROOT_KEY: &str = "root.key";
const INTERMEDIATE_CERT: &str = "intermediate.pem";
const INTERMEDIATE_KEY: &str = "intermediate.key";

/// Default refresh hint published in the bundle.
pub const DEFAULT_REFRESH_HINT: Duration = Duration::from_secs(300);

/// Why a CA directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error("{path} already exists; refusing to overwrite CA material")]
    Exists { path: PathBuf },
    #[error("{path}: {source}")]
    Ca { path: PathBuf, source: CaError },
}

/// Which authority of the directory signs SVIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signer {
    Root,
    Intermediate,
}

/// `ca.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    pub trust_domain: TrustDomain,
    pub signer: Signer,
    pub bundle_sequence: u64,
    pub refresh_hint_secs: u64,
}

/// How `ca init` builds the authorities.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub intermediate: bool,
    /// An upstream root (certificate PEM, key PEM) to put the intermediate
    /// under, instead of a root of our own. Implies `intermediate`.
    pub upstream: Option<(Vec<u8>, Vec<u8>)>,
    pub root_ttl: Duration,
    pub intermediate_ttl: Duration,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            intermediate: false,
            upstream: None,
            root_ttl: crate::ca::DEFAULT_ROOT_TTL,
            intermediate_ttl: crate::ca::DEFAULT_INTERMEDIATE_TTL,
        }
    }
}

/// A CA directory, loaded.
#[derive(Debug)]
pub struct CaDir {
    dir: PathBuf,
    config: CaConfig,
    ca: Ca,
    bundle: TrustBundle,
}

impl CaDir {
    /// Creates the CA material in `dir` (created if missing). Refuses to
    /// overwrite an existing CA.
    pub fn init(dir: &Path, td: &TrustDomain, opts: &InitOptions) -> Result<Self, FilesError> {
        let config_path = dir.join(CONFIG);
        // Never replace CA material, even a partial set left by an earlier
        // failed init: check every file before writing any.
        for name in [
            CONFIG,
            ROOT_CERT,
            ROOT_KEY,
            INTERMEDIATE_CERT,
            INTERMEDIATE_KEY,
        ] {
            let path = dir.join(name);
            if path.exists() {
                return Err(FilesError::Exists { path });
            }
        }
        fs::create_dir_all(dir).map_err(|source| FilesError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let ca_err = |path: &Path| {
            let path = path.to_owned();
            move |source| FilesError::Ca { path, source }
        };
        let signer = if let Some((cert, key)) = &opts.upstream {
            let upstream = Authority::from_pem(cert, key).map_err(ca_err(dir))?;
            let inter = Authority::new_intermediate(td, &upstream, opts.intermediate_ttl)
                .map_err(ca_err(dir))?;
            write_file(&dir.join(ROOT_CERT), upstream.cert_pem().as_bytes(), false)?;
            write_file(
                &dir.join(INTERMEDIATE_CERT),
                inter.cert_pem().as_bytes(),
                false,
            )?;
            write_file(
                &dir.join(INTERMEDIATE_KEY),
                inter.key_pem().as_bytes(),
                true,
            )?;
            Signer::Intermediate
        } else {
            let root = Authority::new_root(td, opts.root_ttl).map_err(ca_err(dir))?;
            write_file(&dir.join(ROOT_CERT), root.cert_pem().as_bytes(), false)?;
            write_file(&dir.join(ROOT_KEY), root.key_pem().as_bytes(), true)?;
            if opts.intermediate {
                let inter = Authority::new_intermediate(td, &root, opts.intermediate_ttl)
                    .map_err(ca_err(dir))?;
                write_file(
                    &dir.join(INTERMEDIATE_CERT),
                    inter.cert_pem().as_bytes(),
                    false,
                )?;
                write_file(
                    &dir.join(INTERMEDIATE_KEY),
                    inter.key_pem().as_bytes(),
                    true,
                )?;
                Signer::Intermediate
            } else {
                Signer::Root
            }
        };
        let config = CaConfig {
            trust_domain: td.clone(),
            signer,
            bundle_sequence: 1,
            refresh_hint_secs: DEFAULT_REFRESH_HINT.as_secs(),
        };
        let json = serde_json::to_string_pretty(&config).map_err(|e| FilesError::Invalid {
            path: config_path.clone(),
            detail: e.to_string(),
        })?;
        write_file(&config_path, json.as_bytes(), false)?;
        Self::open(dir)
    }

    /// Loads a CA directory written by [`CaDir::init`].
    pub fn open(dir: &Path) -> Result<Self, FilesError> {
        let config_path = dir.join(CONFIG);
        let config: CaConfig =
            serde_json::from_slice(&read(&config_path)?).map_err(|e| FilesError::Invalid {
                path: config_path.clone(),
                detail: format!("not a CA config: {e}"),
            })?;
        let td = config.trust_domain.clone();
        let root_path = dir.join(ROOT_CERT);
        let roots = pem::certificates(&read(&root_path)?).map_err(|e| FilesError::Invalid {
            path: root_path.clone(),
            detail: e.to_string(),
        })?;
        if roots.is_empty() {
            return Err(FilesError::Invalid {
                path: root_path,
                detail: "no CERTIFICATE block".into(),
            });
        }
        let bundle = TrustBundle::new(td.clone(), roots)
            .with_sequence(config.bundle_sequence)
            .with_refresh_hint(Duration::from_secs(config.refresh_hint_secs));
        let ca = match config.signer {
            Signer::Root => {
                let key_path = dir.join(ROOT_KEY);
                let root = Authority::from_pem(&read(&root_path)?, &read(&key_path)?).map_err(
                    |source| FilesError::Ca {
                        path: key_path,
                        source,
                    },
                )?;
                Ca::with_root(td, root)
            }
            Signer::Intermediate => {
                let cert_path = dir.join(INTERMEDIATE_CERT);
                let key_path = dir.join(INTERMEDIATE_KEY);
                let inter = Authority::from_pem(&read(&cert_path)?, &read(&key_path)?).map_err(
                    |source| FilesError::Ca {
                        path: cert_path,
                        source,
                    },
                )?;
                let mut ca = Ca::with_intermediate(td, inter, Vec::new());
                ca.set_roots(bundle.x509_authorities().to_vec());
                ca
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            config,
            ca,
            bundle,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &CaConfig {
        &self.config
    }
    pub fn ca(&self) -> &Ca {
        &self.ca
    }
    /// The trust domain's bundle: its roots, sequence and refresh hint.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }
}

fn read(path: &Path) -> Result<Vec<u8>, FilesError> {
    fs::read(path).map_err(|source| FilesError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Writes a file; a private one is created with mode 0600 from the start,
/// so the key is never readable by others, not even briefly.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), FilesError> {
    let io = |source| FilesError::Io {
        path: path.to_owned(),
        source,
    };
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io)?;
    #[cfg(unix)]
    if private {
        // An existing file keeps its mode through open(); set it anyway.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)
}
