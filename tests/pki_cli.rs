//! End-to-end tests of the PKI commands (`causeway ca`, `causeway svid`,
//! `causeway bundle`): they run the real binary on files in temporary
//! directories and check the results the way an operator would, with
//! `openssl` where it is the natural judge.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use serde_json::Value;
use tempfile::TempDir;

use support::{ca_init, ca_issue, causeway, count_certificates, field, mode, openssl, s};

const EAST: &str = "east.acme.example";
const FRONTEND: &str = "spiffe://east.acme.example/ns/shop/sa/frontend";

fn tmp() -> TempDir {
    tempfile::tempdir().unwrap()
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Checks with `openssl x509 -text` that the first certificate of `pem` is a
/// non-CA leaf whose only URI SAN is `spiffe_id`.
#[track_caller]
fn assert_openssl_sees_leaf(pem: &Path, spiffe_id: &str) {
    let text = openssl(&["x509", "-in", s(pem), "-noout", "-text"])
        .success()
        .stdout;
    let uris: Vec<&str> = text
        .split("URI:")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| c == ',' || c.is_whitespace())
                .next()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(uris, [spiffe_id], "URI SANs of {}:\n{text}", pem.display());
    assert!(text.contains("CA:FALSE"), "leaf must say CA:FALSE:\n{text}");
    assert!(!text.contains("CA:TRUE"), "leaf must not be a CA:\n{text}");
}

/// `openssl verify EXTRA... CERT` must say `CERT: OK`.
#[track_caller]
fn assert_openssl_verifies(cert: &Path, extra: &[&str]) {
    let mut args = vec!["verify"];
    args.extend_from_slice(extra);
    args.push(s(cert));
    let out = openssl(&args).success();
    assert_eq!(
        out.stdout.trim(),
        format!("{}: OK", cert.display()),
        "{out:?}"
    );
}

/// The public key of a certificate, or of a private key / CSR, as PEM.
fn public_key_of_cert(cert: &Path) -> String {
    openssl(&["x509", "-in", s(cert), "-noout", "-pubkey"])
        .success()
        .stdout
}

