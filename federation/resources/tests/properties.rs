//! Properties of the pattern language and the compiled identity map,
//! against brute force over a small universe of IDs: patterns use the
//! literals `a` and `b`, IDs also use `c` (standing for "anything else"),
//! so every way a pattern can match or miss is reached.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use causeway_resources::identity_map::IdentityMap;
use causeway_resources::names::{PrincipalName, ResourceName};
use causeway_resources::peering::{BundleEndpoint, FirstBundle, IdentityRule, Peering};
use causeway_resources::{IdPattern, address::HttpsUrl};
use causeway_trust::{SpiffeId, TrustBundle, TrustDomain};
use proptest::prelude::*;

const TD: &str = "west.globex.example";
const MAX_LEN: usize = 5;

fn segment() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just("a"), Just("b"), Just("*")]
}

fn pattern() -> impl Strategy<Value = IdPattern> {
    (prop::collection::vec(segment(), 1..=3), any::<bool>()).prop_map(|(segs, open)| {
        let mut text = format!("spiffe://{TD}/{}", segs.join("/"));
        if open {
            text.push_str("/**");
        }
        IdPattern::new(&text).unwrap()
    })
}

/// Every ID of the universe: paths of 1..=MAX_LEN segments over a, b, c.
fn universe() -> Vec<SpiffeId> {
    let mut out = Vec::new();
    let mut paths: Vec<String> = vec![String::new()];
    for _ in 0..MAX_LEN {
        let mut next = Vec::new();
        for p in &paths {
            for s in ["a", "b", "c"] {
                let q = format!("{p}/{s}");
                out.push(SpiffeId::new(&format!("spiffe://{TD}{q}")).unwrap());
                next.push(q);
            }
        }
        paths = next;
    }
    out
}

/// The obvious recursive definition of matching.
fn reference(p: &[&str], id: &[&str]) -> bool {
    match (p.split_first(), id.split_first()) {
        (None, None) => true,
        (Some((&"**", [])), Some(_)) => true,
        (Some((&"*", pt)), Some((_, it))) => reference(pt, it),
        (Some((lit, pt)), Some((seg, it))) => lit == seg && reference(pt, it),
        _ => false,
    }
}

fn segments(s: &str) -> Vec<&str> {
    s.split_once("://")
        .and_then(|(_, r)| r.split_once('/'))
        .map(|(_, path)| path.split('/').collect())
        .unwrap_or_default()
}

fn peering(rules: &[(IdPattern, &str)]) -> Peering {
    let td = TrustDomain::new(TD).unwrap();
    Peering {
        name: ResourceName::new("west").unwrap(),
        trust_domain: td.clone(),
        bundle_endpoint: BundleEndpoint {
            url: HttpsUrl::parse("https://b.example/").unwrap(),
            spiffe_id: td.workload_id("/c").unwrap(),
        },
        first_bundle: FirstBundle {
            file: None,
            bundle: TrustBundle::new(td, Vec::new()),
        },
        gateways: Vec::new(),
        exports: Vec::new(),
        imports: Vec::<causeway_resources::peering::Import>::new(),
        identity_map: rules
            .iter()
            .map(|(from, p)| IdentityRule {
                from: from.clone(),
                principal: PrincipalName::new(p).unwrap(),
                shared: false,
            })
            .collect(),
    }
}

