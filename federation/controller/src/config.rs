//! The controller's config file, validated once at load: every problem is
//! reported at once with the file, the field and the reason; the rest of the
//! controller trusts [`ControllerConfig`].
//!
//! ```yaml
//! trust_domain: east.acme.example
//! data_dir: /var/lib/causeway          # relative paths: from this file's directory
//! store: embedded                      # default; or:
//! # store:
//! #   etcd:
//! #     endpoints: [http://127.0.0.1:2379]
//! #     prefix: /causeway/east.acme.example/   # default
//! api:
//!   listen: 0.0.0.0:15012              # gRPC over TLS, for gateways
//! admin:
//!   socket: /var/lib/causeway/admin.sock   # default <data_dir>/admin.sock, mode 0600
//! metrics:
//!   listen: 127.0.0.1:15014            # /metrics, /healthz, /readyz
//! federation:
//!   listen: 0.0.0.0:8443               # the public port for peers: the SPIFFE
//!                                      # bundle endpoint (https://<addr>/) and the
//!                                      # federation API (gRPC), one TLS listener
//! svid_ttl: 1h                         # default 1h
//! join_token_ttl: 10m                  # default 10m
//! ca:
//!   root_ttl: 8760h                    # a root created at first start (default)
//!   # or a root taken from files:
//!   # cert_file: root.pem
//!   # key_file: root.key
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_trust::TrustDomain;
use serde::Deserialize;

/// A validated controller config.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub trust_domain: TrustDomain,
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    pub api_listen: SocketAddr,
    pub admin_socket: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    /// The public port: bundle endpoint and federation API. `None`: peers
    /// can neither fetch our bundle nor announce theirs (we still refresh
    /// theirs and announce ours).
    pub federation_listen: Option<SocketAddr>,
    pub svid_ttl: Duration,
    pub join_token_ttl: Duration,
    pub ca: CaSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded store in `<data_dir>/store`.
    Embedded,
    Etcd {
        endpoints: Vec<String>,
        /// The prefix of every key; `None`: `/causeway/<trust domain>/`.
        prefix: Option<String>,
    },
}

/// Where the trust domain's root comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// Created by the leader at first start and kept in the store.
    Store { root_ttl: Duration },
    /// PEM files (certificate and key), read by every replica.
    Files { cert: PathBuf, key: PathBuf },
}

/// Defaults.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_JOIN_TOKEN_TTL: Duration = Duration::from_secs(600);
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A refused config: every problem, with the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    /// (field, reason); an empty field is about the whole file.
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (field, reason)) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            if field.is_empty() {
                write!(f, "{}: {reason}", self.file)?;
            } else {
                write!(f, "{}: {field}: {reason}", self.file)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    trust_domain: String,
    data_dir: PathBuf,
    #[serde(default)]
    store: Option<RawStore>,
    api: RawListen,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    metrics: Option<RawListen>,
    #[serde(default)]
    federation: Option<RawListen>,
    #[serde(default)]
    svid_ttl: Option<String>,
    #[serde(default)]
    join_token_ttl: Option<String>,
    #[serde(default)]
    ca: Option<RawCa>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawStore {
    Embedded,
    Etcd(RawEtcd),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    endpoints: Vec<String>,
    #[serde(default)]
    prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    socket: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    #[serde(default)]
    root_ttl: Option<String>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
}

impl ControllerConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            problems: vec![(String::new(), format!("cannot read: {e}"))],
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&file, &text, base)
    }

    /// Validates config text; `file` names it in errors, `base` resolves
    /// relative paths.
    pub fn parse(file: &str, text: &str, base: &Path) -> Result<Self, ConfigError> {
        let fail = |field: String, reason: String| ConfigError {
            file: file.to_owned(),
            problems: vec![(field, reason)],
        };
        let value: serde_json::Value = serde_saphyr::from_str(text)
            .map_err(|e| fail(String::new(), format!("not YAML: {e}")))?;
        let raw: Raw = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            fail(field, e.into_inner().to_string())
        })?;
        let mut problems = Vec::new();
        let mut bad = |field: &str, reason: String| problems.push((field.to_owned(), reason));

        let trust_domain = match TrustDomain::new(&raw.trust_domain) {
            Ok(td) => Some(td),
            Err(e) => {
                bad("trust_domain", e.to_string());
                None
            }
        };
        let data_dir = base.join(&raw.data_dir);
        let store = match raw.store {
            None | Some(RawStore::Embedded) => StoreConfig::Embedded,
            Some(RawStore::Etcd(e)) => {
                if e.endpoints.is_empty() {
                    bad(
                        "store.etcd.endpoints",
                        "at least one endpoint is needed".into(),
                    );
                }
                for (i, ep) in e.endpoints.iter().enumerate() {
                    if !(ep.starts_with("http://") || ep.starts_with("https://")) {
                        bad(
                            &format!("store.etcd.endpoints[{i}]"),
                            format!("{ep:?} is not http://host:port or https://host:port"),
                        );
                    }
                }
                if let Some(p) = &e.prefix
                    && !(p.starts_with('/') && p.ends_with('/'))
                {
                    bad(
                        "store.etcd.prefix",
                        format!("{p:?} must start and end with '/'"),
                    );
                }
                StoreConfig::Etcd {
                    endpoints: e.endpoints,
                    prefix: e.prefix,
                }
            }
        };
        let api_listen = parse_addr(&mut bad, "api.listen", &raw.api.listen);
        let metrics_listen = raw
            .metrics
            .as_ref()
            .and_then(|m| parse_addr(&mut bad, "metrics.listen", &m.listen));
        let federation_listen = raw
            .federation
            .as_ref()
            .and_then(|m| parse_addr(&mut bad, "federation.listen", &m.listen));
        let admin_socket = match raw.admin {
            Some(a) => base.join(a.socket),
            None => data_dir.join("admin.sock"),
        };
        let svid_ttl = parse_ttl(
            &mut bad,
            "svid_ttl",
            raw.svid_ttl.as_deref(),
            DEFAULT_SVID_TTL,
        );
        let join_token_ttl = parse_ttl(
            &mut bad,
            "join_token_ttl",
            raw.join_token_ttl.as_deref(),
            DEFAULT_JOIN_TOKEN_TTL,
        );
        let ca = match raw.ca {
            None => CaSource::Store {
                root_ttl: DEFAULT_ROOT_TTL,
            },
            Some(RawCa {
                root_ttl,
                cert_file: None,
                key_file: None,
            }) => CaSource::Store {
                root_ttl: parse_ttl(
                    &mut bad,
                    "ca.root_ttl",
                    root_ttl.as_deref(),
                    DEFAULT_ROOT_TTL,
                ),
            },
            Some(RawCa {
                root_ttl,
                cert_file: Some(cert),
                key_file: Some(key),
            }) => {
                if root_ttl.is_some() {
                    bad(
                        "ca.root_ttl",
                        "only for a root the controller creates; not with cert_file and key_file"
                            .into(),
                    );
                }
                CaSource::Files {
                    cert: base.join(cert),
                    key: base.join(key),
                }
            }
            Some(RawCa { cert_file, .. }) => {
                let missing = if cert_file.is_some() {
                    "ca.key_file"
                } else {
                    "ca.cert_file"
                };
                bad(missing, "cert_file and key_file go together".into());
                CaSource::Store {
                    root_ttl: DEFAULT_ROOT_TTL,
                }
            }
        };
        match (trust_domain, api_listen, problems.is_empty()) {
            (Some(trust_domain), Some(api_listen), true) => Ok(Self {
                trust_domain,
                data_dir,
                store,
                api_listen,
                admin_socket,
                metrics_listen,
                federation_listen,
                svid_ttl,
                join_token_ttl,
                ca,
            }),
            _ => Err(ConfigError {
                file: file.to_owned(),
                problems,
            }),
        }
    }
}

