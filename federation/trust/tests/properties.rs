//! Property tests: SPIFFE ID parsing and bundle round trips.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::OnceLock;
use std::time::Duration;

use causeway_trust::testing::TestDomain;
use causeway_trust::{SpiffeId, TrustBundle, TrustDomain};
use proptest::prelude::*;
use rustls_pki_types::CertificateDer;

fn trust_domain() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,40}"
}

fn segment() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._-]{1,16}".prop_filter("dot segments are invalid", |s| s != "." && s != "..")
}

fn valid_id() -> impl Strategy<Value = (String, Vec<String>)> {
    (trust_domain(), prop::collection::vec(segment(), 0..6))
}

fn render(td: &str, segments: &[String]) -> String {
    let mut s = format!("spiffe://{td}");
    for seg in segments {
        s.push('/');
        s.push_str(seg);
    }
    s
}

/// A character that is valid nowhere in a SPIFFE ID ('/' excluded: it is
/// the separator).
fn forbidden_char() -> impl Strategy<Value = char> {
    any::<char>().prop_filter("must be outside the allowed set", |c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/'))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_ids_parse_and_round_trip((td, segments) in valid_id()) {
        let s = render(&td, &segments);
        let id = SpiffeId::new(&s).unwrap();
        prop_assert_eq!(id.as_str(), s.as_str());
        prop_assert_eq!(id.trust_domain_str(), td.as_str());
        prop_assert_eq!(id.trust_domain(), TrustDomain::new(&td).unwrap());
        let path: String = segments.iter().map(|x| format!("/{x}")).collect();
        prop_assert_eq!(id.path(), path.as_str());
        prop_assert_eq!(SpiffeId::new(&id.to_string()).unwrap(), id.clone());
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
    }

    #[test]
    fn a_forbidden_character_anywhere_after_the_scheme_is_refused(
        (td, segments) in valid_id(),
        ch in forbidden_char(),
        pos in any::<prop::sample::Index>(),
    ) {
        let s = render(&td, &segments);
        // Insert at a char boundary after "spiffe://".
        let boundaries: Vec<usize> = (9..=s.len()).filter(|i| s.is_char_boundary(*i)).collect();
        let at = boundaries[pos.index(boundaries.len())];
        let mut bad = s.clone();
        bad.insert(at, ch);
        prop_assert!(SpiffeId::new(&bad).is_err(), "accepted {:?}", bad);
    }

    #[test]
    fn upper_case_in_the_trust_domain_is_refused(
        td in "[a-z][a-z0-9._-]{0,39}",
        segments in prop::collection::vec(segment(), 0..6),
        pos in any::<prop::sample::Index>(),
    ) {
        let mut chars: Vec<char> = td.chars().collect();
        let letters: Vec<usize> = (0..chars.len()).filter(|i| chars[*i].is_ascii_lowercase()).collect();
        let i = letters[pos.index(letters.len())];
        chars[i] = chars[i].to_ascii_uppercase();
        let td: String = chars.into_iter().collect();
        prop_assert!(SpiffeId::new(&render(&td, &segments)).is_err());
    }

    #[test]
    fn empty_and_dot_segments_are_refused(
        (td, segments) in valid_id(),
        bad in prop::sample::select(vec!["", ".", ".."]),
        pos in any::<prop::sample::Index>(),
    ) {
        let mut segs = segments.clone();
        let at = pos.index(segs.len() + 1);
        segs.insert(at, bad.to_string());
        prop_assert!(SpiffeId::new(&render(&td, &segs)).is_err());
    }

    #[test]
    fn parsing_any_string_never_panics_and_accepted_ids_are_canonical(s in any::<String>()) {
        if let Ok(id) = SpiffeId::new(&s) {
            prop_assert_eq!(id.as_str(), s.as_str());
        }
        let _ = TrustDomain::new(&s);
    }

    #[test]
    fn strings_from_the_id_alphabet_never_panic(s in "spiffe://[a-zA-Z0-9./:@?#%_-]{0,40}") {
        if let Ok(id) = SpiffeId::new(&s) {
            prop_assert!(!id.trust_domain_str().is_empty());
        }
    }
}

/// Four roots of one trust domain, made once: generating keys per case is slow.
fn pool() -> &'static [CertificateDer<'static>] {
    static POOL: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    POOL.get_or_init(|| {
        (0..4)
            .map(|_| TestDomain::new("east.acme.example").ca.roots()[0].clone())
            .collect()
    })
}

fn bundle_strategy() -> impl Strategy<Value = TrustBundle> {
    (
        prop::sample::subsequence((0..4).collect::<Vec<usize>>(), 1..=4),
        prop::option::of(any::<u64>()),
        prop::option::of(0u64..=86_400 * 365),
    )
        .prop_map(|(idx, seq, hint)| {
            let td = TrustDomain::new("east.acme.example").unwrap();
            let mut b = TrustBundle::new(td, idx.into_iter().map(|i| pool()[i].clone()).collect());
            if let Some(s) = seq {
                b = b.with_sequence(s);
            }
            if let Some(h) = hint {
                b = b.with_refresh_hint(Duration::from_secs(h));
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn bundle_json_round_trips(b in bundle_strategy()) {
        let json = b.to_json();
        let back = TrustBundle::from_json(b.trust_domain().clone(), json.as_bytes()).unwrap();
        prop_assert_eq!(&back, &b);
        prop_assert_eq!(back.digest(), b.digest());
        // `parse` recognises the form by itself.
        prop_assert_eq!(TrustBundle::parse(b.trust_domain().clone(), json.as_bytes()).unwrap(), b);
    }

    #[test]
    fn bundle_pem_round_trips_the_authorities(b in bundle_strategy()) {
        let pem = b.to_pem();
        let back = TrustBundle::from_pem(b.trust_domain().clone(), pem.as_bytes()).unwrap();
        prop_assert_eq!(back.x509_authorities(), b.x509_authorities());
        prop_assert_eq!(back.digest(), b.digest());
    }

    #[test]
    fn digest_depends_on_the_set_of_authorities_only(a in bundle_strategy(), b in bundle_strategy()) {
        let mut reversed: Vec<_> = a.x509_authorities().to_vec();
        reversed.reverse();
        let a_rev = TrustBundle::new(a.trust_domain().clone(), reversed).with_sequence(7);
        prop_assert_eq!(a.digest(), a_rev.digest(), "order, sequence and hint do not matter");
        let same_set = {
            let mut x: Vec<_> = a.x509_authorities().to_vec();
            let mut y: Vec<_> = b.x509_authorities().to_vec();
            x.sort_by(|p, q| p.as_ref().cmp(q.as_ref()));
            y.sort_by(|p, q| p.as_ref().cmp(q.as_ref()));
            x == y
        };
        prop_assert_eq!(a.digest() == b.digest(), same_set);
    }
}
