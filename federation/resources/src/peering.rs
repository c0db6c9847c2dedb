//! `kind: Peering`: one peer trust domain, validated on its own. Everything
//! a peering says about the peer must be in the peer's trust domain; its
//! first bundle must be a SPIFFE bundle of that domain. Checks against other
//! resources (trust domains claimed twice, principals, names) are
//! [`crate::admission`]'s.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use causeway_trust::{SpiffeId, TrustBundle, TrustDomain};

use crate::address::{HostPort, HttpsUrl};
use crate::caller::{Allow, Caller, CallerFields, parse_allow};
use crate::names::{PrincipalName, ResourceName, ServiceName};
use crate::pattern::IdPattern;
use crate::problem::Problems;
use crate::raw::{
    RawBundleEndpoint, RawCaller, RawExport, RawFirstBundle, RawIdentityRule, RawImport,
    RawPeerGateway, RawPeeringSpec,
};

/// A validated peering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peering {
    pub name: ResourceName,
    pub trust_domain: TrustDomain,
    pub bundle_endpoint: BundleEndpoint,
    pub first_bundle: FirstBundle,
    pub gateways: Vec<PeerGateway>,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    pub identity_map: Vec<IdentityRule>,
}

/// The peer's SPIFFE bundle endpoint (https_spiffe profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEndpoint {
    pub url: HttpsUrl,
    /// The ID the endpoint's server certificate must carry.
    pub spiffe_id: SpiffeId,
}

/// The peer's bundle as first trusted, before any refresh from its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstBundle {
    /// The file it was read from, as written (relative to the peering file);
    /// `None` when it came inline (from the store).
    pub file: Option<PathBuf>,
    pub bundle: TrustBundle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGateway {
    pub address: HostPort,
    pub id: SpiffeId,
}

/// A local service the peer may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub service: ServiceName,
    pub ports: Vec<u16>,
    /// `None`: every caller of the peer's domain.
    pub callers: Option<Vec<Caller>>,
}

/// A service of the peer that local callers may call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// Its name at the peer.
    pub service: ServiceName,
    pub ports: Vec<u16>,
    /// The name local callers use.
    pub local_name: ServiceName,
}

/// Foreign IDs matching `from` are the local principal `principal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRule {
    pub from: IdPattern,
    pub principal: PrincipalName,
    /// Other rules may name the same principal (all of them must say so).
    pub shared: bool,
}

impl Peering {
    /// Validates a peering's spec. `base` is the directory of the file it
    /// came from: a relative first-bundle path is taken from there.
    pub(crate) fn from_raw(
        p: &mut Problems,
        name: &str,
        raw: &RawPeeringSpec,
        base: &Path,
    ) -> Option<Self> {
        let name = p.check("name", ResourceName::new(name));
        let td = p.check("spec.trustDomain", TrustDomain::new(&raw.trust_domain));
        let url = p.check(
            "spec.bundleEndpoint.url",
            HttpsUrl::parse(&raw.bundle_endpoint.url),
        );
        let endpoint_id = in_domain(
            p,
            "spec.bundleEndpoint.spiffeId",
            &raw.bundle_endpoint.spiffe_id,
            td.as_ref(),
        );
        let first_bundle = td
            .as_ref()
            .and_then(|td| first_bundle(p, &raw.first_bundle, td, base));

        if raw.gateways.is_empty() {
            p.push("spec.gateways", "a peering needs at least one gateway");
        }
        let mut gateways = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, g) in raw.gateways.iter().enumerate() {
            let at = format!("spec.gateways[{i}]");
            let address = p.check(format!("{at}.address"), HostPort::parse(&g.address));
            let id = in_domain(p, &format!("{at}.id"), &g.id, td.as_ref());
            if let Some(a) = &address
                && !seen.insert(a.clone())
            {
                p.push(format!("{at}.address"), format!("{a} is listed twice"));
            }
            if let (Some(address), Some(id)) = (address, id) {
                gateways.push(PeerGateway { address, id });
            }
        }

