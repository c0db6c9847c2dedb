//! `kind: Service`: a local service, its ports and instances, and who may
//! call it. Deny by default: a call is allowed only when a rule covering
//! the port names the caller (by principal, ID, pattern or trust domain).

use std::collections::BTreeSet;
use std::fmt;

use causeway_trust::SpiffeId;

use crate::address::HostPort;
use crate::caller::{Allow, Caller, CallerFields, parse_allow};
use crate::names::ServiceName;
use crate::problem::Problems;
use crate::raw::{RawAllow, RawAuthorizationRule, RawServicePort, RawServiceSpec};

/// What a service port speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    /// HTTP/1.1 and h2c.
    Http,
    Http2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Http2 => "http2",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Self::Tcp),
            "http" => Ok(Self::Http),
            "http2" => Ok(Self::Http2),
            other => Err(format!("{other:?} is not tcp, http or http2")),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated local service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: ServiceName,
    pub ports: Vec<ServicePort>,
    /// Instances of every port that lists none of its own.
    pub endpoints: Vec<HostPort>,
    pub authorization: Vec<AuthorizationRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub port: u16,
    pub protocol: Protocol,
    /// This port's own instances; empty: the service's.
    pub endpoints: Vec<HostPort>,
}

/// An allow rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRule {
    /// Empty: every port of the service.
    pub ports: Vec<u16>,
    pub allow: Vec<Allow>,
}

impl Service {
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The instances serving a port.
    pub fn endpoints_of(&self, port: u16) -> &[HostPort] {
        match self.port(port) {
            Some(p) if !p.endpoints.is_empty() => &p.endpoints,
            Some(_) => &self.endpoints,
            None => &[],
        }
    }

    /// The rules' decision for a caller (with the local principal its
    /// identity maps to, if any) calling `port`.
    pub fn authorizes(&self, port: u16, caller: &SpiffeId, principal: Option<&str>) -> bool {
        self.port(port).is_some()
            && self.authorization.iter().any(|r| {
                (r.ports.is_empty() || r.ports.contains(&port))
                    && r.allow.iter().any(|a| match a {
                        Allow::Principal(p) => Some(p.as_str()) == principal,
                        Allow::Caller(c) => c.matches(caller),
                    })
            })
    }

    pub(crate) fn from_raw(p: &mut Problems, name: &str, raw: &RawServiceSpec) -> Option<Self> {
        let name = p.check("name", ServiceName::new(name));
        let endpoints = parse_endpoints(p, "spec.endpoints", &raw.endpoints);
        if raw.ports.is_empty() {
            p.push("spec.ports", "a service needs at least one port");
        }
        let mut ports = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, rp) in raw.ports.iter().enumerate() {
            let at = format!("spec.ports[{i}]");
            if rp.port == 0 {
                p.push(format!("{at}.port"), "0 is not a port");
            } else if !seen.insert(rp.port) {
                p.push(format!("{at}.port"), format!("{} is listed twice", rp.port));
            }
            let protocol = p.check(format!("{at}.protocol"), Protocol::parse(&rp.protocol));
            let own = parse_endpoints(p, &format!("{at}.endpoints"), &rp.endpoints);
            if rp.endpoints.is_empty() && raw.endpoints.is_empty() {
                p.push(
                    format!("{at}.endpoints"),
                    "no endpoint serves this port (list spec.endpoints or the port's own)",
                );
            }
            if let Some(protocol) = protocol {
                ports.push(ServicePort {
                    port: rp.port,
                    protocol,
                    endpoints: own,
                });
            }
        }
        let mut authorization = Vec::new();
        for (i, r) in raw.authorization.iter().enumerate() {
            let at = format!("spec.authorization[{i}]");
            for (j, port) in r.ports.iter().enumerate() {
                if !seen.contains(port) {
                    p.push(
                        format!("{at}.ports[{j}]"),
                        format!("the service has no port {port}"),
                    );
                }
            }
            if r.allow.is_empty() {
                p.push(
                    format!("{at}.allow"),
                    "a rule must allow someone (deny is the default)",
                );
            }
            let allow = r
                .allow
                .iter()
                .enumerate()
                .filter_map(|(j, a)| {
                    let fields = CallerFields {
                        principal: a.principal.as_deref(),
                        id: a.id.as_deref(),
                        pattern: a.pattern.as_deref(),
                        trust_domain: a.trust_domain.as_deref(),
                    };
                    parse_allow(p, &format!("{at}.allow[{j}]"), fields, true)
                })
                .collect();
            authorization.push(AuthorizationRule {
                ports: r.ports.clone(),
                allow,
            });
        }
        Some(Self {
            name: name?,
            ports,
            endpoints,
            authorization,
        })
    }

    /// The spec as YAML would hold it.
    pub fn to_raw(&self) -> RawServiceSpec {
        let hp = |v: &[HostPort]| v.iter().map(ToString::to_string).collect();
        RawServiceSpec {
            ports: self
                .ports
                .iter()
                .map(|sp| RawServicePort {
                    port: sp.port,
                    protocol: sp.protocol.as_str().to_owned(),
                    endpoints: hp(&sp.endpoints),
                })
                .collect(),
            endpoints: hp(&self.endpoints),
            authorization: self
                .authorization
                .iter()
                .map(|r| RawAuthorizationRule {
                    ports: r.ports.clone(),
                    allow: r.allow.iter().map(raw_allow).collect(),
                })
                .collect(),
        }
    }
}

fn raw_allow(a: &Allow) -> RawAllow {
    let mut raw = RawAllow::default();
    match a {
        Allow::Principal(p) => raw.principal = Some(p.to_string()),
        Allow::Caller(Caller::Id(id)) => raw.id = Some(id.to_string()),
        Allow::Caller(Caller::Pattern(pat)) => raw.pattern = Some(pat.to_string()),
        Allow::Caller(Caller::TrustDomain(td)) => raw.trust_domain = Some(td.to_string()),
    }
    raw
}

fn parse_endpoints(p: &mut Problems, field: &str, raw: &[String]) -> Vec<HostPort> {
    let mut out: Vec<HostPort> = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        if let Some(hp) = p.check(format!("{field}[{i}]"), HostPort::parse(e)) {
            if out.contains(&hp) {
                p.push(format!("{field}[{i}]"), format!("{hp} is listed twice"));
            } else {
                out.push(hp);
            }
        }
    }
    out
}
