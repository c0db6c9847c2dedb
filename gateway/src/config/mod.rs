//! The gateway's config: validated once, here, at the edge; the rest of the
//! gateway trusts it. A YAML file and the controller's config stream both
//! produce a [`raw::RawConfig`]; [`GatewayConfig::from_raw`] checks it whole
//! and reports every problem with the field it is in.

pub mod control;
mod identity;
pub mod live;
mod protocol;
pub mod raw;

pub use protocol::ServiceProtocol;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_trust::{SpiffeId, TrustDomain};

use crate::service::ServiceName;
pub use causeway_resources::names::PrincipalName;
pub use causeway_resources::{IdPattern, PatternError};
pub use identity::{IdentityRule, IdentityRules, Principal};
use raw::RawConfig;

/// One problem in a config: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path to the field, such as `services[2].endpoints[0]`.
    pub field: String,
    pub reason: String,
}

/// Every problem found in one config source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, or the control-plane source, the config came from.
    pub source_name: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: invalid gateway config", self.source_name)?;
        for p in &self.problems {
            write!(f, "\n  {}: {}", p.field, p.reason)?;
        }
        Ok(())
    }
}

/// Who the callers on a local listener are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerMode {
    /// Every caller is this identity (trusted address: sidecar or node mode).
    Assigned(SpiffeId),
    /// Callers present an X.509-SVID; the identity is taken from it.
    Mtls,
}

/// Default largest stream header accepted from a peer (it carries an HTTP
/// request's head); the prefix's length field allows up to 65,535.
pub const DEFAULT_MAX_HEADER_LEN: usize = 32 * 1024;

/// What a local listener speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerKind {
    /// HTTP/1.1 and h2c, routed by Host / :authority.
    Http,
    /// Raw TCP, every connection to one destination.
    Tcp { destination: Destination },
}

/// A service a caller may reach: local or imported from a peer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Destination {
    pub service: ServiceName,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    pub caller: CallerMode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalService {
    pub endpoints: Vec<SocketAddr>,
    /// `service:port`, the `host` an HTTP/1.1 upstream gets for a call
    /// from a peer (made once here, not per call).
    pub host: http::HeaderValue,
    /// What the endpoints speak. It decides what an HTTP call gets from
    /// the gateway, whatever version the caller spoke.
    pub protocol: ServiceProtocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub peer: String,
    /// The service as the peer names it.
    pub remote: Destination,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGateway {
    pub addr: SocketAddr,
    pub id: SpiffeId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub trust_domain: TrustDomain,
    pub gateways: Vec<PeerGateway>,
}

/// An allow rule; anything no rule allows is denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// None: every local service.
    pub service: Option<ServiceName>,
    /// Empty: every port.
    pub ports: Vec<u16>,
    pub allow: Vec<Principal>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_streams_per_connection: u32,
    /// Streams open at once from all connections of one peer trust domain.
    pub max_streams_per_peer: u32,
    pub connect_timeout: Duration,
    /// Longest wait for an HTTP response's head (a gRPC `grpc-timeout` or
    /// the stream header's deadline may shorten it); then 504.
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: DEFAULT_MAX_HEADER_LEN,
            max_streams_per_connection: 1024,
            max_streams_per_peer: 4096,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Where the gateway's credentials come from when it runs from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFiles {
    pub svid_cert: PathBuf,
    pub svid_key: PathBuf,
    pub bundles: BTreeMap<TrustDomain, PathBuf>,
}

/// A validated gateway config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub trust_domain: TrustDomain,
    pub id: SpiffeId,
    pub credentials: CredentialFiles,
    pub admin: Option<SocketAddr>,
    pub peer_listener: Option<SocketAddr>,
    pub listeners: Vec<Listener>,
    pub services: BTreeMap<Destination, LocalService>,
    pub imports: BTreeMap<Destination, Import>,
    pub peers: BTreeMap<String, Peer>,
    pub rules: Vec<Rule>,
    /// Foreign callers to local principals, applied on inbound.
    pub identity_map: IdentityRules,
    pub limits: Limits,
    /// Set when a federation controller runs this gateway.
    pub controller: Option<control::ControllerSettings>,
}