fn parse_addr(bad: &mut impl FnMut(&str, String), field: &str, s: &str) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            bad(
                field,
                format!("{s:?} is not ip:port (port 0: any free port)"),
            );
            None
        }
    }
}

fn parse_ttl(
    bad: &mut impl FnMut(&str, String),
    field: &str,
    s: Option<&str>,
    default: Duration,
) -> Duration {
    let Some(s) = s else { return default };
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => d,
        Ok(_) => {
            bad(field, format!("{s:?} is under one second"));
            default
        }
        Err(e) => {
            bad(field, format!("{s:?}: {e} (examples: 30s, 10m, 1h)"));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn minimal_config_takes_the_defaults() {
        let c = ControllerConfig::parse(
            "c.yaml",
            "trust_domain: east.example\ndata_dir: data\napi: {listen: 127.0.0.1:0}\n",
            Path::new("/etc/cw"),
        )
        .unwrap();
        assert_eq!(c.store, StoreConfig::Embedded);
        assert_eq!(c.admin_socket, Path::new("/etc/cw/data/admin.sock"));
        assert_eq!(c.svid_ttl, DEFAULT_SVID_TTL);
        assert!(matches!(c.ca, CaSource::Store { .. }));
    }

    #[test]
    fn every_problem_names_file_and_field() {
        let e = ControllerConfig::parse(
            "c.yaml",
            "trust_domain: 'Bad Domain'\ndata_dir: d\napi: {listen: nowhere}\nsvid_ttl: soon\n\
             store: {etcd: {endpoints: [localhost:2379]}}\n",
            Path::new("."),
        )
        .unwrap_err();
        let text = e.to_string();
        for field in [
            "trust_domain",
            "api.listen",
            "svid_ttl",
            "store.etcd.endpoints[0]",
        ] {
            assert!(text.contains(&format!("c.yaml: {field}: ")), "{text}");
        }
    }

    #[test]
    fn unknown_field_is_named() {
        let e = ControllerConfig::parse(
            "c.yaml",
            "trust_domain: a.example\ndata_dir: d\napi: {listen: 127.0.0.1:0, tls: x}\n",
            Path::new("."),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("c.yaml: api"), "{e}");
    }

    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/controller-east.yaml");
        let c = ControllerConfig::load(&path).unwrap();
        assert_eq!(c.trust_domain.as_str(), "east.acme.example");
        assert_eq!(c.api_listen.port(), 15012);
        assert_eq!(c.federation_listen.map(|a| a.port()), Some(8443));
        assert_eq!(c.join_token_ttl, DEFAULT_JOIN_TOKEN_TTL);
    }
}
