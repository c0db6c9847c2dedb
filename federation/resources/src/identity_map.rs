//! The identity map as a gateway applies it on inbound: (peer trust domain,
//! caller SPIFFE ID) → the local principal, or none.
//!
//! Compiled from admitted peerings into one segment trie per peer trust
//! domain. A lookup walks the caller's path segments without allocating;
//! it visits each trie node at most once, so it costs at most the size of
//! the trie, and usually the depth of the path. A caller of another trust
//! domain than the peer's never maps (a gateway cannot speak for a third
//! domain). Admission guarantees that all rules matching one ID name one
//! principal; should several match anyway, the most literal one wins
//! (a literal segment before `*`, `*` before `**`).

use std::collections::HashMap;

use causeway_trust::{SpiffeId, TrustDomain};

use crate::admission::ResourceSet;
use crate::names::PrincipalName;
use crate::pattern::{IdPattern, Segment};
use crate::peering::Peering;

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<String, Node>,
    star: Option<Box<Node>>,
    /// A rule ending in `**` here: one or more further segments.
    rest: Option<PrincipalName>,
    /// A rule ending exactly here.
    end: Option<PrincipalName>,
}

impl Node {
    fn insert(&mut self, segments: &[Segment], principal: &PrincipalName) {
        match segments.split_first() {
            None => {
                self.end.get_or_insert_with(|| principal.clone());
            }
            Some((Segment::DoubleStar, _)) => {
                self.rest.get_or_insert_with(|| principal.clone());
            }
            Some((Segment::Star, tail)) => self
                .star
                .get_or_insert_with(Box::default)
                .insert(tail, principal),
            Some((Segment::Literal(l), tail)) => self
                .literal
                .entry(l.clone())
                .or_default()
                .insert(tail, principal),
        }
    }

    /// `segments` are the caller's path segments not yet matched.
    fn lookup<'a, 's>(
        &'a self,
        mut segments: impl Iterator<Item = &'s str> + Clone,
    ) -> Option<&'a PrincipalName> {
        let mut after = segments.clone();
        let Some(seg) = after.next() else {
            return self.end.as_ref();
        };
        if let Some(found) = self.literal.get(seg).and_then(|n| n.lookup(after.clone())) {
            return Some(found);
        }
        if let Some(found) = self.star.as_ref().and_then(|n| n.lookup(after)) {
            return Some(found);
        }
        // `**` takes the rest, which is at least `seg`.
        segments.next().and(self.rest.as_ref())
    }
}

/// The compiled identity maps of every peering.
#[derive(Debug, Default)]
pub struct IdentityMap {
    domains: HashMap<String, Node>,
    rules: usize,
}

impl IdentityMap {
    /// Compiles the maps of admitted peerings.
    pub fn compile<'a>(peerings: impl IntoIterator<Item = &'a Peering>) -> Self {
        let mut map = Self::default();
        for p in peerings {
            let root = map
                .domains
                .entry(p.trust_domain.as_str().to_owned())
                .or_default();
            for rule in &p.identity_map {
                root.insert(rule.from.segments(), &rule.principal);
                map.rules += 1;
            }
        }
        map
    }

    /// Compiles rules given one by one: (peer trust domain, pattern,
    /// principal). A gateway's config carries its identity map this way.
    /// A pattern of another trust domain than the one it is filed under
    /// never matches (lookups check the caller's domain first).
    pub fn from_rules<'a>(
        rules: impl IntoIterator<Item = (&'a TrustDomain, &'a IdPattern, &'a PrincipalName)>,
    ) -> Self {
        let mut map = Self::default();
        for (td, pattern, principal) in rules {
            if pattern.trust_domain() != td {
                continue;
            }
            map.domains
                .entry(td.as_str().to_owned())
                .or_default()
                .insert(pattern.segments(), principal);
            map.rules += 1;
        }
        map
    }

    /// Compiles the maps of every peering of an admitted set.
    pub fn from_set(set: &ResourceSet) -> Self {
        Self::compile(set.peerings())
    }

    /// The local principal of a caller that a gateway of `peer` asserts.
    pub fn lookup(&self, peer: &TrustDomain, caller: &SpiffeId) -> Option<&PrincipalName> {
        if !caller.is_member_of(peer) {
            return None;
        }
        let root = self.domains.get(peer.as_str())?;
        let path = caller.path().strip_prefix('/')?;
        root.lookup(path.split('/'))
    }

    /// How many rules were compiled.
    pub fn len(&self) -> usize {
        self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }
}
