//! End-to-end tests of `causeway svid inspect` and `causeway svid verify`:
//! they run the real binary on certificates issued by `causeway ca` or built
//! with rcgen, in temporary directories.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::BTreeSet;
use std::fs;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};

use support::{EAST, FRONTEND, ca_init, ca_issue, causeway, export, field, s, tmp, with_ext};

// ---------------------------------------------------------------------------
// svid inspect
// ---------------------------------------------------------------------------

fn uri(u: &str) -> SanType {
    SanType::URI(u.try_into().unwrap())
}

/// A self-signed certificate with exactly these properties, as PEM and DER.
fn make_cert(
    is_ca: IsCa,
    key_usages: Vec<KeyUsagePurpose>,
    sans: Vec<SanType>,
) -> (String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Test");
    params.distinguished_name = dn;
    params.is_ca = is_ca;
    params.key_usages = key_usages;
    params.subject_alt_names = sans;
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), cert.der().to_vec())
}

#[test]
fn svid_inspect_accepts_a_good_svid() {
    let t = tmp();
    let dir = t.path().join("ca");
    ca_init(&dir, EAST, &["--intermediate"]);
    let out = t.path().join("frontend");
    let issue = ca_issue(&dir, FRONTEND, &out, &[]);

    let run = causeway(&["svid", "inspect", s(&with_ext(&out, "pem"))]).success();
    assert_eq!(run.stdout.lines().next(), Some(FRONTEND), "{run:?}");
    assert_eq!(
        field(&run.stdout, "serial:"),
        field(&issue.stdout, "serial:")
    );

    // A leaf built elsewhere that follows the rules is accepted too, as PEM
    // and as DER: the rejections below are each for their one defect.
    let id = "spiffe://east.acme.example/built/by/rcgen";
    let (pem, der) = make_cert(
        IsCa::ExplicitNoCa,
        vec![KeyUsagePurpose::DigitalSignature],
        vec![uri(id)],
    );
    let pem_path = t.path().join("good.pem");
    let der_path = t.path().join("good.der");
    fs::write(&pem_path, pem).unwrap();
    fs::write(&der_path, der).unwrap();
    for p in [&pem_path, &der_path] {
        let run = causeway(&["svid", "inspect", s(p)]).success();
        assert_eq!(run.stdout.lines().next(), Some(id), "{run:?}");
    }
}

/// A malformed leaf: name, basic constraints, key usages, SANs, and the
/// fragments its rejection must contain.
type BadLeaf = (
    &'static str,
    IsCa,
    Vec<KeyUsagePurpose>,
    Vec<SanType>,
    &'static [&'static str],
);

#[test]
fn svid_inspect_rejects_each_malformed_leaf_with_its_own_message() {
    use KeyUsagePurpose::{CrlSign, DigitalSignature, KeyAgreement, KeyCertSign};
    let good = "spiffe://east.acme.example/w";
    let cases: Vec<BadLeaf> = vec![
        (
            "leaf is a CA",
            IsCa::Ca(BasicConstraints::Unconstrained),
            vec![DigitalSignature],
            vec![uri(good)],
            &["is a CA", "CA:TRUE"],
        ),
        (
            "keyCertSign",
            IsCa::ExplicitNoCa,
            vec![DigitalSignature, KeyCertSign],
            vec![uri(good)],
            &["has keyCertSign in its key usage"],
        ),
        (
            "cRLSign",
            IsCa::ExplicitNoCa,
            vec![DigitalSignature, CrlSign],
            vec![uri(good)],
            &["has cRLSign in its key usage"],
        ),
        (
            "no digitalSignature",
            IsCa::ExplicitNoCa,
            vec![KeyAgreement],
            vec![uri(good)],
            &["lacks digitalSignature"],
        ),
        (
            "no key usage",
            IsCa::ExplicitNoCa,
            vec![],
            vec![uri(good)],
            &["has no key usage extension"],
        ),
        (
            "DNS SAN only",
            IsCa::ExplicitNoCa,
            vec![DigitalSignature],
            vec![SanType::DnsName("w.east.acme.example".try_into().unwrap())],
            &["has no URI SAN"],
        ),
        (
            "two URI SANs",
            IsCa::ExplicitNoCa,
            vec![DigitalSignature],
            vec![uri(good), uri("spiffe://east.acme.example/x")],
            &["has 2 URI SANs", "exactly one"],
        ),
        (
            "URI SAN not a SPIFFE ID",
            IsCa::ExplicitNoCa,
            vec![DigitalSignature],
            vec![uri("https://x")],
            &["\"https://x\"", "is not a SPIFFE ID"],
        ),
        (
            "SPIFFE ID without a path",
            IsCa::ExplicitNoCa,
            vec![DigitalSignature],
            vec![uri("spiffe://east.acme.example")],
            &["names a trust domain, not a workload"],
        ),
    ];

    let t = tmp();
    let mut messages = BTreeSet::new();
    for (i, (name, is_ca, kus, sans, expected)) in cases.into_iter().enumerate() {
        let (pem, _) = make_cert(is_ca, kus, sans);
        let path = t.path().join(format!("case{i}.pem"));
        fs::write(&path, pem).unwrap();
        let run = causeway(&["svid", "inspect", s(&path)])
            .failure()
            .stderr_has(expected);
        assert!(run.stdout.is_empty(), "{name}: nothing on stdout: {run:?}");
        assert!(run.stderr.contains(s(&path)), "{name}: names the file");
        let message = run.stderr.replace(s(&path), "FILE");
        assert!(
            messages.insert(message.clone()),
            "{name}: same message as another case: {message}"
        );
    }
}

