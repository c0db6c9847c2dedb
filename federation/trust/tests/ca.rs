//! The CA: X.509-SVIDs by the spec, issued from CSRs whose signature and
//! requested ID are checked.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use causeway_trust::ca::{self, CaError};
use causeway_trust::testing::TestDomain;
use causeway_trust::{Authority, BundleSet, Expected, PeerRole, Validity};
use rcgen::{CertificateParams, KeyPair, SanType};
use rustls_pki_types::UnixTime;
use x509_parser::prelude::*;

const HOUR: Duration = Duration::from_secs(3600);

fn csr_with_uris(uris: &[&str]) -> Vec<u8> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().unwrap()))
        .collect();
    params.serialize_request(&key).unwrap().der().to_vec()
}

#[test]
fn issued_leaf_follows_the_x509_svid_spec() {
    let d = TestDomain::with_intermediate("east.acme.example");
    let (csr, _key) = ca::new_csr(&d.id("/gw")).unwrap();
    let issued =
        d.ca.sign_csr(&csr, Validity::starting_now(HOUR), |_| true)
            .unwrap();
    assert_eq!(
        issued.chain.len(),
        2,
        "leaf then intermediate, never the root"
    );
    let (_, leaf) = X509Certificate::from_der(&issued.chain[0]).unwrap();
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<_> = sans
        .value
        .general_names
        .iter()
        .filter(|n| matches!(n, GeneralName::URI(_)))
        .collect();
    assert_eq!(uris.len(), 1);
    assert_eq!(*uris[0], GeneralName::URI("spiffe://east.acme.example/gw"));
    let bc = leaf.basic_constraints().unwrap().unwrap();
    assert!(!bc.value.ca);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let life = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert_eq!(life, (HOUR + ca::CLOCK_SKEW_ALLOWANCE).as_secs() as i64);
    // And it verifies against the bundle.
    let set = BundleSet::from_bundles([d.bundle()]).unwrap();
    let id = set
        .verify(
            &issued.chain[0],
            &issued.chain[1..],
            UnixTime::now(),
            PeerRole::Client,
            &Expected::AnyKnownDomain,
        )
        .unwrap();
    assert_eq!(id, d.id("/gw"));
}

#[test]
fn serials_are_random_and_positive() {
    let d = TestDomain::new("east.acme.example");
    let a = d.svid("/a");
    let b = d.svid("/a");
    assert_ne!(a.info().serial, b.info().serial);
    let (_, leaf) = X509Certificate::from_der(&a.chain()[0]).unwrap();
    assert_eq!(leaf.raw_serial().len(), 16);
    assert!(leaf.raw_serial()[0] & 0x80 == 0);
}

#[test]
fn csr_refusals_are_typed() {
    let d = TestDomain::new("east.acme.example");
    let v = Validity::starting_now(HOUR);
    let err = |csr: &[u8], allow: bool| d.ca.sign_csr(csr, v, |_| allow).unwrap_err();

    assert!(matches!(err(b"garbage", true), CaError::CsrUnparsable(_)));
    assert!(matches!(
        err(&csr_with_uris(&[]), true),
        CaError::CsrNoSpiffeId
    ));
    assert!(matches!(
        err(
            &csr_with_uris(&[
                "spiffe://east.acme.example/a",
                "spiffe://east.acme.example/b"
            ]),
            true
        ),
        CaError::CsrMultipleUris { count: 2 }
    ));
    assert!(matches!(
        err(&csr_with_uris(&["https://east.acme.example/a"]), true),
        CaError::CsrInvalidId { .. }
    ));
    assert!(matches!(
        err(&csr_with_uris(&["spiffe://east.acme.example"]), true),
        CaError::CsrInvalidId { .. }
    ));
    assert!(matches!(
        err(&csr_with_uris(&["spiffe://west.globex.example/a"]), true),
        CaError::CsrWrongTrustDomain { .. }
    ));
    assert!(matches!(
        err(&csr_with_uris(&["spiffe://east.acme.example/a"]), false),
        CaError::CsrIdNotAllowed { .. }
    ));
    // A CSR whose signature was tampered with: the requester does not hold the key.
    let mut csr = csr_with_uris(&["spiffe://east.acme.example/a"]);
    let last = csr.len() - 1;
    csr[last] ^= 0x01;
    assert!(matches!(err(&csr, true), CaError::CsrBadSignature));
}

