//! Admission: whether a set of resources may stand together. The set is what
//! the store holds with the incoming resources applied over it (same kind
//! and name: replaced; new: added; nothing removed). A conflict is reported
//! on the incoming resource involved, naming the other one, so that a
//! refusal always points into the file being applied. Everything found is
//! reported at once.
//!
//! Refused:
//! - a peering claiming the local trust domain, or one another peering
//!   claims;
//! - two identity-map rules (in one peering or across peerings) naming the
//!   same local principal, unless every rule naming it says `shared: true`;
//! - two rules of one peering whose patterns match a common ID and name
//!   different principals (ambiguous);
//! - an imported local name that is a local Service's name or another
//!   peering's import;
//! - an export of a Service that does not exist, or of a port it lacks;
//! - the same resource twice among the incoming.
//!
//! Each resource's own checks (syntax, IDs in the peer's domain, the first
//! bundle) were done when it was parsed.

use std::collections::{BTreeMap, BTreeSet};

use causeway_trust::TrustDomain;

use crate::peering::{Import, Peering};
use crate::problem::{Problem, ResourceError};
use crate::resource::{Entry, Kind, Resource};
use crate::service::Service;

/// Resources by kind and name, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceSet {
    entries: Vec<Entry>,
}

impl ResourceSet {
    /// A set of resources already admitted (as the store returns them).
    pub fn new(entries: Vec<Entry>) -> Self {
        Self { entries }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<Entry> {
        self.entries
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.resource.kind() == kind && e.resource.name() == name)
    }

    /// Removes a resource (what `causeway delete` does); the rest should be
    /// checked with [`check`] before it is stored.
    pub fn remove(&mut self, kind: Kind, name: &str) -> Option<Entry> {
        let i = self
            .entries
            .iter()
            .position(|e| e.resource.kind() == kind && e.resource.name() == name)?;
        Some(self.entries.remove(i))
    }

    pub fn peerings(&self) -> impl Iterator<Item = &Peering> {
        self.entries.iter().filter_map(|e| match &e.resource {
            Resource::Peering(p) => Some(&**p),
            Resource::Service(_) => None,
        })
    }

    pub fn services(&self) -> impl Iterator<Item = &Service> {
        self.entries.iter().filter_map(|e| match &e.resource {
            Resource::Service(s) => Some(s),
            Resource::Peering(_) => None,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Applies `incoming` over `current` and admits the result, which is
/// returned. `local` is the controller's own trust domain.
pub fn admit(
    local: &TrustDomain,
    current: &ResourceSet,
    incoming: Vec<Entry>,
) -> Result<ResourceSet, ResourceError> {
    let mut problems = Vec::new();
    let mut entries = current.entries.clone();
    let mut is_new = vec![false; entries.len()];
    let mut seen: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    for entry in incoming {
        let key = (entry.resource.kind(), entry.resource.name().to_owned());
        if let Some(&first) = seen.get(&key) {
            let other: &Entry = &entries[first];
            problems.push(problem(
                &entry,
                "name",
                format!(
                    "{} is declared twice among the resources applied (also in {})",
                    entry.resource.key(),
                    other.origin
                ),
            ));
            continue;
        }
        let at = match entries
            .iter()
            .position(|e| e.resource.kind() == key.0 && e.resource.name() == key.1)
        {
            Some(i) => {
                entries[i] = entry;
                is_new[i] = true;
                i
            }
            None => {
                entries.push(entry);
                is_new.push(true);
                entries.len() - 1
            }
        };
        seen.insert(key, at);
    }
    problems.extend(conflicts(local, &entries, &is_new));
    if problems.is_empty() {
        Ok(ResourceSet { entries })
    } else {
        Err(ResourceError { problems })
    }
}

/// Admits a whole set as it stands, every resource taken as incoming (a
/// store read back, or a set after a deletion).
pub fn check(local: &TrustDomain, set: &ResourceSet) -> Result<(), ResourceError> {
    let problems = conflicts(local, &set.entries, &vec![true; set.entries.len()]);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ResourceError { problems })
    }
}

fn problem(entry: &Entry, field: impl Into<String>, reason: impl Into<String>) -> Problem {
    Problem {
        file: entry.origin.file.clone(),
        document: entry.origin.document,
        resource: Some(entry.resource.key()),
        field: field.into(),
        reason: reason.into(),
    }
}

/// Of two conflicting items (entry index first), the one to report on: the
/// later incoming one, or `None` when neither is incoming.
fn blame<T: Copy>(
    is_new: &[bool],
    a: (usize, T),
    b: (usize, T),
) -> Option<((usize, T), (usize, T))> {
    match (is_new[a.0], is_new[b.0]) {
        (_, true) => Some((b, a)),
        (true, false) => Some((a, b)),
        (false, false) => None,
    }
}

fn describe(e: &Entry) -> String {
    format!("{} ({})", e.resource.key(), e.origin)
}

fn import_field(i: usize, m: &Import) -> String {
    if m.local_name == m.service {
        format!("spec.imports[{i}].service")
    } else {
        format!("spec.imports[{i}].localName")
    }
}

fn conflicts(local: &TrustDomain, entries: &[Entry], is_new: &[bool]) -> Vec<Problem> {
    let mut out = Vec::new();
    let peerings: Vec<(usize, &Peering)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.resource {
            Resource::Peering(p) => Some((i, &**p)),
            Resource::Service(_) => None,
        })
        .collect();
    let services: BTreeMap<&str, (usize, &Service)> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.resource {
            Resource::Service(s) => Some((s.name.as_str(), (i, s))),
            Resource::Peering(_) => None,
        })
        .collect();

