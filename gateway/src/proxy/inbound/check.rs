//! The checks on a stream arriving from a peer gateway, in order. The TLS
//! layer has already checked that the peer's chain validates against the
//! bundle of the trust domain its ID names.
//!
//! 1. the peer is one of the gateways configured for a peer of that domain;
//! 2. the caller in the stream header belongs to that same domain: a
//!    gateway never speaks for a third domain;
//! 3. the caller is mapped to at most one local principal by the identity
//!    map (a caller no entry matches keeps only its SPIFFE ID);
//! 4. the destination is a local service;
//! 5. a rule allows the caller to reach it (deny by default): by its ID,
//!    its trust domain, a pattern, or the principal it was mapped to.

use causeway_trust::{SpiffeId, TrustDomain};

use crate::config::{Destination, GatewayConfig, PrincipalName};
use crate::reason::Reason;
use crate::transport::header::StreamHeader;

/// Why an inbound stream was refused. Each has its own metric label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{gateway} is not a gateway of any configured peer")]
    NotAPeerGateway { gateway: SpiffeId },
    #[error(
        "gateway {gateway} asserted caller {caller}, outside its own trust domain {peer_domain}"
    )]
    ForeignCaller {
        gateway: SpiffeId,
        caller: SpiffeId,
        peer_domain: TrustDomain,
    },
    #[error("{}:{} is not a local service", .destination.service, .destination.port)]
    UnknownService { destination: Destination },
    #[error("no rule allows {caller}{} to reach {}:{}", as_principal(.principal.as_ref()),
        .destination.service, .destination.port)]
    Denied {
        caller: SpiffeId,
        /// What the identity map made of the caller.
        principal: Option<PrincipalName>,
        destination: Destination,
    },
}

fn as_principal(p: Option<&PrincipalName>) -> String {
    p.map(|p| format!(" (principal {p})")).unwrap_or_default()
}

/// A stream that passed the checks: where it goes, and the local principal
/// the caller was mapped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub destination: Destination,
    pub principal: Option<PrincipalName>,
}

impl Refusal {
    /// Its label, from the closed set.
    pub fn reason(&self) -> Reason {
        match self {
            Self::NotAPeerGateway { .. } => Reason::NotAPeerGateway,
            Self::ForeignCaller { .. } => Reason::ForeignCaller,
            Self::UnknownService { .. } => Reason::UnknownService,
            Self::Denied { .. } => Reason::Denied,
        }
    }
}

/// Runs the inbound checks for a stream from `gateway` carrying `header`.
/// Returns the local destination to connect to and the caller's principal.
pub fn check(
    config: &GatewayConfig,
    gateway: &SpiffeId,
    header: &StreamHeader,
) -> Result<Admitted, Refusal> {
    let peer = config
        .peers
        .values()
        .find(|p| {
            gateway.is_member_of(&p.trust_domain) && p.gateways.iter().any(|g| g.id == *gateway)
        })
        .ok_or_else(|| Refusal::NotAPeerGateway {
            gateway: gateway.clone(),
        })?;
    if !header.caller.is_member_of(&peer.trust_domain) {
        return Err(Refusal::ForeignCaller {
            gateway: gateway.clone(),
            caller: header.caller.clone(),
            peer_domain: peer.trust_domain.clone(),
        });
    }
    let principal = config
        .identity_map
        .lookup(&peer.trust_domain, &header.caller);
    let destination = Destination {
        service: header.service.clone(),
        port: header.port,
    };
    if !config.services.contains_key(&destination) {
        return Err(Refusal::UnknownService { destination });
    }
    if !config.authorizes_as(&header.caller, principal, &destination) {
        return Err(Refusal::Denied {
            caller: header.caller.clone(),
            principal: principal.cloned(),
            destination,
        });
    }
    Ok(Admitted {
        destination,
        principal: principal.cloned(),
    })
}
