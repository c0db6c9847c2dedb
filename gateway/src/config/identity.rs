//! Who authorization rules name, and the identity map that turns a foreign
//! caller into a local principal on inbound.
//!
//! The pattern language and the compiled map are causeway-resources' own
//! ([`IdPattern`], [`IdentityMap`]): the controller admits peerings with
//! them and the gateway applies them, so both sides agree on what a
//! pattern matches by construction, and the matcher is property-tested
//! once. That crate is pure (no I/O), so the data plane takes nothing
//! more than parsing code from it.

use std::collections::BTreeSet;
use std::sync::Arc;

use causeway_resources::names::PrincipalName;
use causeway_resources::{IdPattern, IdentityMap};
use causeway_trust::{SpiffeId, TrustDomain};

use super::Validator;
use super::raw::{RawConfig, RawPrincipal};

/// Who a rule lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Id(SpiffeId),
    TrustDomain(TrustDomain),
    /// Every ID the pattern matches.
    Pattern(IdPattern),
    /// A foreign caller the identity map gives this local principal.
    Local(PrincipalName),
}

impl Principal {
    /// Whether `id` (mapped to `mapped`, for a foreign caller) is let in.
    pub fn matches(&self, id: &SpiffeId, mapped: Option<&PrincipalName>) -> bool {
        match self {
            Self::Id(p) => p == id,
            Self::TrustDomain(td) => id.is_member_of(td),
            Self::Pattern(p) => p.matches(id),
            Self::Local(p) => mapped == Some(p),
        }
    }
}

/// One identity map entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRule {
    pub peer_trust_domain: TrustDomain,
    pub pattern: IdPattern,
    pub principal: PrincipalName,
}

/// The identity map of a config: its entries, and their compiled form
/// (one segment trie per peer trust domain; a lookup does not allocate).
#[derive(Debug, Clone, Default)]
pub struct IdentityRules {
    rules: Vec<IdentityRule>,
    compiled: Arc<IdentityMap>,
}

impl PartialEq for IdentityRules {
    fn eq(&self, other: &Self) -> bool {
        self.rules == other.rules
    }
}

impl Eq for IdentityRules {}

impl IdentityRules {
    pub fn new(rules: Vec<IdentityRule>) -> Self {
        let compiled = IdentityMap::from_rules(
            rules
                .iter()
                .map(|r| (&r.peer_trust_domain, &r.pattern, &r.principal)),
        );
        Self {
            rules,
            compiled: Arc::new(compiled),
        }
    }

    pub fn rules(&self) -> &[IdentityRule] {
        &self.rules
    }

    /// The local principal of `caller`, asserted by a gateway of `peer`.
    /// A caller outside `peer` never maps.
    pub fn lookup(&self, peer: &TrustDomain, caller: &SpiffeId) -> Option<&PrincipalName> {
        self.compiled.lookup(peer, caller)
    }
}

impl Validator {
    /// A rule's principal: exactly one of `id`, `trust_domain`, `pattern`,
    /// `principal`.
    pub(super) fn principal(&mut self, field: &str, p: &RawPrincipal) -> Option<Principal> {
        match (&p.id, &p.trust_domain, &p.pattern, &p.principal) {
            (Some(id), None, None, None) => self
                .check(format!("{field}.id"), SpiffeId::workload(id))
                .map(Principal::Id),
            (None, Some(td), None, None) => self
                .check(format!("{field}.trust_domain"), TrustDomain::new(td))
                .map(Principal::TrustDomain),
            (None, None, Some(pattern), None) => self
                .check(format!("{field}.pattern"), IdPattern::new(pattern))
                .map(Principal::Pattern),
            (None, None, None, Some(name)) => self
                .check(format!("{field}.principal"), PrincipalName::new(name))
                .map(Principal::Local),
            _ => {
                self.problem(
                    field,
                    "set exactly one of id, trust_domain, pattern or principal",
                );
                None
            }
        }
    }

    /// The identity map: each pattern in its peer's trust domain, a
    /// configured peer's; no two entries that match a common ID with
    /// different principals (the map must be a function).
    pub(super) fn identity_map(
        &mut self,
        raw: &RawConfig,
        peer_domains: &BTreeSet<TrustDomain>,
    ) -> IdentityRules {
        let mut rules: Vec<IdentityRule> = Vec::new();
        // Where each kept rule is in the file, for refusals naming it.
        let mut at_index: Vec<usize> = Vec::new();
        for (i, r) in raw.identity_map.iter().enumerate() {
            let at = format!("identity_map[{i}]");
            let td = self.check(
                format!("{at}.peer_trust_domain"),
                TrustDomain::new(&r.peer_trust_domain),
            );
            let pattern = self.check(format!("{at}.pattern"), IdPattern::new(&r.pattern));
            let principal = self.check(format!("{at}.principal"), PrincipalName::new(&r.principal));
            let (Some(td), Some(pattern), Some(principal)) = (td, pattern, principal) else {
                continue;
            };
            if !peer_domains.contains(&td) {
                self.problem(
                    format!("{at}.peer_trust_domain"),
                    format!("{td} is not the trust domain of a configured peer"),
                );
            }
            if pattern.trust_domain() != &td {
                self.problem(
                    format!("{at}.pattern"),
                    format!(
                        "{} is not in the peer's trust domain {td}; a peer's gateways only speak for their own domain",
                        pattern.as_str()
                    ),
                );
                continue;
            }
            for (other, j) in rules.iter().zip(&at_index) {
                if other.peer_trust_domain != td || other.principal == principal {
                    continue;
                }
                if let Some(witness) = pattern.overlap(&other.pattern) {
                    self.problem(
                        format!("{at}.pattern"),
                        format!(
                            "{} and identity_map[{j}] ({}) both match {witness} but name different principals ({principal}, {})",
                            pattern.as_str(),
                            other.pattern.as_str(),
                            other.principal
                        ),
                    );
                }
            }
            rules.push(IdentityRule {
                peer_trust_domain: td,
                pattern,
                principal,
            });
            at_index.push(i);
        }
        IdentityRules::new(rules)
    }
}