/// The CERTIFICATE blocks of a PEM file, each with its END line.
fn pem_blocks(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    text.split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("-----BEGIN CERTIFICATE-----"))
        .map(|b| b.trim_start().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------
// ca init / ca issue
// ---------------------------------------------------------------------------

#[test]
fn ca_init_and_issue_with_the_root_as_signer() {
    let t = tmp();
    let dir = t.path().join("ca");
    let out = t.path().join("frontend");
    let (pem, key) = (with_ext(&out, "pem"), with_ext(&out, "key"));

    let init = ca_init(&dir, EAST, &[]);
    assert!(init.stdout.contains("signer:     Root"), "{init:?}");
    assert_eq!(mode(&dir.join("root.key")), 0o600);
    assert!(!dir.join("intermediate.pem").exists());
    assert!(!dir.join("intermediate.key").exists());

    let issue = ca_issue(&dir, FRONTEND, &out, &[]);
    assert_eq!(field(&issue.stdout, "spiffe id:"), FRONTEND, "{issue:?}");
    assert!(pem.is_file() && key.is_file(), "{issue:?}");
    assert_eq!(mode(&key), 0o600, "the SVID key must be private");
    assert_eq!(count_certificates(&pem), 1, "signed by the root: leaf only");

    assert_openssl_verifies(&pem, &["-CAfile", s(&dir.join("root.pem"))]);
    assert_openssl_sees_leaf(&pem, FRONTEND);
    // The key written next to the certificate is the certificate's key.
    let key_pub = openssl(&["pkey", "-in", s(&key), "-pubout"])
        .success()
        .stdout;
    assert_eq!(key_pub, public_key_of_cert(&pem));
}

#[test]
fn ca_init_and_issue_with_an_intermediate() {
    let t = tmp();
    let dir = t.path().join("ca");
    let out = t.path().join("frontend");
    let pem = with_ext(&out, "pem");

    let init = ca_init(&dir, EAST, &["--intermediate"]);
    assert!(init.stdout.contains("signer:     Intermediate"), "{init:?}");
    assert_eq!(mode(&dir.join("root.key")), 0o600);
    assert_eq!(mode(&dir.join("intermediate.key")), 0o600);

    ca_issue(&dir, FRONTEND, &out, &[]);
    assert_eq!(mode(&with_ext(&out, "key")), 0o600);
    let intermediate = dir.join("intermediate.pem");
    assert_openssl_verifies(
        &pem,
        &[
            "-CAfile",
            s(&dir.join("root.pem")),
            "-untrusted",
            s(&intermediate),
        ],
    );
    // The chain shipped in P.pem is enough on its own.
    assert_openssl_verifies(
        &pem,
        &["-CAfile", s(&dir.join("root.pem")), "-untrusted", s(&pem)],
    );
    assert_openssl_sees_leaf(&pem, FRONTEND);

    // Leaf first, then the intermediate (never the root).
    let blocks = pem_blocks(&pem);
    assert_eq!(blocks.len(), 2, "leaf then intermediate");
    assert_eq!(blocks[1], fs::read_to_string(&intermediate).unwrap());
    assert_ne!(
        blocks[1],
        fs::read_to_string(dir.join("root.pem")).unwrap(),
        "the root must not be shipped in the chain"
    );
    let inspect = causeway(&["svid", "inspect", s(&pem)]).success();
    assert!(
        field(&inspect.stdout, "issuer:").contains("intermediate CA"),
        "{inspect:?}"
    );
    assert_eq!(field(&inspect.stdout, "chain:"), "2 certificate(s)");
}

#[test]
fn ca_init_under_an_upstream_root() {
    let t = tmp();
    let upstream = t.path().join("upstream");
    let dir = t.path().join("east");
    let out = t.path().join("frontend");
    let pem = with_ext(&out, "pem");

    ca_init(&upstream, "upstream.example", &[]);
    let upstream_root = upstream.join("root.pem");
    let upstream_key_before = fs::read(upstream.join("root.key")).unwrap();

    let init = ca_init(
        &dir,
        EAST,
        &[
            "--upstream-cert",
            s(&upstream_root),
            "--upstream-key",
            s(&upstream.join("root.key")),
        ],
    );
    assert!(init.stdout.contains("signer:     Intermediate"), "{init:?}");
    // The upstream key is used once and never copied into the directory.
    assert!(!dir.join("root.key").exists(), "upstream key copied into D");
    assert_eq!(
        fs::read(dir.join("root.pem")).unwrap(),
        fs::read(&upstream_root).unwrap(),
        "the bundle's root is the upstream root"
    );
    assert_eq!(mode(&dir.join("intermediate.key")), 0o600);
    assert_eq!(
        fs::read(upstream.join("root.key")).unwrap(),
        upstream_key_before
    );

    ca_issue(&dir, FRONTEND, &out, &[]);
    assert_eq!(count_certificates(&pem), 2);
    assert_openssl_verifies(&pem, &["-CAfile", s(&upstream_root), "-untrusted", s(&pem)]);
    assert_openssl_sees_leaf(&pem, FRONTEND);

    // causeway agrees, given the trust domain of the bundle.
    causeway(&[
        "svid",
        "verify",
        "--bundle",
        s(&upstream_root),
        "--cert",
        s(&pem),
        "--trust-domain",
        EAST,
    ])
    .success();
    // An unrelated root does not verify it.
    let other = t.path().join("other");
    ca_init(&other, "upstream.example", &[]);
    let refused = openssl(&[
        "verify",
        "-CAfile",
        s(&other.join("root.pem")),
        "-untrusted",
        s(&pem),
        s(&pem),
    ]);
    assert!(!refused.status.success(), "{refused:?}");
}

#[test]
fn ca_init_refuses_to_overwrite_an_existing_ca() {
    let t = tmp();
    let dir = t.path().join("ca");
    ca_init(&dir, EAST, &[]);
    let names = ["ca.json", "root.pem", "root.key"];
    let before: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(dir.join(n)).unwrap())
        .collect();

    for extra in [&[][..], &["--intermediate"][..]] {
        let mut args = vec!["ca", "init", "--trust-domain", EAST, "--dir", s(&dir)];
        args.extend_from_slice(extra);
        causeway(&args)
            .failure()
            .stderr_has(&["refusing to overwrite", "ca.json"]);
    }
    causeway(&[
        "ca",
        "init",
        "--trust-domain",
        "west.example",
        "--dir",
        s(&dir),
    ])
    .failure()
    .stderr_has(&["refusing to overwrite"]);

    let after: Vec<Vec<u8>> = names
        .iter()
        .map(|n| fs::read(dir.join(n)).unwrap())
        .collect();
    for ((name, b), a) in names.iter().zip(&before).zip(&after) {
        assert_eq!(b, a, "{name} changed");
    }
    assert!(!dir.join("intermediate.pem").exists());
    assert!(!dir.join("intermediate.key").exists());
    assert_eq!(mode(&dir.join("root.key")), 0o600);
}