#[test]
fn the_policy_sees_the_requested_id() {
    let d = TestDomain::new("east.acme.example");
    let (csr, _) = ca::new_csr(&d.id("/ns/shop/sa/frontend")).unwrap();
    let mut seen = None;
    d.ca.sign_csr(&csr, Validity::starting_now(HOUR), |id| {
        seen = Some(id.clone());
        true
    })
    .unwrap();
    assert_eq!(seen, Some(d.id("/ns/shop/sa/frontend")));
}

#[test]
fn lifetime_is_capped_at_the_signer_expiry() {
    let td = causeway_trust::TrustDomain::new("east.acme.example").unwrap();
    let root = Authority::new_root(&td, 2 * HOUR).unwrap();
    let root_end = root.not_after();
    let ca = causeway_trust::Ca::with_root(td.clone(), root);
    let svid = ca
        .issue_with_new_key(
            &td.workload_id("/a").unwrap(),
            Validity::starting_now(10 * HOUR),
        )
        .unwrap();
    assert_eq!(svid.info().not_after, root_end);
}

#[test]
fn ca_material_round_trips_through_pem() {
    let td = causeway_trust::TrustDomain::new("east.acme.example").unwrap();
    let root = Authority::new_root(&td, HOUR).unwrap();
    let again = Authority::from_pem(root.cert_pem().as_bytes(), root.key_pem().as_bytes()).unwrap();
    assert_eq!(again.cert(), root.cert());
    let other = Authority::new_root(&td, HOUR).unwrap();
    assert!(matches!(
        Authority::from_pem(root.cert_pem().as_bytes(), other.key_pem().as_bytes()),
        Err(CaError::SignerKeyMismatch)
    ));
    // A leaf cannot be loaded as a CA.
    let d = TestDomain::new("east.acme.example");
    let leaf = d.svid("/a");
    let leaf_pem = causeway_trust::pem::encode_certificates(leaf.chain());
    let key_pem = causeway_trust::pem::encode("PRIVATE KEY", leaf.key().secret_der());
    assert!(matches!(
        Authority::from_pem(leaf_pem.as_bytes(), key_pem.as_bytes()),
        Err(CaError::SignerNotCa(_))
    ));
}

#[test]
fn issuing_root_tells_two_roots_of_one_domain_apart() {
    use causeway_trust::verify::issuing_root;
    use causeway_trust::{Ca, TrustBundle, TrustDomain};
    let td = TrustDomain::new("east.acme.example").unwrap();
    let old = Authority::new_root(&td, HOUR).unwrap();
    let new = Authority::new_root(&td, HOUR).unwrap();
    let (old_der, new_der) = (old.cert().clone(), new.cert().clone());
    let id = td.workload_id("/causeway/gateway/a").unwrap();
    let from_new = Ca::with_root(td.clone(), new)
        .issue_with_new_key(&id, Validity::starting_now(HOUR))
        .unwrap();
    let from_old = Ca::with_root(td.clone(), old)
        .issue_with_new_key(&id, Validity::starting_now(HOUR))
        .unwrap();
    let both = TrustBundle::new(td.clone(), vec![old_der.clone(), new_der.clone()]);
    assert_eq!(issuing_root(from_new.chain(), &both), Some(&new_der));
    assert_eq!(issuing_root(from_old.chain(), &both), Some(&old_der));
    let old_only = TrustBundle::new(td.clone(), vec![old_der]);
    assert_eq!(issuing_root(from_new.chain(), &old_only), None);
    // Through an intermediate as well.
    let d = TestDomain::with_intermediate("west.globex.example");
    let svid = d.svid("/gw");
    let bundle = d.bundle();
    assert_eq!(
        issuing_root(svid.chain(), &bundle),
        bundle.x509_authorities().first()
    );
    assert_eq!(issuing_root(&[], &bundle), None);
}