impl GatewayConfig {
    /// Reads and validates a YAML file. Relative paths in it are taken from
    /// the file's directory, made absolute (as they stay right if the
    /// working directory changes).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| single(&name, "", e.to_string()))?;
        let path = std::path::absolute(path).map_err(|e| single(&name, "", e.to_string()))?;
        Self::from_yaml(&name, &text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses and validates YAML text; `base` resolves relative paths.
    pub fn from_yaml(source_name: &str, text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text)
            .map_err(|e| single(source_name, "", format!("not a gateway config: {e}")))?;
        Self::from_raw(source_name, raw, base)
    }

    /// Validates a raw config, whatever it came from.
    pub fn from_raw(source_name: &str, raw: RawConfig, base: &Path) -> Result<Self, ConfigError> {
        let mut v = Validator::default();
        let cfg = v.config(raw, base);
        match cfg {
            Some(cfg) if v.problems.is_empty() => Ok(cfg),
            _ => Err(ConfigError {
                source_name: source_name.to_owned(),
                problems: v.problems,
            }),
        }
    }

    /// The SPIFFE IDs of every configured peer gateway: who may connect to
    /// the peer listener.
    pub fn peer_gateway_ids(&self) -> impl Iterator<Item = SpiffeId> + '_ {
        self.peers
            .values()
            .flat_map(|p| p.gateways.iter().map(|g| g.id.clone()))
    }

    /// The rules' decision for a caller reaching a local destination.
    pub fn authorizes(&self, caller: &SpiffeId, dest: &Destination) -> bool {
        self.authorizes_as(caller, None, dest)
    }

    /// The rules' decision for a caller that the identity map gave the
    /// local principal `mapped` (none for a local or unmapped caller).
    pub fn authorizes_as(
        &self,
        caller: &SpiffeId,
        mapped: Option<&PrincipalName>,
        dest: &Destination,
    ) -> bool {
        self.rules.iter().any(|r| {
            r.service.as_ref().is_none_or(|s| *s == dest.service)
                && (r.ports.is_empty() || r.ports.contains(&dest.port))
                && r.allow.iter().any(|p| p.matches(caller, mapped))
        })
    }
}

fn single(source: &str, field: &str, reason: String) -> ConfigError {
    ConfigError {
        source_name: source.to_owned(),
        problems: vec![Problem {
            field: field.to_owned(),
            reason,
        }],
    }
}

