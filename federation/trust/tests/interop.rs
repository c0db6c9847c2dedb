//! Bundles written by another SPIFFE implementation (go-spiffe's test data,
//! in ../shared/interop/spiffe-bundles), parsed as that folder's README says.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::PathBuf;
use std::time::Duration;

use causeway_trust::{BundleError, TrustBundle, TrustDomain};

fn doc(name: &str) -> Vec<u8> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop/spiffe-bundles");
    std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
}

fn parse(name: &str) -> Result<TrustBundle, BundleError> {
    TrustBundle::from_json(TrustDomain::new("example.org").unwrap(), &doc(name))
}

#[test]
fn valid_1_has_one_x509_and_one_jwt_authority_and_no_sequence_or_hint() {
    let b = parse("spiffebundle_valid_1.json").unwrap();
    assert_eq!(b.x509_authorities().len(), 1);
    assert_eq!(b.jwt_authorities().len(), 1);
    assert_eq!(
        b.jwt_authorities()[0].key_id,
        "C6vs25welZOx6WksNYfbMfiw9l96pMnD"
    );
    assert_eq!(b.sequence(), None);
    assert_eq!(b.refresh_hint(), None);
}

#[test]
fn valid_2_has_a_p384_authority_six_jwt_keys_sequence_1_hint_60s() {
    let b = parse("spiffebundle_valid_2.json").unwrap();
    assert_eq!(b.x509_authorities().len(), 1);
    let s = causeway_trust::svid::summarize(&b.x509_authorities()[0]).unwrap();
    assert_eq!(s.key_type, "EC P-384");
    assert_eq!(b.jwt_authorities().len(), 6);
    assert_eq!(b.sequence(), Some(1));
    assert_eq!(b.refresh_hint(), Some(Duration::from_secs(60)));
}

#[test]
fn valid_with_wit_ignores_the_unknown_use() {
    let b = parse("spiffebundle_valid_with_wit.json").unwrap();
    assert_eq!(b.x509_authorities().len(), 1);
    assert_eq!(b.jwt_authorities().len(), 2);
    assert_eq!(b.sequence(), Some(1));
    assert_eq!(b.refresh_hint(), Some(Duration::from_secs(60)));
}

#[test]
fn missing_kid_is_rejected() {
    assert_eq!(
        parse("spiffebundle_missing_kid.json").unwrap_err(),
        BundleError::MissingKid { index: 1 }
    );
}

#[test]
fn no_keys_is_rejected() {
    assert_eq!(
        parse("spiffebundle_no_keys.json").unwrap_err(),
        BundleError::NoKeys
    );
}

#[test]
fn multiple_certificates_in_x5c_is_rejected() {
    assert!(matches!(
        parse("spiffebundle_multiple_x509.json").unwrap_err(),
        BundleError::X5cCount { index: 0, count } if count > 1
    ));
}

#[test]
fn documents_we_write_are_read_back_the_same_including_jwt_authorities() {
    for name in [
        "spiffebundle_valid_1.json",
        "spiffebundle_valid_2.json",
        "spiffebundle_valid_with_wit.json",
    ] {
        let b = parse(name).unwrap();
        let again =
            TrustBundle::from_json(b.trust_domain().clone(), b.to_json().as_bytes()).unwrap();
        assert_eq!(again, b, "{name}");
        // The X.509 entry we write carries the same key parameters as theirs.
        let theirs: serde_json::Value = serde_json::from_slice(&doc(name)).unwrap();
        let ours: serde_json::Value = serde_json::from_str(&b.to_json()).unwrap();
        for field in ["kty", "crv", "x", "y", "x5c"] {
            assert_eq!(
                ours["keys"][0][field], theirs["keys"][0][field],
                "{name}: {field}"
            );
        }
    }
}

#[test]
fn garbage_is_refused_with_a_reason_and_never_panics() {
    let td = TrustDomain::new("example.org").unwrap();
    let cases: &[&[u8]] = &[
        b"",
        b"not json",
        b"[]",
        b"{\"keys\": 3}",
        b"{\"keys\": [1]}",
        b"{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"!!!\"]}]}",
        b"{\"keys\": [{\"use\": \"x509-svid\", \"kty\": \"EC\", \"x5c\": [\"AAAA\"]}]}",
        b"{\"keys\": [{\"use\": \"x509-svid\", \"x5c\": []}]}",
        b"{\"keys\": [], \"spiffe_sequence\": -1}",
        b"{\"keys\": [], \"spiffe_refresh_hint\": \"60s\"}",
    ];
    for c in cases {
        let e = TrustBundle::from_json(td.clone(), c).unwrap_err();
        assert!(!e.to_string().is_empty());
    }
}
