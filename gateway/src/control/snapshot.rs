//! A controller's config snapshot turned into the gateway's config: the
//! local file's part (listeners, admin, peer listener, limits, the
//! `controller:` section) plus the snapshot's services, imports, peers,
//! rules and bundles, validated whole by [`GatewayConfig::from_raw`].
//!
//! Nothing here touches the disk or the running gateway: a snapshot that
//! fails here is refused (NACK) and leaves everything as it was.

use std::collections::BTreeMap;
use std::path::Path;

use causeway_proto::controller::v1 as pb;
use causeway_trust::{TrustBundle, TrustDomain};

use super::authorities_digest;
use crate::config::raw::{
    RawConfig, RawIdentityRule, RawImport, RawPeer, RawPeerGateway, RawPrincipal, RawRule,
    RawService,
};
use crate::config::{ConfigError, GatewayConfig, Problem, ServiceProtocol};

/// A snapshot ready to apply: the validated config and the bundles to
/// write before it takes effect.
#[derive(Debug, Clone)]
pub struct Converted {
    pub version: u64,
    pub config: GatewayConfig,
    pub bundles: Vec<TrustBundle>,
}

/// The name a snapshot's problems are reported under.
pub fn source_name(version: u64) -> String {
    format!("controller config version {version}")
}

/// Converts and validates a snapshot. `held` says whether a bundle for a
/// trust domain is already on disk (a snapshot need not repeat the own
/// bundle the gateway got with its SVID).
pub fn convert(
    template: &RawConfig,
    base: &Path,
    snapshot: &pb::ConfigSnapshot,
    held: impl Fn(&TrustDomain) -> bool,
) -> Result<Converted, ConfigError> {
    let mut problems = Vec::new();
    let mut problem = |field: String, reason: String| problems.push(Problem { field, reason });

    let mut bundles: BTreeMap<TrustDomain, TrustBundle> = BTreeMap::new();
    for (i, b) in snapshot.bundles.iter().enumerate() {
        let td = match TrustDomain::new(&b.trust_domain) {
            Ok(td) => td,
            Err(e) => {
                problem(format!("bundles[{i}].trust_domain"), e.to_string());
                continue;
            }
        };
        match TrustBundle::from_json(td.clone(), b.document.as_bytes()) {
            Ok(bundle) if bundle.x509_authorities().is_empty() => problem(
                format!("bundles[{i}].document"),
                "holds no X.509 authority".into(),
            ),
            Ok(bundle) if !b.digest.is_empty() && b.digest != authorities_digest(&bundle) => {
                problem(
                    format!("bundles[{i}].digest"),
                    format!(
                        "{:?} is not the digest of the document's authorities ({})",
                        b.digest,
                        authorities_digest(&bundle)
                    ),
                )
            }
            Ok(bundle) => {
                if bundles.insert(td.clone(), bundle).is_some() {
                    problem(
                        format!("bundles[{i}].trust_domain"),
                        format!("{td} is sent twice"),
                    );
                }
            }
            Err(e) => problem(format!("bundles[{i}].document"), e.to_string()),
        }
    }

    if !snapshot.svid_root.is_empty() && !is_sha256_hex(&snapshot.svid_root) {
        // A value no root can match would have the gateway renew for ever.
        problem(
            "svid_root".into(),
            format!(
                "{:?} is not the lower-case hex SHA-256 of a root",
                snapshot.svid_root
            ),
        );
    }

    for (i, s) in snapshot.services.iter().enumerate() {
        if let Err(e) = ServiceProtocol::parse(&s.protocol) {
            problem(format!("services[{i}].protocol"), e);
        }
    }
    let mut raw = template.clone();
    raw.services = snapshot
        .services
        .iter()
        .enumerate()
        .map(|(i, s)| RawService {
            name: s.name.clone(),
            port: port(&mut problem, format!("services[{i}].port"), s.port),
            protocol: Some(s.protocol.clone()).filter(|p| !p.is_empty()),
            endpoints: s.endpoints.clone(),
        })
        .collect();
    raw.imports = snapshot
        .imports
        .iter()
        .enumerate()
        .map(|(i, m)| RawImport {
            name: m.name.clone(),
            port: port(&mut problem, format!("imports[{i}].port"), m.port),
            peer: m.peer.clone(),
            remote_service: Some(m.remote_service.clone()).filter(|s| !s.is_empty()),
            remote_port: match m.remote_port {
                0 => None,
                p => Some(port(&mut problem, format!("imports[{i}].remote_port"), p)),
            },
        })
        .collect();
    raw.peers = snapshot
        .peers
        .iter()
        .map(|p| RawPeer {
            name: p.name.clone(),
            trust_domain: p.trust_domain.clone(),
            gateways: p
                .gateways
                .iter()
                .map(|g| RawPeerGateway {
                    address: g.address.clone(),
                    id: g.id.clone(),
                })
                .collect(),
        })
        .collect();
    for (i, p) in snapshot.peers.iter().enumerate() {
        if let Ok(td) = TrustDomain::new(&p.trust_domain)
            && !bundles.contains_key(&td)
            && !held(&td)
        {
            problem(
                format!("peers[{i}].trust_domain"),
                format!("no bundle for {td} in the snapshot or on disk"),
            );
        }
    }
    let mut rules = Vec::new();
    for (i, r) in snapshot.authorization.iter().enumerate() {
        let mut allow = Vec::new();
        for (j, p) in r.allow.iter().enumerate() {
            match principal(&format!("authorization[{i}].allow[{j}]"), p) {
                Ok(p) => allow.push(p),
                Err(e) => problems_push(&mut problem, e),
            }
        }
        rules.push(RawRule {
            service: r.service.clone(),
            ports: r
                .ports
                .iter()
                .enumerate()
                .map(|(j, p)| port(&mut problem, format!("authorization[{i}].ports[{j}]"), *p))
                .collect(),
            allow,
        });
    }
    raw.authorization = rules;
    if let Err(e) = apply_identity_map(&mut raw, &snapshot.identity_map) {
        problems_push(&mut problem, e);
    }

    let source = source_name(snapshot.version);
    if !problems.is_empty() {
        return Err(ConfigError {
            source_name: source,
            problems,
        });
    }
    let config = GatewayConfig::from_raw(&source, raw, base)?;
    Ok(Converted {
        version: snapshot.version,
        config,
        bundles: bundles.into_values().collect(),
    })
}