// ---------------------------------------------------------------------------
// ca issue --csr
// ---------------------------------------------------------------------------

/// A P-256 key and a CSR for `uri`, made by openssl in `dir`; returns
/// (key path, CSR path).
fn openssl_csr(dir: &Path, name: &str, uri: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key.pem"));
    let csr = dir.join(format!("{name}.csr.pem"));
    let san = format!("subjectAltName=URI:{uri}");
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        s(&key),
        "-out",
        s(&csr),
        "-subj",
        "/O=Test",
        "-addext",
        &san,
    ])
    .success();
    (key, csr)
}

#[test]
fn ca_issue_signs_a_csr_without_writing_a_key() {
    let t = tmp();
    let dir = t.path().join("ca");
    ca_init(&dir, EAST, &[]);
    let id = "spiffe://east.acme.example/gw";
    let (key, csr) = openssl_csr(t.path(), "gw", id);
    let out = t.path().join("gw");
    let pem = with_ext(&out, "pem");

    let issue = ca_issue(&dir, id, &out, &["--csr", s(&csr)]);
    assert_eq!(field(&issue.stdout, "spiffe id:"), id);
    assert!(pem.is_file(), "{issue:?}");
    assert!(
        !with_ext(&out, "key").exists(),
        "no key may be written for a CSR: {issue:?}"
    );
    assert!(!issue.stdout.contains(".key"), "{issue:?}");
    assert_openssl_verifies(&pem, &["-CAfile", s(&dir.join("root.pem"))]);
    assert_openssl_sees_leaf(&pem, id);
    // The certificate is for the requester's key.
    let requester = openssl(&["pkey", "-in", s(&key), "-pubout"])
        .success()
        .stdout;
    assert_eq!(public_key_of_cert(&pem), requester);
    // And the CA's own rules apply, not the CSR's subject.
    let subject = openssl(&["x509", "-in", s(&pem), "-noout", "-subject"])
        .success()
        .stdout;
    assert!(
        !subject.contains("Test"),
        "CSR subject taken over: {subject}"
    );
}

#[test]
fn ca_issue_refuses_a_csr_for_another_id() {
    let t = tmp();
    let dir = t.path().join("ca");
    ca_init(&dir, EAST, &[]);
    let (_, csr) = openssl_csr(t.path(), "gw", "spiffe://east.acme.example/gw");
    let out = t.path().join("gw");

    causeway(&[
        "ca",
        "issue",
        "--dir",
        s(&dir),
        "--csr",
        s(&csr),
        "--spiffe-id",
        "spiffe://east.acme.example/admin",
        "--out",
        s(&out),
    ])
    .failure()
    .stderr_has(&["may not have", "spiffe://east.acme.example/gw"]);
    assert!(!with_ext(&out, "pem").exists());
    assert!(!with_ext(&out, "key").exists());
}

#[test]
fn ca_issue_refuses_a_csr_of_another_trust_domain() {
    let t = tmp();
    let dir = t.path().join("ca");
    ca_init(&dir, EAST, &[]);
    let west = "spiffe://west.example/gw";
    let (_, csr) = openssl_csr(t.path(), "west", west);
    let out = t.path().join("gw");

    // Whether --spiffe-id names the CSR's ID or one of ours, the CSR's trust
    // domain is refused.
    for asked in [west, "spiffe://east.acme.example/gw"] {
        causeway(&[
            "ca",
            "issue",
            "--dir",
            s(&dir),
            "--csr",
            s(&csr),
            "--spiffe-id",
            asked,
            "--out",
            s(&out),
        ])
        .failure()
        .stderr_has(&[west, "trust domain", EAST]);
        assert!(!with_ext(&out, "pem").exists());
    }
}

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

fn export(dir: &Path, format: &str, to: &Path) {
    let run = causeway(&["bundle", "export", "--dir", s(dir), "--format", format]).success();
    fs::write(to, run.stdout).unwrap();
}

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

// ---------------------------------------------------------------------------
// bundle inspect / bundle export
// ---------------------------------------------------------------------------

fn interop_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/interop/spiffe-bundles"
    ));
    assert!(
        dir.is_dir(),
        "interop bundles not found at {}",
        dir.display()
    );
    dir
}

