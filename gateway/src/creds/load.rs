//! Loading the SVID and bundles a config names, checked: the same checks
//! at start-up and at every reload.

use std::path::{Path, PathBuf};

use causeway_trust::{BundleSet, Svid, TrustBundle, TrustDomain};

use crate::config::GatewayConfig;

/// Why a credential file was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("the SVID in {path} is {found}, but the config says this gateway is {expected}")]
    WrongIdentity {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError::File {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// The SVID named by the config, checked to carry the config's ID.
pub fn load_svid(config: &GatewayConfig) -> Result<Svid, LoadError> {
    let c = &config.credentials;
    svid_from_pem(config, &read(&c.svid_cert)?, &read(&c.svid_key)?)
}

/// An SVID from the contents of the config's cert and key files, checked to
/// carry the config's ID. Errors name the config's cert file.
pub fn svid_from_pem(
    config: &GatewayConfig,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Svid, LoadError> {
    let c = &config.credentials;
    let svid = Svid::from_pem(cert_pem, key_pem).map_err(|e| LoadError::File {
        path: c.svid_cert.clone(),
        detail: e.to_string(),
    })?;
    if *svid.spiffe_id() != config.id {
        return Err(LoadError::WrongIdentity {
            path: c.svid_cert.clone(),
            found: svid.spiffe_id().to_string(),
            expected: config.id.to_string(),
        });
    }
    Ok(svid)
}

/// The bundles named by the config (SPIFFE JSON or PEM files).
pub fn load_bundles(config: &GatewayConfig) -> Result<BundleSet, LoadError> {
    let mut set = BundleSet::new();
    for (td, path) in &config.credentials.bundles {
        insert_bundle(&mut set, bundle_from_file(td, path, &read(path)?)?, path)?;
    }
    Ok(set)
}

/// A trust domain's bundle from the contents of `path` (SPIFFE JSON or PEM).
pub fn bundle_from_file(
    td: &TrustDomain,
    path: &Path,
    text: &[u8],
) -> Result<TrustBundle, LoadError> {
    TrustBundle::parse(td.clone(), text).map_err(|e| LoadError::File {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// Adds or replaces a bundle in `set`, refusing authorities that cannot be
/// trust anchors; errors name `path`.
pub fn insert_bundle(
    set: &mut BundleSet,
    bundle: TrustBundle,
    path: &Path,
) -> Result<(), LoadError> {
    set.insert(bundle).map_err(|e| LoadError::File {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}