#[test]
fn svid_inspect_rejects_what_is_not_a_certificate() {
    let t = tmp();
    // Pseudo-random bytes (xorshift; fixed seed so a failure reproduces).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..512)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("random.bin", random, "no certificate found"),
        (
            "notes.txt",
            b"this is a text file, not a certificate\n".to_vec(),
            "no certificate found",
        ),
        (
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            "not an X.509 certificate",
        ),
    ];
    for (name, bytes, expected) in cases {
        let path = t.path().join(name);
        fs::write(&path, bytes).unwrap();
        let run = causeway(&["svid", "inspect", s(&path)])
            .failure()
            .stderr_has(&[expected, s(&path)]);
        assert!(run.stdout.is_empty(), "{run:?}");
    }
    // A file that is not there.
    let missing = t.path().join("missing.pem");
    causeway(&["svid", "inspect", s(&missing)])
        .failure()
        .stderr_has(&["cannot read", s(&missing)]);
}

// ---------------------------------------------------------------------------
// svid verify
// ---------------------------------------------------------------------------

#[test]
fn svid_verify_accepts_the_bundle_of_its_ca_as_json_and_pem() {
    let t = tmp();
    let dir = t.path().join("ca");
    ca_init(&dir, EAST, &[]);
    let inter_dir = t.path().join("ca-inter");
    ca_init(&inter_dir, EAST, &["--intermediate"]);
    let json = t.path().join("bundle.json");
    export(&dir, "json", &json);

    let out = t.path().join("frontend");
    let pem = with_ext(&out, "pem");
    ca_issue(&dir, FRONTEND, &out, &[]);
    for bundle in [json.clone(), dir.join("root.pem")] {
        let run =
            causeway(&["svid", "verify", "--bundle", s(&bundle), "--cert", s(&pem)]).success();
        assert_eq!(run.stdout.lines().next(), Some(FRONTEND), "{run:?}");
        assert!(
            run.stdout
                .contains("chains to the bundle of east.acme.example"),
            "{run:?}"
        );
    }

    // Through an intermediate, with the bundle exported as PEM.
    let inter_out = t.path().join("via-intermediate");
    ca_issue(&inter_dir, FRONTEND, &inter_out, &[]);
    let inter_bundle = t.path().join("inter-bundle.pem");
    export(&inter_dir, "pem", &inter_bundle);
    causeway(&[
        "svid",
        "verify",
        "--bundle",
        s(&inter_bundle),
        "--cert",
        s(&with_ext(&inter_out, "pem")),
    ])
    .success();
}

#[test]
fn svid_verify_refuses_the_bundle_of_another_ca() {
    let t = tmp();
    let (dir, impostor) = (t.path().join("ca"), t.path().join("impostor"));
    ca_init(&dir, EAST, &[]);
    // Same trust domain name, different keys.
    ca_init(&impostor, EAST, &[]);
    let bundle = t.path().join("impostor.json");
    export(&impostor, "json", &bundle);
    let out = t.path().join("frontend");
    let pem = with_ext(&out, "pem");
    ca_issue(&dir, FRONTEND, &out, &[]);

    for b in [bundle, impostor.join("root.pem")] {
        let run = causeway(&["svid", "verify", "--bundle", s(&b), "--cert", s(&pem)])
            .failure()
            .stderr_has(&["does not chain", FRONTEND]);
        assert!(run.stdout.is_empty(), "{run:?}");
    }
}

#[test]
fn svid_verify_refuses_an_expired_svid_and_names_its_serial() {
    let t = tmp();
    let dir = t.path().join("ca");
    ca_init(&dir, EAST, &[]);
    let out = t.path().join("old");
    let pem = with_ext(&out, "pem");
    ca_issue(&dir, FRONTEND, &out, &["--ttl", "1h", "--backdate", "3h"]);

    // Its shape is fine: inspect does not look at the clock.
    let inspect = causeway(&["svid", "inspect", s(&pem)]).success();
    let serial = field(&inspect.stdout, "serial:").to_owned();
    assert!(serial.len() > 8 && serial.contains(':'), "{inspect:?}");
    assert!(
        field(&inspect.stdout, "not after:").ends_with("ago)"),
        "{inspect:?}"
    );

    let run = causeway(&[
        "svid",
        "verify",
        "--bundle",
        s(&dir.join("root.pem")),
        "--cert",
        s(&pem),
    ])
    .failure()
    .stderr_has(&["expired", &serial]);
    assert!(run.stdout.is_empty(), "{run:?}");
}

#[test]
fn svid_verify_refuses_an_svid_of_a_trust_domain_without_a_bundle() {
    let t = tmp();
    let (east, west) = (t.path().join("east"), t.path().join("west"));
    ca_init(&east, EAST, &[]);
    ca_init(&west, "west.example", &[]);
    let bundle = t.path().join("east.json");
    export(&east, "json", &bundle);
    let out = t.path().join("west-workload");
    ca_issue(&west, "spiffe://west.example/ns/a", &out, &[]);

    causeway(&[
        "svid",
        "verify",
        "--bundle",
        s(&bundle),
        "--cert",
        s(&with_ext(&out, "pem")),
        "--trust-domain",
        EAST,
    ])
    .failure()
    .stderr_has(&["west.example", "no bundle is held"]);
}
