//! Plans: what applying resources over the current set would change, for
//! `causeway apply` to report and `--dry-run` to print without writing.
//! Each incoming resource is created, updated (with the fields that
//! changed, and the items of keyed lists added, removed or changed) or
//! unchanged. Apply never deletes: a resource absent from the file is not in
//! the plan.

use std::collections::BTreeMap;
use std::fmt;

use crate::admission::ResourceSet;
use crate::peering::Peering;
use crate::problem::Origin;
use crate::resource::{Entry, Kind, Resource};
use crate::service::Service;

/// What happens to one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    /// The fields that change, each with a short description.
    Update(Vec<FieldChange>),
    Unchanged,
}

/// One changed field: `spec.exports` and `+ledger ~inventory -billing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: String,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    pub name: String,
    pub origin: Origin,
    pub action: Action,
}

/// The changes, in the order of the incoming resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    /// The plan for applying `incoming` over `current`.
    pub fn new(current: &ResourceSet, incoming: &[Entry]) -> Self {
        let changes = incoming
            .iter()
            .map(|e| {
                let r = &e.resource;
                let action = match current.get(r.kind(), r.name()) {
                    None => Action::Create,
                    Some(old) => {
                        let fields = diff(&old.resource, r);
                        if fields.is_empty() {
                            Action::Unchanged
                        } else {
                            Action::Update(fields)
                        }
                    }
                };
                Change {
                    kind: r.kind(),
                    name: r.name().to_owned(),
                    origin: e.origin.clone(),
                    action,
                }
            })
            .collect();
        Self { changes }
    }

    /// Whether applying would change nothing.
    pub fn is_noop(&self) -> bool {
        self.changes
            .iter()
            .all(|c| matches!(c.action, Action::Unchanged))
    }

    /// (created, updated, unchanged).
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for c in &self.changes {
            match c.action {
                Action::Create => n.0 += 1,
                Action::Update(_) => n.1 += 1,
                Action::Unchanged => n.2 += 1,
            }
        }
        n
    }
}

/// A short human diff:
///
/// ```text
/// + Peering/west  created
/// ~ Service/payments  updated
///     spec.ports: +9090
/// = Service/ledger  unchanged
/// 1 created, 1 updated, 1 unchanged
/// ```
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.changes {
            let (mark, word) = match &c.action {
                Action::Create => ('+', "created"),
                Action::Update(_) => ('~', "updated"),
                Action::Unchanged => ('=', "unchanged"),
            };
            writeln!(f, "{mark} {}/{}  {word}", c.kind, c.name)?;
            if let Action::Update(fields) = &c.action {
                for fc in fields {
                    writeln!(f, "    {}: {}", fc.field, fc.summary)?;
                }
            }
        }
        let (c, u, n) = self.counts();
        write!(f, "{c} created, {u} updated, {n} unchanged")
    }
}

fn diff(old: &Resource, new: &Resource) -> Vec<FieldChange> {
    let mut out = Vec::new();
    match (old, new) {
        (Resource::Peering(a), Resource::Peering(b)) => peering(&mut out, a, b),
        (Resource::Service(a), Resource::Service(b)) => service(&mut out, a, b),
        // One kind and name never hold another kind.
        _ => out.push(FieldChange {
            field: "kind".into(),
            summary: format!("{} → {}", old.kind(), new.kind()),
        }),
    }
    out
}

fn scalar<T: PartialEq + fmt::Display>(out: &mut Vec<FieldChange>, field: &str, a: &T, b: &T) {
    if a != b {
        out.push(FieldChange {
            field: field.into(),
            summary: format!("{a} → {b}"),
        });
    }
}

/// Items of a list by key: `+added -removed ~changed`, or `reordered`.
fn keyed<T: PartialEq, K: Ord + fmt::Display>(
    out: &mut Vec<FieldChange>,
    field: &str,
    a: &[T],
    b: &[T],
    key: impl Fn(&T) -> K,
) {
    if a == b {
        return;
    }
    let old: BTreeMap<K, &T> = a.iter().map(|x| (key(x), x)).collect();
    let new: BTreeMap<K, &T> = b.iter().map(|x| (key(x), x)).collect();
    let mut parts = Vec::new();
    for (k, x) in &new {
        match old.get(k) {
            None => parts.push(format!("+{k}")),
            Some(y) if y != x => parts.push(format!("~{k}")),
            Some(_) => {}
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            parts.push(format!("-{k}"));
        }
    }
    out.push(FieldChange {
        field: field.into(),
        summary: if parts.is_empty() {
            "reordered".into()
        } else {
            parts.join(" ")
        },
    });
}

fn peering(out: &mut Vec<FieldChange>, a: &Peering, b: &Peering) {
    scalar(out, "spec.trustDomain", &a.trust_domain, &b.trust_domain);
    scalar(
        out,
        "spec.bundleEndpoint.url",
        &a.bundle_endpoint.url,
        &b.bundle_endpoint.url,
    );
    scalar(
        out,
        "spec.bundleEndpoint.spiffeId",
        &a.bundle_endpoint.spiffe_id,
        &b.bundle_endpoint.spiffe_id,
    );
    // Where the bundle was read from does not matter, only what it holds.
    let (x, y) = (&a.first_bundle.bundle, &b.first_bundle.bundle);
    if x != y {
        let show = |b: &causeway_trust::TrustBundle| {
            let digest = b.digest();
            let short = digest.get(..19).unwrap_or(&digest).to_owned();
            match b.sequence() {
                Some(s) => format!("{short}… (sequence {s})"),
                None => format!("{short}…"),
            }
        };
        out.push(FieldChange {
            field: "spec.firstBundle".into(),
            summary: format!("{} → {}", show(x), show(y)),
        });
    }
    keyed(out, "spec.gateways", &a.gateways, &b.gateways, |g| {
        g.address.to_string()
    });
    keyed(out, "spec.exports", &a.exports, &b.exports, |e| {
        e.service.to_string()
    });
    keyed(out, "spec.imports", &a.imports, &b.imports, |m| {
        m.local_name.to_string()
    });
    keyed(
        out,
        "spec.identityMap",
        &a.identity_map,
        &b.identity_map,
        |r| r.from.to_string(),
    );
}

fn service(out: &mut Vec<FieldChange>, a: &Service, b: &Service) {
    keyed(out, "spec.ports", &a.ports, &b.ports, |p| p.port);
    keyed(out, "spec.endpoints", &a.endpoints, &b.endpoints, |e| {
        e.to_string()
    });
    if a.authorization != b.authorization {
        let (n, m) = (a.authorization.len(), b.authorization.len());
        out.push(FieldChange {
            field: "spec.authorization".into(),
            summary: if n == m {
                format!("{n} rules, changed")
            } else {
                format!("{n} → {m} rules")
            },
        });
    }
}