        let exports = exports(p, &raw.exports, td.as_ref());
        let imports = imports(p, &raw.imports);
        let mut identity_map = Vec::new();
        for (i, r) in raw.identity_map.iter().enumerate() {
            let at = format!("spec.identityMap[{i}]");
            let from = p.check(format!("{at}.from"), IdPattern::new(&r.from));
            if let (Some(from), Some(td)) = (&from, &td)
                && from.trust_domain() != td
            {
                p.push(
                    format!("{at}.from"),
                    format!("{from} is not in the peer's trust domain {td}"),
                );
            }
            let principal = p.check(format!("{at}.principal"), PrincipalName::new(&r.principal));
            if let (Some(from), Some(principal)) = (from, principal) {
                identity_map.push(IdentityRule {
                    from,
                    principal,
                    shared: r.shared,
                });
            }
        }

        Some(Self {
            name: name?,
            trust_domain: td?,
            bundle_endpoint: BundleEndpoint {
                url: url?,
                spiffe_id: endpoint_id?,
            },
            first_bundle: first_bundle?,
            gateways,
            exports,
            imports,
            identity_map,
        })
    }

    /// The spec as YAML would hold it. The first bundle is written inline,
    /// so the result stands on its own (as the store keeps it).
    pub fn to_raw(&self) -> RawPeeringSpec {
        let bundle_doc = serde_json::from_str(&self.first_bundle.bundle.to_json()).ok();
        RawPeeringSpec {
            trust_domain: self.trust_domain.to_string(),
            bundle_endpoint: RawBundleEndpoint {
                url: self.bundle_endpoint.url.to_string(),
                spiffe_id: self.bundle_endpoint.spiffe_id.to_string(),
            },
            first_bundle: RawFirstBundle {
                file: None,
                inline: bundle_doc,
            },
            gateways: self
                .gateways
                .iter()
                .map(|g| RawPeerGateway {
                    address: g.address.to_string(),
                    id: g.id.to_string(),
                })
                .collect(),
            exports: self
                .exports
                .iter()
                .map(|e| RawExport {
                    service: e.service.to_string(),
                    ports: e.ports.clone(),
                    callers: e
                        .callers
                        .as_ref()
                        .map(|cs| cs.iter().map(raw_caller).collect()),
                })
                .collect(),
            imports: self
                .imports
                .iter()
                .map(|m| RawImport {
                    service: m.service.to_string(),
                    ports: m.ports.clone(),
                    local_name: (m.local_name != m.service).then(|| m.local_name.to_string()),
                })
                .collect(),
            identity_map: self
                .identity_map
                .iter()
                .map(|r| RawIdentityRule {
                    from: r.from.to_string(),
                    principal: r.principal.to_string(),
                    shared: r.shared,
                })
                .collect(),
        }
    }
}

fn raw_caller(c: &Caller) -> RawCaller {
    let mut raw = RawCaller::default();
    match c {
        Caller::Id(id) => raw.id = Some(id.to_string()),
        Caller::Pattern(p) => raw.pattern = Some(p.to_string()),
        Caller::TrustDomain(td) => raw.trust_domain = Some(td.to_string()),
    }
    raw
}

/// A workload SPIFFE ID that must be in the peer's domain (when known).
fn in_domain(p: &mut Problems, field: &str, s: &str, td: Option<&TrustDomain>) -> Option<SpiffeId> {
    let id = p.check(field, SpiffeId::workload(s))?;
    if let Some(td) = td
        && !id.is_member_of(td)
    {
        p.push(
            field,
            format!("{id} is not in the peer's trust domain {td}"),
        );
        return None;
    }
    Some(id)
}