#[test]
fn bundle_inspect_reads_the_interop_bundles() {
    let dir = interop_dir();
    // (file, x509, jwt, sequence, refresh hint)
    let valid = [
        ("spiffebundle_valid_1.json", 1, 1, "(none)", "(none)"),
        ("spiffebundle_valid_2.json", 1, 6, "1", "60s"),
        ("spiffebundle_valid_with_wit.json", 1, 2, "1", "60s"),
    ];
    let mut digests = BTreeSet::new();
    for (name, x509, jwt, sequence, hint) in valid {
        let path = dir.join(name);
        let run = causeway(&["bundle", "inspect", s(&path)]).success();
        let lines: Vec<&str> = run.stdout.lines().collect();
        for want in [
            format!("x509 authorities: {x509}"),
            format!("jwt authorities: {jwt}"),
            format!("sequence:      {sequence}"),
            format!("refresh hint:  {hint}"),
        ] {
            assert!(
                lines.contains(&want.as_str()),
                "{name}: want {want:?}: {run:?}"
            );
        }
        assert_eq!(field(&run.stdout, "key:"), "EC P-384", "{name}: {run:?}");
        // The authority names spiffe://local; inference finds it.
        assert_eq!(
            field(&run.stdout, "trust domain:"),
            "local (read from the authorities' SPIFFE IDs; --trust-domain to set)",
            "{name}"
        );
        assert_eq!(run.stdout.matches("- kid: ").count(), jwt, "{name}");
        digests.insert(field(&run.stdout, "digest:").to_owned());
    }
    // The same single X.509 authority everywhere: the same digest.
    assert_eq!(digests.len(), 1, "{digests:?}");

    let rejected = [
        ("spiffebundle_missing_kid.json", "\"kid\""),
        ("spiffebundle_no_keys.json", "\"keys\""),
        ("spiffebundle_multiple_x509.json", "exactly one certificate"),
    ];
    for (name, expected) in rejected {
        let path = dir.join(name);
        let run = causeway(&[
            "bundle",
            "inspect",
            "--trust-domain",
            "example.org",
            s(&path),
        ])
        .failure()
        .stderr_has(&[expected, name]);
        assert!(run.stdout.is_empty(), "{run:?}");
    }

    // Every file there has an expectation above.
    let known: BTreeSet<&str> = valid
        .iter()
        .map(|v| v.0)
        .chain(rejected.iter().map(|r| r.0))
        .collect();
    for entry in fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert!(known.contains(name.as_str()), "no expectation for {name}");
        }
    }
}

#[test]
fn bundle_export_writes_a_spiffe_bundle_document() {
    let t = tmp();
    let dir = t.path().join("ca");
    let init = ca_init(&dir, EAST, &[]);

    let run = causeway(&["bundle", "export", "--dir", s(&dir)]).success();
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let keys = doc["keys"].as_array().expect("a \"keys\" array");
    assert_eq!(keys.len(), 1, "{doc:#}");
    let k = &keys[0];
    assert_eq!(k["use"], "x509-svid");
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["crv"], "P-256");
    for coord in ["x", "y"] {
        assert!(
            k[coord].as_str().is_some_and(|v| !v.is_empty()),
            "{coord} missing: {doc:#}"
        );
    }
    let x5c = k["x5c"].as_array().expect("an \"x5c\" array");
    assert_eq!(x5c.len(), 1, "{doc:#}");
    // The one x5c element is the root certificate (standard base64 DER, the
    // same text as root.pem's body).
    let root_pem = fs::read_to_string(dir.join("root.pem")).unwrap();
    let root_b64: String = root_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(x5c[0].as_str(), Some(root_b64.as_str()));
    assert_eq!(doc["spiffe_sequence"], 1);
    assert_eq!(doc["spiffe_refresh_hint"], 300);

    // The digest `ca init` announced is what a peer computes from either
    // export form.
    let announced = field(&init.stdout, "bundle:");
    for format in ["json", "pem"] {
        let file = t.path().join(format!("bundle.{format}"));
        export(&dir, format, &file);
        let inspect = causeway(&["bundle", "inspect", s(&file)]).success();
        assert_eq!(field(&inspect.stdout, "digest:"), announced, "{inspect:?}");
        assert!(
            field(&inspect.stdout, "trust domain:").starts_with(&format!("{EAST} (read from")),
            "{inspect:?}"
        );
    }
}