/// Collects every problem instead of stopping at the first.
#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn problem(&mut self, field: impl Into<String>, reason: impl fmt::Display) {
        self.problems.push(Problem {
            field: field.into(),
            reason: reason.to_string(),
        });
    }

    fn check<T, E: fmt::Display>(
        &mut self,
        field: impl Into<String>,
        r: Result<T, E>,
    ) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.problem(field, e);
                None
            }
        }
    }

    fn addr(&mut self, field: impl Into<String>, s: &str) -> Option<SocketAddr> {
        let field = field.into();
        self.check(
            field,
            s.parse::<SocketAddr>().map_err(|_| {
                format!("{s:?} is not an IP address and port (such as 127.0.0.1:8080)")
            }),
        )
    }

    fn duration(&mut self, field: &str, s: &Option<String>, default: Duration) -> Duration {
        match s {
            None => default,
            Some(s) => self
                .check(
                    field,
                    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}")),
                )
                .unwrap_or(default),
        }
    }

    fn config(&mut self, mut raw: RawConfig, base: &Path) -> Option<GatewayConfig> {
        let controller = self.controller(&mut raw, base);
        let trust_domain = self.check("trust_domain", TrustDomain::new(&raw.trust_domain));
        let id = self.check("id", SpiffeId::workload(&raw.id));
        if let (Some(td), Some(id)) = (&trust_domain, &id)
            && !id.is_member_of(td)
        {
            self.problem(
                "id",
                format!("{id} is not in the gateway's trust domain {td}"),
            );
        }
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        let mut bundles = BTreeMap::new();
        for (i, b) in raw.bundles.iter().enumerate() {
            if let Some(td) = self.check(
                format!("bundles[{i}].trust_domain"),
                TrustDomain::new(&b.trust_domain),
            ) && bundles.insert(td.clone(), resolve(&b.file)).is_some()
            {
                self.problem(
                    format!("bundles[{i}].trust_domain"),
                    format!("{td} is listed twice"),
                );
            }
        }
        if let Some(td) = &trust_domain
            && !bundles.contains_key(td)
        {
            self.problem(
                "bundles",
                format!("no bundle for the gateway's own trust domain {td}"),
            );
        }

        let peers = self.peers(&raw, trust_domain.as_ref(), &bundles);
        let services = self.services(&raw);
        let imports = self.imports(&raw, &services, &peers);
        let peer_domains = peers.values().map(|p| p.trust_domain.clone()).collect();
        let identity_map = self.identity_map(&raw, &peer_domains);
        let listeners = self.listeners(&raw, trust_domain.as_ref(), &services, &imports);
        let rules = self.rules(&raw, &services);
        let admin = raw
            .admin
            .as_ref()
            .and_then(|a| self.addr("admin.listen", &a.listen));
        let peer_listener = raw
            .peer_listener
            .as_ref()
            .and_then(|l| self.addr("peer_listener.listen", &l.listen));

        let d = Limits::default();
        let l = &raw.limits;
        let limits = Limits {
            max_header_bytes: match l.max_header_bytes {
                Some(n) if !(64..=65535).contains(&n) => {
                    self.problem(
                        "limits.max_header_bytes",
                        format!("{n} is outside 64..=65535"),
                    );
                    d.max_header_bytes
                }
                Some(n) => n,
                None => d.max_header_bytes,
            },
            max_streams_per_connection: match l.max_streams_per_connection {
                Some(0) => {
                    self.problem("limits.max_streams_per_connection", "must be at least 1");
                    d.max_streams_per_connection
                }
                Some(n) => n,
                None => d.max_streams_per_connection,
            },
            max_streams_per_peer: match l.max_streams_per_peer {
                Some(0) => {
                    self.problem("limits.max_streams_per_peer", "must be at least 1");
                    d.max_streams_per_peer
                }
                Some(n) => n,
                None => d.max_streams_per_peer,
            },
            request_timeout: self.duration(
                "limits.request_timeout",
                &l.request_timeout,
                d.request_timeout,
            ),
            connect_timeout: self.duration(
                "limits.connect_timeout",
                &l.connect_timeout,
                d.connect_timeout,
            ),
            idle_timeout: self.duration("limits.idle_timeout", &l.idle_timeout, d.idle_timeout),
            handshake_timeout: self.duration(
                "limits.handshake_timeout",
                &l.handshake_timeout,
                d.handshake_timeout,
            ),
        };

        Some(GatewayConfig {
            trust_domain: trust_domain?,
            id: id?,
            credentials: CredentialFiles {
                svid_cert: resolve(&raw.svid.cert),
                svid_key: resolve(&raw.svid.key),
                bundles,
            },
            admin,
            peer_listener,
            listeners,
            services,
            imports,
            peers,
            rules,
            identity_map,
            limits,
            controller,
        })
    }

    fn peers(
        &mut self,
        raw: &RawConfig,
        local: Option<&TrustDomain>,
        bundles: &BTreeMap<TrustDomain, PathBuf>,
    ) -> BTreeMap<String, Peer> {
        let mut peers = BTreeMap::new();
        let mut claimed: BTreeMap<TrustDomain, String> = BTreeMap::new();
        for (i, p) in raw.peers.iter().enumerate() {
            let at = format!("peers[{i}]");
            if p.name.is_empty() {
                self.problem(format!("{at}.name"), "is empty");
            }
            let Some(td) = self.check(
                format!("{at}.trust_domain"),
                TrustDomain::new(&p.trust_domain),
            ) else {
                continue;
            };
            if Some(&td) == local {
                self.problem(
                    format!("{at}.trust_domain"),
                    format!("{td} is the gateway's own trust domain"),
                );
            }
            if let Some(other) = claimed.insert(td.clone(), p.name.clone()) {
                self.problem(
                    format!("{at}.trust_domain"),
                    format!("{td} is already the trust domain of peer {other:?}"),
                );
            }
            if !bundles.contains_key(&td) {
                self.problem(
                    format!("{at}.trust_domain"),
                    format!("no bundle is configured for {td}"),
                );
            }
            if p.gateways.is_empty() {
                self.problem(
                    format!("{at}.gateways"),
                    "a peer needs at least one gateway",
                );
            }
            let mut gateways = Vec::new();
            for (j, g) in p.gateways.iter().enumerate() {
                let addr = self.addr(format!("{at}.gateways[{j}].address"), &g.address);
                let id = self.check(format!("{at}.gateways[{j}].id"), SpiffeId::workload(&g.id));
                if let Some(id) = &id
                    && !id.is_member_of(&td)
                {
                    self.problem(
                        format!("{at}.gateways[{j}].id"),
                        format!("{id} is not in the peer's trust domain {td}"),
                    );
                }
                if let (Some(addr), Some(id)) = (addr, id) {
                    gateways.push(PeerGateway { addr, id });
                }
            }
            if peers
                .insert(
                    p.name.clone(),
                    Peer {
                        trust_domain: td,
                        gateways,
                    },
                )
                .is_some()
            {
                self.problem(
                    format!("{at}.name"),
                    format!("peer {:?} is declared twice", p.name),
                );
            }
        }
        peers
    }

    fn services(&mut self, raw: &RawConfig) -> BTreeMap<Destination, LocalService> {
        let mut services = BTreeMap::new();
        for (i, s) in raw.services.iter().enumerate() {
            let at = format!("services[{i}]");
            let name = self.check(format!("{at}.name"), ServiceName::new(&s.name));
            if s.port == 0 {
                self.problem(format!("{at}.port"), "0 is not a port");
            }
            if s.endpoints.is_empty() {
                self.problem(
                    format!("{at}.endpoints"),
                    "a service needs at least one endpoint",
                );
            }
            let endpoints: Vec<SocketAddr> = s
                .endpoints
                .iter()
                .enumerate()
                .filter_map(|(j, e)| self.addr(format!("{at}.endpoints[{j}]"), e))
                .collect();
            let protocol = self.check(
                format!("{at}.protocol"),
                ServiceProtocol::parse(s.protocol.as_deref().unwrap_or("")),
            );
            if let (Some(service), Some(protocol)) = (name, protocol) {
                let dest = Destination {
                    service,
                    port: s.port,
                };
                // A service name and a port are always a valid value.
                let host = http::HeaderValue::from_str(&format!("{}:{}", dest.service, dest.port))
                    .unwrap_or_else(|_| http::HeaderValue::from_static("localhost"));
                if services
                    .insert(
                        dest.clone(),
                        LocalService {
                            endpoints,
                            host,
                            protocol,
                        },
                    )
                    .is_some()
                {
                    self.problem(
                        format!("{at}.name"),
                        format!("{}:{} is declared twice", dest.service, dest.port),
                    );
                }
            }
        }
        services
    }

    fn imports(
        &mut self,
        raw: &RawConfig,
        services: &BTreeMap<Destination, LocalService>,
        peers: &BTreeMap<String, Peer>,
    ) -> BTreeMap<Destination, Import> {
        let local_names: BTreeSet<&ServiceName> = services.keys().map(|d| &d.service).collect();
        let mut imports = BTreeMap::new();
        for (i, m) in raw.imports.iter().enumerate() {
            let at = format!("imports[{i}]");
            let name = self.check(format!("{at}.name"), ServiceName::new(&m.name));
            if !peers.contains_key(&m.peer) {
                self.problem(format!("{at}.peer"), format!("no peer named {:?}", m.peer));
            }
            let remote_name = match &m.remote_service {
                Some(r) => self.check(format!("{at}.remote_service"), ServiceName::new(r)),
                None => name.clone(),
            };
            let remote_port = m.remote_port.unwrap_or(m.port);
            if m.port == 0 || remote_port == 0 {
                self.problem(format!("{at}.port"), "0 is not a port");
            }
            let (Some(name), Some(remote_name)) = (name, remote_name) else {
                continue;
            };
            if local_names.contains(&name) {
                self.problem(
                    format!("{at}.name"),
                    format!("{name} clashes with a local service of that name"),
                );
            }
            let dest = Destination {
                service: name,
                port: m.port,
            };
            let import = Import {
                peer: m.peer.clone(),
                remote: Destination {
                    service: remote_name,
                    port: remote_port,
                },
            };
            if imports.insert(dest.clone(), import).is_some() {
                self.problem(
                    format!("{at}.name"),
                    format!("{}:{} is imported twice", dest.service, dest.port),
                );
            }
        }
        imports
    }

    fn listeners(
        &mut self,
        raw: &RawConfig,
        local: Option<&TrustDomain>,
        services: &BTreeMap<Destination, LocalService>,
        imports: &BTreeMap<Destination, Import>,
    ) -> Vec<Listener> {
        let mut out = Vec::new();
        let mut names = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            let at = format!("listeners[{i}]");
            if !names.insert(l.name.clone()) {
                self.problem(
                    format!("{at}.name"),
                    format!("listener {:?} is declared twice", l.name),
                );
            }
            let addr = self.addr(format!("{at}.listen"), &l.listen);
            // Port 0 asks the OS for a free port: those never collide.
            if let Some(a) = addr
                && a.port() != 0
                && !addrs.insert(a)
            {
                self.problem(
                    format!("{at}.listen"),
                    format!("{a} is used by another listener"),
                );
            }
            let caller = match (&l.caller.identity, l.caller.mtls) {
                (Some(id), false) => {
                    let id = self.check(format!("{at}.caller.identity"), SpiffeId::workload(id));
                    if let (Some(id), Some(td)) = (&id, local)
                        && !id.is_member_of(td)
                    {
                        self.problem(
                            format!("{at}.caller.identity"),
                            format!("{id} is not in the gateway's trust domain {td}; a local caller is one of ours"),
                        );
                    }
                    id.map(CallerMode::Assigned)
                }
                (None, true) => Some(CallerMode::Mtls),
                _ => {
                    self.problem(
                        format!("{at}.caller"),
                        "set exactly one of identity or mtls: true",
                    );
                    None
                }
            };
            let kind = match l.protocol.as_str() {
                "http" => {
                    if l.service.is_some() || l.port.is_some() {
                        self.problem(
                            format!("{at}.service"),
                            "an http listener routes by Host; service and port are for tcp",
                        );
                    }
                    Some(ListenerKind::Http)
                }
                "tcp" => match (&l.service, l.port) {
                    (Some(s), Some(port)) => self
                        .check(format!("{at}.service"), ServiceName::new(s))
                        .and_then(|service| {
                            let destination = Destination { service, port };
                            if services.contains_key(&destination)
                                || imports.contains_key(&destination)
                            {
                                Some(ListenerKind::Tcp { destination })
                            } else {
                                self.problem(
                                    format!("{at}.service"),
                                    format!(
                                        "{}:{port} is neither a local nor an imported service",
                                        destination.service
                                    ),
                                );
                                None
                            }
                        }),
                    _ => {
                        self.problem(
                            format!("{at}.service"),
                            "a tcp listener needs service and port",
                        );
                        None
                    }
                },
                other => {
                    self.problem(
                        format!("{at}.protocol"),
                        format!("{other:?} is not http or tcp"),
                    );
                    None
                }
            };
            if let (Some(addr), Some(kind), Some(caller)) = (addr, kind, caller) {
                out.push(Listener {
                    name: l.name.clone(),
                    addr,
                    kind,
                    caller,
                });
            }
        }
        out
    }

    fn rules(
        &mut self,
        raw: &RawConfig,
        services: &BTreeMap<Destination, LocalService>,
    ) -> Vec<Rule> {
        let mut rules = Vec::new();
        for (i, r) in raw.authorization.iter().enumerate() {
            let at = format!("authorization[{i}]");
            let service = if r.service == "*" {
                None
            } else {
                let Some(s) = self.check(format!("{at}.service"), ServiceName::new(&r.service))
                else {
                    continue;
                };
                if !services.keys().any(|d| d.service == s) {
                    self.problem(
                        format!("{at}.service"),
                        format!("no local service named {s}"),
                    );
                }
                Some(s)
            };
            if r.allow.is_empty() {
                self.problem(
                    format!("{at}.allow"),
                    "a rule must allow someone (deny is the default)",
                );
            }
            let allow = (r.allow.iter().enumerate())
                .filter_map(|(j, p)| self.principal(&format!("{at}.allow[{j}]"), p))
                .collect();
            rules.push(Rule {
                service,
                ports: r.ports.clone(),
                allow,
            });
        }
        rules
    }
}