    // Trust domains.
    for (n, &(i, p)) in peerings.iter().enumerate() {
        if is_new[i] && p.trust_domain == *local {
            out.push(problem(
                &entries[i],
                "spec.trustDomain",
                format!("{local} is this controller's own trust domain; a peer cannot claim it"),
            ));
        }
        for &(j, q) in &peerings[..n] {
            if p.trust_domain == q.trust_domain
                && let Some(((b, ()), (o, ()))) = blame(is_new, (j, ()), (i, ()))
            {
                out.push(problem(
                    &entries[b],
                    "spec.trustDomain",
                    format!(
                        "{} is already the trust domain of {}",
                        p.trust_domain,
                        describe(&entries[o])
                    ),
                ));
            }
        }
    }

    // Identity map: one principal per foreign identity, one foreign
    // identity per principal unless shared.
    let mut by_principal: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for &(i, p) in &peerings {
        for (r, rule) in p.identity_map.iter().enumerate() {
            by_principal
                .entry(rule.principal.as_str())
                .or_default()
                .push((i, r));
        }
        if !is_new[i] {
            continue;
        }
        for (r, rule) in p.identity_map.iter().enumerate() {
            for (s, earlier) in p.identity_map[..r].iter().enumerate() {
                if earlier.principal == rule.principal {
                    continue;
                }
                if let Some(witness) = earlier.from.overlap(&rule.from) {
                    out.push(problem(
                        &entries[i],
                        format!("spec.identityMap[{r}].from"),
                        format!(
                            "{} overlaps spec.identityMap[{s}].from ({}): {witness} would map to both {} and {}; one foreign identity must map to one principal",
                            rule.from, earlier.from, earlier.principal, rule.principal
                        ),
                    ));
                }
            }
        }
    }
    for (principal, rules) in &by_principal {
        let all_shared = rules.iter().all(|&(i, r)| rule_shared(&entries[i], r));
        if all_shared {
            continue;
        }
        let mut reported = BTreeSet::new();
        for (n, &b) in rules.iter().enumerate() {
            for &a in &rules[..n] {
                let Some(((bi, br), (oi, or))) = blame(is_new, a, b) else {
                    continue;
                };
                if !reported.insert((bi, br)) {
                    continue;
                }
                let other = if oi == bi {
                    format!("spec.identityMap[{or}]")
                } else {
                    format!("spec.identityMap[{or}] of {}", describe(&entries[oi]))
                };
                out.push(problem(
                    &entries[bi],
                    format!("spec.identityMap[{br}].principal"),
                    format!(
                        "principal {principal} is already mapped from another foreign identity by {other}; two foreign identities may not map to one principal unless every rule naming it says shared: true"
                    ),
                ));
            }
        }
    }

    // Imported names.
    let mut imported: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for &(i, p) in &peerings {
        for (m, import) in p.imports.iter().enumerate() {
            let name = import.local_name.as_str();
            if let Some(&(s, service)) = services.get(name)
                && let Some(((b, ()), _)) = blame(is_new, (s, ()), (i, ()))
            {
                if b == i {
                    out.push(problem(
                        &entries[i],
                        import_field(m, import),
                        format!(
                            "{name} clashes with the local service of that name ({})",
                            describe(&entries[s])
                        ),
                    ));
                } else {
                    out.push(problem(
                        &entries[s],
                        "name",
                        format!(
                            "{} imports a service under the name {} ({})",
                            describe(&entries[i]),
                            service.name,
                            import_field(m, import)
                        ),
                    ));
                }
            }
            match imported.get(name) {
                Some(&(j, n)) if j != i => {
                    if let Some(((b, bm), (o, om))) = blame(is_new, (j, n), (i, m)) {
                        let Resource::Peering(bp) = &entries[b].resource else {
                            continue;
                        };
                        let other = match &entries[o].resource {
                            Resource::Peering(op) => op.imports.get(om),
                            Resource::Service(_) => None,
                        };
                        out.push(problem(
                            &entries[b],
                            import_field(bm, &bp.imports[bm]),
                            format!(
                                "{name} is already the local name of an import of {} ({})",
                                describe(&entries[o]),
                                other.map(|x| import_field(om, x)).unwrap_or_default()
                            ),
                        ));
                    }
                }
                Some(_) => {}
                None => {
                    imported.insert(name, (i, m));
                }
            }
        }
    }

    // Exports name local services and their ports.
    for &(i, p) in &peerings {
        for (x, export) in p.exports.iter().enumerate() {
            let at = format!("spec.exports[{x}]");
            match services.get(export.service.as_str()) {
                None => {
                    if is_new[i] {
                        out.push(problem(
                            &entries[i],
                            format!("{at}.service"),
                            format!("no local Service named {}", export.service),
                        ));
                    }
                }
                Some(&(s, service)) => {
                    for (k, port) in export.ports.iter().enumerate() {
                        if service.port(*port).is_some() {
                            continue;
                        }
                        if is_new[i] {
                            out.push(problem(
                                &entries[i],
                                format!("{at}.ports[{k}]"),
                                format!(
                                    "Service {} has no port {port} ({})",
                                    service.name,
                                    describe(&entries[s])
                                ),
                            ));
                        } else if is_new[s] {
                            out.push(problem(
                                &entries[s],
                                "spec.ports",
                                format!(
                                    "port {port} is exported by {} ({at}.ports[{k}]) and must stay",
                                    describe(&entries[i])
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    out
}

fn rule_shared(entry: &Entry, rule: usize) -> bool {
    match &entry.resource {
        Resource::Peering(p) => p.identity_map.get(rule).is_some_and(|r| r.shared),
        Resource::Service(_) => false,
    }
}