proptest! {
    #[test]
    fn matching_agrees_with_the_reference(p in pattern()) {
        let ps = segments(p.as_str());
        for id in universe() {
            prop_assert_eq!(p.matches(&id), reference(&ps, &segments(id.as_str())), "{} {}", p, id);
        }
    }

    #[test]
    fn overlap_is_decided_exactly(p in pattern(), q in pattern()) {
        let common = universe().into_iter().find(|id| p.matches(id) && q.matches(id));
        let witness = p.overlap(&q);
        prop_assert_eq!(witness.is_some(), q.overlaps(&p), "symmetric");
        match witness {
            Some(w) => {
                let w = SpiffeId::new(&w).unwrap();
                prop_assert!(p.matches(&w) && q.matches(&w), "{} {} {}", p, q, w);
            }
            // Patterns of at most 4 segments that share an ID share one of
            // at most 5 segments over a, b, c.
            None => prop_assert!(common.is_none(), "{} {} both match {:?}", p, q, common),
        }
    }

    #[test]
    fn patterns_print_as_parsed(p in pattern()) {
        prop_assert_eq!(IdPattern::new(&p.to_string()).unwrap(), p);
    }

    /// With rules no two of which overlap (what admission leaves), the
    /// trie gives the one principal a linear scan finds.
    #[test]
    fn identity_map_agrees_with_a_scan(candidates in prop::collection::vec(pattern(), 1..8)) {
        let mut rules: Vec<(IdPattern, String)> = Vec::new();
        for (i, p) in candidates.into_iter().enumerate() {
            if rules.iter().all(|(q, _)| !q.overlaps(&p)) {
                rules.push((p, format!("p{i}")));
            }
        }
        let borrowed: Vec<(IdPattern, &str)> = rules.iter().map(|(p, n)| (p.clone(), n.as_str())).collect();
        let peering = peering(&borrowed);
        let map = IdentityMap::compile([&peering]);
        let td = TrustDomain::new(TD).unwrap();
        for id in universe() {
            let scan = rules.iter().find(|(p, _)| p.matches(&id)).map(|(_, n)| n.as_str());
            prop_assert_eq!(map.lookup(&td, &id).map(|p| p.as_str()), scan, "{}", id);
        }
    }

    /// Overlapping rules: the trie still finds a principal of a matching
    /// rule, the most literal one.
    #[test]
    fn identity_map_finds_some_matching_rule(candidates in prop::collection::vec(pattern(), 1..8)) {
        let rules: Vec<(IdPattern, String)> = candidates
            .into_iter()
            .enumerate()
            .map(|(i, p)| (p, format!("p{i}")))
            .collect();
        let borrowed: Vec<(IdPattern, &str)> = rules.iter().map(|(p, n)| (p.clone(), n.as_str())).collect();
        let map = IdentityMap::compile([&peering(&borrowed)]);
        let td = TrustDomain::new(TD).unwrap();
        for id in universe() {
            let found = map.lookup(&td, &id).map(|p| p.as_str().to_owned());
            let any = rules.iter().any(|(p, _)| p.matches(&id));
            prop_assert_eq!(found.is_some(), any, "{}", id);
            if let Some(name) = found {
                prop_assert!(rules.iter().any(|(p, n)| *n == name && p.matches(&id)));
            }
        }
    }
}

#[test]
fn identity_map_prefers_literal_segments_and_stays_in_its_domain() {
    let rules = [
        (
            IdPattern::new(&format!("spiffe://{TD}/ns/**")).unwrap(),
            "any",
        ),
        (
            IdPattern::new(&format!("spiffe://{TD}/ns/*/sa/api")).unwrap(),
            "star",
        ),
        (
            IdPattern::new(&format!("spiffe://{TD}/ns/pay/sa/api")).unwrap(),
            "exact",
        ),
    ];
    let map = IdentityMap::compile([&peering(&rules)]);
    assert_eq!(map.len(), 3);
    let td = TrustDomain::new(TD).unwrap();
    let look = |s: &str| {
        map.lookup(&td, &SpiffeId::new(s).unwrap())
            .map(|p| p.as_str().to_owned())
    };
    assert_eq!(
        look(&format!("spiffe://{TD}/ns/pay/sa/api")).as_deref(),
        Some("exact")
    );
    assert_eq!(
        look(&format!("spiffe://{TD}/ns/shop/sa/api")).as_deref(),
        Some("star")
    );
    assert_eq!(
        look(&format!("spiffe://{TD}/ns/shop/sa/web")).as_deref(),
        Some("any")
    );
    assert_eq!(look(&format!("spiffe://{TD}/ns")), None);
    assert_eq!(look(&format!("spiffe://{TD}/other")), None);
    // A caller of another domain never maps, whoever asserts it.
    let other = SpiffeId::new("spiffe://east.acme.example/ns/pay/sa/api").unwrap();
    assert_eq!(map.lookup(&td, &other), None);
    let east = TrustDomain::new("east.acme.example").unwrap();
    assert_eq!(map.lookup(&east, &other), None);
}
