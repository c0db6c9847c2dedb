//! End-to-end tests of `causeway bundle inspect` and `causeway bundle
//! export`: they run the real binary on the shared interop bundles and on
//! bundles exported from a CA in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use serde_json::Value;

use support::{EAST, ca_init, causeway, export, field, s, tmp};

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