/// 64 lower-case hex digits.
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn problems_push(problem: &mut impl FnMut(String, String), p: Problem) {
    problem(p.field, p.reason);
}

fn port(problem: &mut impl FnMut(String, String), field: String, p: u32) -> u16 {
    u16::try_from(p).unwrap_or_else(|_| {
        problem(field, format!("{p} is not a port"));
        0
    })
}

/// One allow entry of a rule: exactly one of an ID, a pattern, a trust
/// domain or a local principal (which the identity map gives foreign
/// callers). The gateway's own validation checks each.
fn principal(field: &str, p: &pb::Principal) -> Result<RawPrincipal, Problem> {
    use pb::principal::Match;
    let mut raw = RawPrincipal::default();
    match &p.r#match {
        Some(Match::Id(v)) => raw.id = Some(v.clone()),
        Some(Match::TrustDomain(v)) => raw.trust_domain = Some(v.clone()),
        Some(Match::Pattern(v)) => raw.pattern = Some(v.clone()),
        Some(Match::Principal(v)) => raw.principal = Some(v.clone()),
        None => {
            return Err(Problem {
                field: field.to_owned(),
                reason: "sets none of id, pattern, trust_domain or principal".into(),
            });
        }
    }
    Ok(raw)
}

/// The snapshot's identity map into the raw config, checked with the rest
/// by the gateway's validation (patterns in their peer's domain, no two
/// overlapping patterns naming different principals).
fn apply_identity_map(raw: &mut RawConfig, map: &[pb::IdentityMapping]) -> Result<(), Problem> {
    raw.identity_map = map
        .iter()
        .map(|m| RawIdentityRule {
            peer_trust_domain: m.peer_trust_domain.clone(),
            pattern: m.pattern.clone(),
            principal: m.principal.clone(),
        })
        .collect();
    Ok(())
}
