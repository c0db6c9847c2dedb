#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The files in deploy/ checked offline: the Prometheus alert rules and the
//! Grafana dashboard are well formed, and every metric they name is one the
//! code registers (a renamed metric must not leave an alert that can never
//! fire); the Kubernetes manifests have what their kinds need and carry
//! configs the product loads; the systemd units start real commands.

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

/// Every YAML document of deploy/kubernetes/, parsed.
fn manifests() -> Vec<(String, serde_json::Value)> {
    let dir = repo().join("deploy/kubernetes");
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", f.display()));
        for d in docs {
            let name = format!(
                "{}: {} {}",
                f.file_name().unwrap().to_string_lossy(),
                d["kind"].as_str().unwrap_or("?"),
                d["metadata"]["name"].as_str().unwrap_or("?")
            );
            out.push((name, d));
        }
    }
    out
}

/// A DNS-1123 label: what Kubernetes takes as a name of most objects.
fn dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn labels_match(selector: &serde_json::Value, labels: &serde_json::Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The manifests checked offline against what the API server would refuse
/// (the fields each kind needs, names, ports, selectors matching their
/// pods, volumes that exist), and the Causeway configs they carry loaded by
/// the same code as `causeway controller` and `causeway gateway`.
#[test]
fn kubernetes_manifests_are_well_formed_and_carry_valid_configs() {
    let docs = manifests();
    let kinds: BTreeSet<(&str, &str)> = docs
        .iter()
        .map(|(_, d)| {
            (
                d["apiVersion"].as_str().unwrap(),
                d["kind"].as_str().unwrap(),
            )
        })
        .collect();
    let known = [
        ("v1", "Namespace"),
        ("v1", "ServiceAccount"),
        ("v1", "ConfigMap"),
        ("v1", "Service"),
        ("v1", "PersistentVolumeClaim"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "StatefulSet"),
        ("policy/v1", "PodDisruptionBudget"),
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("rbac.authorization.k8s.io/v1", "Role"),
        ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ];
    for k in &kinds {
        assert!(known.contains(k), "unknown apiVersion/kind {k:?}");
    }
    for required in [
        "Deployment",
        "StatefulSet",
        "Service",
        "ConfigMap",
        "Role",
        "RoleBinding",
    ] {
        assert!(kinds.iter().any(|(_, k)| *k == required), "no {required}");
    }
    let by_kind = |kind: &str| -> Vec<&(String, serde_json::Value)> {
        docs.iter().filter(|(_, d)| d["kind"] == kind).collect()
    };
    let names = |kind: &str| -> BTreeSet<String> {
        by_kind(kind)
            .iter()
            .map(|(_, d)| d["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut seen = BTreeSet::new();
    for (name, d) in &docs {
        let meta = &d["metadata"];
        let n = meta["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no metadata.name"));
        assert!(dns_label(n, 63), "{name}: bad name");
        if d["kind"] != "Namespace" {
            assert_eq!(meta["namespace"], "causeway", "{name}: namespace");
        }
        assert!(
            seen.insert((d["kind"].to_string(), n.to_owned())),
            "{name} twice"
        );
    }
    let config_maps = names("ConfigMap");
    let accounts = names("ServiceAccount");
    let secrets_or_claims = names("PersistentVolumeClaim");

    // Workloads: selector ⊆ pod labels, containers with image and ports,
    // every volume mount declared, every ConfigMap and claim there.
    let mut pods: Vec<(String, serde_json::Value, Vec<serde_json::Value>)> = Vec::new();
    for (name, d) in by_kind("Deployment")
        .into_iter()
        .chain(by_kind("StatefulSet"))
    {
        let spec = &d["spec"];
        let template = &spec["template"];
        assert!(
            labels_match(
                &spec["selector"]["matchLabels"],
                &template["metadata"]["labels"]
            ),
            "{name}: the selector does not match the pod labels"
        );
        if d["kind"] == "StatefulSet" {
            assert!(spec["serviceName"].is_string(), "{name}: serviceName");
        }
        let pod = &template["spec"];
        if let Some(sa) = pod["serviceAccountName"].as_str() {
            assert!(accounts.contains(sa), "{name}: no ServiceAccount {sa}");
        }
        let mut volumes: BTreeSet<String> = pod["volumes"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|v| v["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        for t in spec["volumeClaimTemplates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            volumes.insert(t["metadata"]["name"].as_str().unwrap().to_owned());
        }
        for v in pod["volumes"].as_array().into_iter().flatten() {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                assert!(config_maps.contains(cm), "{name}: no ConfigMap {cm}");
            }
            if let Some(c) = v["persistentVolumeClaim"]["claimName"].as_str() {
                assert!(secrets_or_claims.contains(c), "{name}: no claim {c}");
            }
        }
        let containers = pod["containers"].as_array().unwrap();
        assert!(!containers.is_empty(), "{name}: no container");
        let mut ports = Vec::new();
        for c in containers {
            assert!(
                dns_label(c["name"].as_str().unwrap(), 63),
                "{name}: container name"
            );
            assert!(c["image"].is_string(), "{name}: image");
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                let v = m["name"].as_str().unwrap();
                assert!(
                    volumes.contains(v),
                    "{name}: mount of undeclared volume {v}"
                );
                assert!(m["mountPath"].as_str().unwrap().starts_with('/'), "{name}");
            }
            for p in c["ports"].as_array().into_iter().flatten() {
                let pn = p["name"].as_str().unwrap();
                assert!(dns_label(pn, 15), "{name}: port name {pn} (at most 15)");
                let n = p["containerPort"].as_u64().unwrap();
                assert!((1..=65535).contains(&n), "{name}: port {n}");
                assert!(
                    ["TCP", "UDP"].contains(&p["protocol"].as_str().unwrap_or("TCP")),
                    "{name}: protocol"
                );
                ports.push(p.clone());
            }
            for probe in ["readinessProbe", "livenessProbe"] {
                if let Some(port) = c[probe]["httpGet"]["port"].as_str() {
                    assert!(
                        ports.iter().any(|p| p["name"] == port),
                        "{name}: {probe} on unknown port {port}"
                    );
                }
            }
        }
        pods.push((name.clone(), template["metadata"]["labels"].clone(), ports));
    }

    // Services: select some pod, target its named ports with its protocol.
    let mut lb_udp = false;
    for (name, d) in by_kind("Service") {
        let spec = &d["spec"];
        let selected: Vec<_> = pods
            .iter()
            .filter(|(_, labels, _)| labels_match(&spec["selector"], labels))
            .collect();
        assert!(!selected.is_empty(), "{name}: selects no pod");
        for p in spec["ports"].as_array().unwrap() {
            let protocol = p["protocol"].as_str().unwrap_or("TCP");
            if let Some(target) = p["targetPort"].as_str() {
                assert!(
                    selected
                        .iter()
                        .all(|(_, _, ports)| ports.iter().any(|cp| cp["name"] == target
                            && cp["protocol"].as_str().unwrap_or("TCP") == protocol)),
                    "{name}: targetPort {target}/{protocol} is not a port of its pods"
                );
            }
            if spec["type"] == "LoadBalancer" && protocol == "UDP" {
                lb_udp = true;
            }
        }
    }
    assert!(lb_udp, "the gateway's QUIC port on a LoadBalancer (UDP)");

    for (name, d) in by_kind("RoleBinding") {
        let role = d["roleRef"]["name"].as_str().unwrap();
        assert!(names("Role").contains(role), "{name}: no Role {role}");
    }
    for (name, d) in by_kind("PodDisruptionBudget")
        .into_iter()
        .chain(by_kind("NetworkPolicy"))
    {
        let sel = if d["kind"] == "NetworkPolicy" {
            &d["spec"]["podSelector"]["matchLabels"]
        } else {
            &d["spec"]["selector"]["matchLabels"]
        };
        assert!(
            pods.iter().any(|(_, labels, _)| labels_match(sel, labels)),
            "{name}: selects no pod"
        );
    }

    // The Causeway configs in the ConfigMaps, loaded as the product loads
    // them.
    let mut checked = 0;
    for (name, d) in by_kind("ConfigMap") {
        for (key, text) in d["data"].as_object().unwrap() {
            let text = text.as_str().unwrap();
            match key.as_str() {
                "controller.yaml" => {
                    let c = causeway_controller::ControllerConfig::parse(
                        key,
                        text,
                        std::path::Path::new("/etc/causeway"),
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(c.federation_listen.is_some(), "{name}: public port");
                    checked += 1;
                }
                "gateway.yaml" => {
                    let raw: causeway_gateway::config::raw::RawConfig =
                        serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
                    let cfg = causeway_gateway::config::GatewayConfig::from_raw(
                        key,
                        raw,
                        std::path::Path::new("/etc/causeway"),
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(cfg.controller.is_some(), "{name}: run by the controller");
                    checked += 1;
                }
                other => panic!("{name}: unexpected key {other}"),
            }
        }
    }
    assert_eq!(checked, 2);
}

/// The systemd units: the sections and keys systemd needs, and the
/// commands they start are the CLI's.
#[test]
fn systemd_units_start_real_commands() {
    for (unit, command) in [
        (
            "causeway-controller.service",
            "causeway controller --config ",
        ),
        ("causeway-gateway@.service", "causeway gateway --config "),
    ] {
        let text = std::fs::read_to_string(repo().join("deploy/systemd").join(unit)).unwrap();
        let mut section = String::new();
        let mut keys = BTreeSet::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_owned();
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{unit}: not key=value: {line}"));
            keys.insert(format!("{section}.{k}"));
            if k == "ExecStart" {
                assert!(
                    v.starts_with('/'),
                    "{unit}: ExecStart needs an absolute path"
                );
                assert!(v.contains(command), "{unit}: {v}");
            }
        }
        for k in ["Unit.Description", "Service.ExecStart", "Install.WantedBy"] {
            assert!(keys.contains(k), "{unit}: no {k}");
        }
    }
}

/// The Grafana dashboard: valid JSON with the panels the issue names, and
/// every metric it queries one the code registers.
#[test]
fn grafana_dashboard_queries_real_metrics() {
    let text =
        std::fs::read_to_string(repo().join("deploy/grafana/causeway-dashboard.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let known = registered_metrics(&["gateway/src", "federation/controller/src"]);
    let panels = doc["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Certificate expiry timeline",
        "SVID renewal success rate",
        "TLS handshake failures by reason",
        "Requests by peer trust domain and result",
    ] {
        assert!(titles.contains(&wanted), "no panel {wanted}: {titles:?}");
    }
    for p in panels {
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"].as_str().unwrap();
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{expr}"
            );
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("causeway_") {
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .filter(|b| known.contains(*b))
                        .unwrap_or(word);
                    assert!(known.contains(base), "no metric {word} in the code");
                }
            }
        }
    }
}