fn first_bundle(
    p: &mut Problems,
    raw: &RawFirstBundle,
    td: &TrustDomain,
    base: &Path,
) -> Option<FirstBundle> {
    let (field, text, file) = match (&raw.file, &raw.inline) {
        (Some(file), None) => {
            let path = if file.is_absolute() {
                file.clone()
            } else {
                base.join(file)
            };
            let field = "spec.firstBundle.file";
            match std::fs::read(&path) {
                Ok(text) => (field, text, Some(file.clone())),
                Err(e) => {
                    p.push(field, format!("cannot read {}: {e}", path.display()));
                    return None;
                }
            }
        }
        (None, Some(doc)) => (
            "spec.firstBundle.inline",
            serde_json::to_vec(doc).unwrap_or_default(),
            None,
        ),
        _ => {
            p.push("spec.firstBundle", "set exactly one of file or inline");
            return None;
        }
    };
    let bundle = match TrustBundle::from_json(td.clone(), &text) {
        Ok(b) => b,
        Err(e) => {
            p.push(field, format!("not a SPIFFE bundle document: {e}"));
            return None;
        }
    };
    if bundle.x509_authorities().is_empty() {
        p.push(field, "the bundle holds no X.509 authority");
        return None;
    }
    for (i, cert) in bundle.x509_authorities().iter().enumerate() {
        if let Some(id) = causeway_trust::svid::ca_spiffe_id(cert)
            && !id.is_member_of(td)
        {
            p.push(
                field,
                format!(
                    "the bundle is for {} (authority {i} is {id}), not for the peer's trust domain {td}",
                    id.trust_domain()
                ),
            );
            return None;
        }
    }
    Some(FirstBundle { file, bundle })
}

fn ports(p: &mut Problems, field: &str, ports: &[u16]) -> Vec<u16> {
    if ports.is_empty() {
        p.push(field, "list at least one port");
    }
    let mut seen = BTreeSet::new();
    for (i, &port) in ports.iter().enumerate() {
        if port == 0 {
            p.push(format!("{field}[{i}]"), "0 is not a port");
        } else if !seen.insert(port) {
            p.push(format!("{field}[{i}]"), format!("{port} is listed twice"));
        }
    }
    ports.to_vec()
}

fn exports(p: &mut Problems, raw: &[RawExport], td: Option<&TrustDomain>) -> Vec<Export> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, e) in raw.iter().enumerate() {
        let at = format!("spec.exports[{i}]");
        let service = p.check(format!("{at}.service"), ServiceName::new(&e.service));
        if let Some(s) = &service
            && !seen.insert(s.clone())
        {
            p.push(
                format!("{at}.service"),
                format!("{s} is exported twice; list all its ports in one entry"),
            );
        }
        let ports = ports(p, &format!("{at}.ports"), &e.ports);
        let callers = e.callers.as_ref().map(|cs| {
            if cs.is_empty() {
                p.push(
                    format!("{at}.callers"),
                    "an empty list lets nobody in; omit callers for every caller of the peer",
                );
            }
            let mut out = Vec::new();
            for (j, c) in cs.iter().enumerate() {
                let field = format!("{at}.callers[{j}]");
                let fields = CallerFields {
                    principal: None,
                    id: c.id.as_deref(),
                    pattern: c.pattern.as_deref(),
                    trust_domain: c.trust_domain.as_deref(),
                };
                if let Some(Allow::Caller(c)) = parse_allow(p, &field, fields, false) {
                    let (key, _) = c.key_value();
                    if let Some(td) = td
                        && c.trust_domain() != *td
                    {
                        p.push(
                            format!("{field}.{key}"),
                            format!("{c} is not in the peer's trust domain {td}"),
                        );
                    }
                    out.push(c);
                }
            }
            out
        });
        if let Some(service) = service {
            out.push(Export {
                service,
                ports,
                callers,
            });
        }
    }
    out
}

fn imports(p: &mut Problems, raw: &[RawImport]) -> Vec<Import> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, m) in raw.iter().enumerate() {
        let at = format!("spec.imports[{i}]");
        let service = p.check(format!("{at}.service"), ServiceName::new(&m.service));
        let ports = ports(p, &format!("{at}.ports"), &m.ports);
        let (local_field, local_name) = match &m.local_name {
            Some(l) => (
                format!("{at}.localName"),
                p.check(format!("{at}.localName"), ServiceName::new(l)),
            ),
            None => (format!("{at}.service"), service.clone()),
        };
        if let Some(l) = &local_name
            && !seen.insert(l.clone())
        {
            p.push(
                local_field,
                format!("{l} is imported twice; list all its ports in one entry"),
            );
        }
        if let (Some(service), Some(local_name)) = (service, local_name) {
            out.push(Import {
                service,
                ports,
                local_name,
            });
        }
    }
    out
}
