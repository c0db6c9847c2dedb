//! End-to-end tests of `causeway ca init` and `causeway ca issue` (with and
//! without `--csr`): they run the real binary on files in temporary
//! directories and check the results the way an operator would, with
//! `openssl` where it is the natural judge.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::{
    EAST, FRONTEND, ca_init, ca_issue, causeway, count_certificates, field, mode, openssl, s, tmp,
    with_ext,
};

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
