//! The `controller:` section of a gateway's YAML: a gateway run by a
//! federation controller keeps a small local file (listeners, admin, peer
//! listener, where its data lives) and gets everything else from its
//! controller.
//!
//! ```yaml
//! trust_domain: east.acme.example
//! controller:
//!   address: controller.east.internal:7443   # the controller's gateway API
//!   token_file: join-token                   # used once, for the first SVID
//!   data_dir: /var/lib/causeway              # key, SVID, bundles, last good config
//!   name: edge-1                             # the name the token was created for
//! listeners: [...]
//! ```
//!
//! With a `controller:` section the gateway's ID is
//! `spiffe://<trust_domain>/causeway/gateway/<name>`, and the `svid:` and
//! `bundles:` entries are derived from `data_dir` ([`svid_path`],
//! [`bundle_path`]); writing them in the file is an error. Services,
//! imports, peers and authorization come from the controller's snapshots
//! (see `crate::control`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use causeway_trust::{SpiffeId, TrustDomain};
use serde::{Deserialize, Serialize};

use super::Validator;
use super::raw::{RawBundle, RawConfig, RawSvid};

/// The `controller:` section as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawController {
    /// `host:port` of the controller's gateway API.
    pub address: String,
    /// A file holding a join token; read only while the gateway has no
    /// valid SVID yet.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Where the key, the SVID, the bundles and the last good config live
    /// (created with mode 0700).
    pub data_dir: PathBuf,
    /// The gateway's name: the one its join token was created for.
    pub name: String,
}

/// The validated `controller:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// As written: `host:port`.
    pub address: String,
    pub host: String,
    pub port: u16,
    /// Absolute, or relative to the config file's directory.
    pub token_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub name: String,
    /// `spiffe://<trust_domain>/causeway/gateway/<name>`.
    pub gateway_id: SpiffeId,
    /// `spiffe://<trust_domain>/causeway/controller`: the only identity the
    /// gateway accepts from its controller.
    pub controller_id: SpiffeId,
}

/// The file holding the gateway's private key and its SVID chain (one file,
/// so that a renewal replaces both with one rename; mode 0600).
pub fn svid_path(data_dir: &Path) -> PathBuf {
    data_dir.join("svid.pem")
}

/// The file holding a trust domain's bundle (SPIFFE bundle JSON).
pub fn bundle_path(data_dir: &Path, td: &TrustDomain) -> PathBuf {
    data_dir.join("bundles").join(format!("{td}.json"))
}

/// The gateway's SPIFFE ID under a controller.
pub fn gateway_id(td: &TrustDomain, name: &str) -> Result<SpiffeId, String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!(
            "{name:?} has {c:?}; a gateway name is lower-case letters, digits, '-', '.' and '_'"
        ));
    }
    td.workload_id(&format!("/causeway/gateway/{name}"))
        .map_err(|e| format!("{name:?} does not make a SPIFFE ID: {e}"))
}

/// The controller's SPIFFE ID in a trust domain.
pub fn controller_id(td: &TrustDomain) -> Result<SpiffeId, String> {
    td.workload_id("/causeway/controller")
        .map_err(|e| e.to_string())
}

/// Splits `host:port` (`[v6]:port` for IPv6 literals).
fn host_port(address: &str) -> Result<(String, u16), String> {
    let bad = || format!("{address:?} is not host:port (such as controller.example:7443)");
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(['/', ' ', '@']) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

impl Validator {
    /// Checks the `controller:` section, if any, and derives what it
    /// implies: the ID, the SVID file and the bundle files. Without one,
    /// `svid:` is required.
    pub(super) fn controller(
        &mut self,
        raw: &mut RawConfig,
        base: &Path,
    ) -> Option<ControllerSettings> {
        let Some(c) = raw.controller.clone() else {
            if raw.svid.cert.as_os_str().is_empty() || raw.svid.key.as_os_str().is_empty() {
                self.problem(
                    "svid",
                    "cert and key are required (or a controller: section)",
                );
            }
            return None;
        };
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        let addr = self.check("controller.address", host_port(&c.address));
        if c.data_dir.as_os_str().is_empty() {
            self.problem("controller.data_dir", "is required");
        }
        let data_dir = resolve(&c.data_dir);
        let token_file = c.token_file.as_deref().map(resolve);
        // An invalid trust domain is reported by the caller.
        let td = TrustDomain::new(&raw.trust_domain).ok()?;
        let gateway_id = self.check("controller.name", gateway_id(&td, &c.name));
        let controller_id = self.check("trust_domain", controller_id(&td));

        if let Some(id) = &gateway_id {
            if raw.id.is_empty() {
                raw.id = id.to_string();
            } else if raw.id != id.as_str() {
                self.problem(
                    "id",
                    format!(
                        "under a controller the gateway's ID is {id} (from controller.name); leave id out"
                    ),
                );
            }
        }
        if !raw.svid.cert.as_os_str().is_empty() || !raw.svid.key.as_os_str().is_empty() {
            self.problem(
                "svid",
                "under a controller the SVID lives in controller.data_dir; leave svid out",
            );
        }
        let svid = svid_path(&data_dir);
        raw.svid = RawSvid {
            cert: svid.clone(),
            key: svid,
        };
        if !raw.bundles.is_empty() {
            self.problem(
                "bundles",
                "under a controller the bundles come from it and live in controller.data_dir; leave bundles out",
            );
        }
        // The own trust domain's bundle, and one per peer trust domain.
        let mut tds = BTreeSet::from([td.clone()]);
        tds.extend(
            raw.peers
                .iter()
                .filter_map(|p| TrustDomain::new(&p.trust_domain).ok()),
        );
        raw.bundles = tds
            .iter()
            .map(|td| RawBundle {
                trust_domain: td.to_string(),
                file: bundle_path(&data_dir, td),
            })
            .collect();

        let (host, port) = addr?;
        Some(ControllerSettings {
            address: c.address,
            host,
            port,
            token_file,
            data_dir,
            name: c.name,
            gateway_id: gateway_id?,
            controller_id: controller_id?,
        })
    }
}

/// Whether the gateway file at `path` names a controller (a `controller:`
/// section): such a gateway starts from its controller's config, not from
/// the file alone. A file that cannot be read or parsed answers false, and
/// loading it as a plain gateway file then reports why.
pub fn names_controller(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_saphyr::from_str::<super::raw::RawConfig>(&text).ok())
        .is_some_and(|raw| raw.controller.is_some())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(
            host_port("c.example:7443").unwrap(),
            ("c.example".into(), 7443)
        );
        assert_eq!(host_port("[::1]:80").unwrap(), ("::1".into(), 80));
        for bad in ["c.example", ":80", "c.example:0", "c.example:x", "a b:1"] {
            assert!(host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn gateway_names() {
        let td = TrustDomain::new("east.example").unwrap();
        assert_eq!(
            gateway_id(&td, "edge-1").unwrap().as_str(),
            "spiffe://east.example/causeway/gateway/edge-1"
        );
        for bad in ["", "Edge", "a/b", "a b"] {
            assert!(gateway_id(&td, bad).is_err(), "{bad}");
        }
    }
}
