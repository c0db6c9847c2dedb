#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The files in deploy/ checked offline: the Prometheus alert rules are
//! well formed, and every metric they name is one the code registers (a
//! renamed metric must not leave an alert that can never fire).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `"causeway_…"` string literal in the Rust sources under `dirs`.
fn registered_metrics(dirs: &[&str]) -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for part in text.split('"').skip(1).step_by(2) {
                    if part.starts_with("causeway_")
                        && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    {
                        out.insert(part.to_owned());
                    }
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    for d in dirs {
        walk(&repo().join(d), &mut out);
    }
    out
}

#[test]
fn alert_rules_are_well_formed_and_name_real_metrics() {
    let path = repo().join("deploy/prometheus/causeway-alerts.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let known = registered_metrics(&["gateway/src", "federation/controller/src"]);
    assert!(
        known.contains("causeway_gateway_svid_renewals_total"),
        "{known:?}"
    );
    let mut alerts = BTreeSet::new();
    for group in doc["groups"].as_array().unwrap() {
        assert!(group["name"].is_string(), "{group}");
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().unwrap();
            assert!(alerts.insert(name.to_owned()), "{name} twice");
            let expr = rule["expr"].as_str().unwrap();
            assert!(
                ["warning", "critical"].contains(&rule["labels"]["severity"].as_str().unwrap()),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name}: summary"
            );
            if let Some(f) = rule.get("for") {
                humantime::parse_duration(f.as_str().unwrap()).unwrap();
            }
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{name}: parentheses"
            );
            let mut named = 0;
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("causeway_") {
                    named += 1;
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .filter(|b| known.contains(*b))
                        .unwrap_or(word);
                    assert!(known.contains(base), "{name}: no metric {word} in the code");
                }
            }
            assert!(named > 0, "{name} names no Causeway metric");
        }
    }
    assert!(alerts.contains("CausewaySvidRenewalFailing"));
}
