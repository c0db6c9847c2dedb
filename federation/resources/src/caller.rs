//! Who may call: the caller selectors that export lists and authorization
//! rules share (an exact SPIFFE ID, a pattern, a whole trust domain), and
//! the local principal an authorization rule may name instead.

use std::fmt;

use causeway_trust::{SpiffeId, TrustDomain};

use crate::names::PrincipalName;
use crate::pattern::IdPattern;
use crate::problem::Problems;

/// A set of callers by their SPIFFE IDs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    Id(SpiffeId),
    Pattern(IdPattern),
    TrustDomain(TrustDomain),
}

impl Caller {
    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::Id(want) => want == id,
            Self::Pattern(p) => p.matches(id),
            Self::TrustDomain(td) => id.is_member_of(td),
        }
    }

    /// The trust domain every caller it selects belongs to.
    pub fn trust_domain(&self) -> TrustDomain {
        match self {
            Self::Id(id) => id.trust_domain(),
            Self::Pattern(p) => p.trust_domain().clone(),
            Self::TrustDomain(td) => td.clone(),
        }
    }

    /// The callers both select, if any: an exact ID either selects, the
    /// narrower of a pattern and its whole domain, or the intersection of
    /// two patterns.
    pub fn intersect(&self, other: &Caller) -> Option<Caller> {
        match (self, other) {
            (Self::Id(id), c) | (c, Self::Id(id)) => c.matches(id).then(|| Self::Id(id.clone())),
            (Self::TrustDomain(td), c) | (c, Self::TrustDomain(td)) => {
                (c.trust_domain() == *td).then(|| c.clone())
            }
            (Self::Pattern(a), Self::Pattern(b)) => a.intersect(b).map(Self::Pattern),
        }
    }

    /// The YAML key it is written under, and its value.
    pub(crate) fn key_value(&self) -> (&'static str, String) {
        match self {
            Self::Id(id) => ("id", id.to_string()),
            Self::Pattern(p) => ("pattern", p.to_string()),
            Self::TrustDomain(td) => ("trustDomain", td.to_string()),
        }
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (k, v) = self.key_value();
        write!(f, "{k} {v}")
    }
}

/// Who an authorization rule lets in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Allow {
    /// A local principal, as the identity maps produce for foreign callers.
    Principal(PrincipalName),
    Caller(Caller),
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Principal(p) => write!(f, "principal {p}"),
            Self::Caller(c) => c.fmt(f),
        }
    }
}

/// The fields a caller selector may be written with; exactly one is set.
pub(crate) struct CallerFields<'a> {
    pub(crate) principal: Option<&'a str>,
    pub(crate) id: Option<&'a str>,
    pub(crate) pattern: Option<&'a str>,
    pub(crate) trust_domain: Option<&'a str>,
}

/// Parses a selector at `field`; `principals` says whether a principal is
/// allowed there (authorization rules) or not (export callers).
pub(crate) fn parse_allow(
    p: &mut Problems,
    field: &str,
    f: CallerFields<'_>,
    principals: bool,
) -> Option<Allow> {
    let wanted = if principals {
        "set exactly one of principal, id, pattern or trustDomain"
    } else {
        "set exactly one of id, pattern or trustDomain"
    };
    let set = [f.principal, f.id, f.pattern, f.trust_domain]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if set != 1 || (!principals && f.principal.is_some()) {
        p.push(field, wanted);
        return None;
    }
    if let Some(s) = f.principal {
        return p
            .check(format!("{field}.principal"), PrincipalName::new(s))
            .map(Allow::Principal);
    }
    if let Some(s) = f.id {
        return p
            .check(format!("{field}.id"), SpiffeId::workload(s))
            .map(|id| Allow::Caller(Caller::Id(id)));
    }
    if let Some(s) = f.pattern {
        return p
            .check(format!("{field}.pattern"), IdPattern::new(s))
            .map(|pat| Allow::Caller(Caller::Pattern(pat)));
    }
    let s = f.trust_domain?;
    p.check(format!("{field}.trustDomain"), TrustDomain::new(s))
        .map(|td| Allow::Caller(Caller::TrustDomain(td)))
}
