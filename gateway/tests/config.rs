//! The gateway config: the example in config/ loads; every kind of mistake
//! is reported with the field it is in, all at once.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::{Path, PathBuf};

use causeway_gateway::config::{CallerMode, ConfigError, Destination, GatewayConfig, ListenerKind};
use causeway_gateway::service::ServiceName;
use causeway_trust::SpiffeId;

fn example_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/gateway-east.yaml")
}

fn example() -> String {
    std::fs::read_to_string(example_path()).unwrap()
}

fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    GatewayConfig::from_yaml("test.yaml", text, Path::new("/etc/causeway"))
}

fn problems(text: &str) -> Vec<(String, String)> {
    parse(text)
        .unwrap_err()
        .problems
        .into_iter()
        .map(|p| (p.field, p.reason))
        .collect()
}

fn dest(s: &str, port: u16) -> Destination {
    Destination {
        service: ServiceName::new(s).unwrap(),
        port,
    }
}

#[test]
fn the_example_config_loads() {
    let cfg = GatewayConfig::load(&example_path()).unwrap();
    assert_eq!(cfg.trust_domain.as_str(), "east.acme.example");
    assert_eq!(cfg.listeners.len(), 2);
    assert_eq!(cfg.listeners[0].kind, ListenerKind::Http);
    assert_eq!(
        cfg.listeners[1].kind,
        ListenerKind::Tcp {
            destination: dest("ledger.west", 5432)
        }
    );
    assert_eq!(cfg.listeners[1].caller, CallerMode::Mtls);
    assert_eq!(
        cfg.imports[&dest("payments.west", 80)].remote,
        dest("payments", 8080)
    );
    assert_eq!(
        cfg.imports[&dest("ledger.west", 5432)].remote,
        dest("ledger", 5432)
    );
    assert_eq!(cfg.peers["west"].gateways.len(), 2);
    // Relative credential paths are taken from the file's directory.
    assert_eq!(
        cfg.credentials.svid_cert,
        example_path().parent().unwrap().join("east-gw.pem")
    );
}

#[test]
fn authorization_is_deny_by_default() {
    let cfg = parse(&example()).unwrap();
    let inv = dest("inventory", 8080);
    let west_api = SpiffeId::new("spiffe://west.globex.example/ns/payments/sa/api").unwrap();
    let west_other = SpiffeId::new("spiffe://west.globex.example/ns/payments/sa/batch").unwrap();
    let east_any = SpiffeId::new("spiffe://east.acme.example/ns/x/sa/y").unwrap();
    assert!(cfg.authorizes(&west_api, &inv));
    assert!(cfg.authorizes(&east_any, &inv));
    assert!(!cfg.authorizes(&west_other, &inv));
    assert!(
        !cfg.authorizes(&west_api, &dest("inventory", 9090)),
        "port not in the rule"
    );
    assert!(
        !cfg.authorizes(&west_api, &dest("other", 8080)),
        "no rule, no entry"
    );
}

#[test]
fn each_mistake_names_its_field() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "trust_domain: east.acme.example",
            "trust_domain: East",
            "trust_domain",
            "lower case",
        ),
        (
            "id: spiffe://east.acme.example/gateway/east-1",
            "id: spiffe://west.globex.example/gw",
            "id",
            "not in the gateway's trust domain",
        ),
        (
            "trust_domain: west.globex.example\n    gateways:",
            "trust_domain: east.acme.example\n    gateways:",
            "peers[0].trust_domain",
            "own trust domain",
        ),
        (
            "id: spiffe://west.globex.example/gateway/west-2",
            "id: spiffe://third.example/gateway/x",
            "peers[0].gateways[1].id",
            "not in the peer's trust domain",
        ),
        (
            "address: 192.0.2.10:15443",
            "address: nowhere",
            "peers[0].gateways[0].address",
            "not an IP address",
        ),
        (
            "  - name: payments.west",
            "  - name: inventory",
            "imports[0].name",
            "clashes with a local service",
        ),
        (
            "peer: west\n    remote_service: payments",
            "peer: north\n    remote_service: payments",
            "imports[0].peer",
            "no peer named",
        ),
        (
            "service: ledger.west",
            "service: nothing",
            "listeners[1].service",
            "neither a local nor an imported",
        ),
        (
            "protocol: http",
            "protocol: udp",
            "listeners[0].protocol",
            "not http or tcp",
        ),
        (
            "listen: 127.0.0.1:15432",
            "listen: 127.0.0.1:18080",
            "listeners[1].listen",
            "used by another listener",
        ),
        (
            "identity: spiffe://east.acme.example/ns/shop/sa/frontend",
            "identity: spiffe://west.globex.example/ns/shop/sa/frontend",
            "listeners[0].caller.identity",
            "a local caller is one of ours",
        ),
        (
            "mtls: true",
            "mtls: false",
            "listeners[1].caller",
            "exactly one of",
        ),
        (
            "endpoints: [127.0.0.1:9001, 127.0.0.1:9002]",
            "endpoints: []",
            "services[0].endpoints",
            "at least one endpoint",
        ),
        (
            "  - service: inventory",
            "  - service: billing",
            "authorization[0].service",
            "no local service named",
        ),
        (
            "- trust_domain: east.acme.example\n\nlimits",
            "- {}\n\nlimits",
            "authorization[0].allow[3]",
            "exactly one of",
        ),
        (
            "connect_timeout: 5s",
            "connect_timeout: soon",
            "limits.connect_timeout",
            "soon",
        ),
        (
            "max_header_bytes: 8192",
            "max_header_bytes: 10",
            "limits.max_header_bytes",
            "outside",
        ),
        (
            "  - trust_domain: west.globex.example\n    file: west.bundle.json\n",
            "",
            "peers[0].trust_domain",
            "no bundle is configured",
        ),
    ];
    let base = example();
    for (from, to, field, reason) in cases {
        assert!(base.contains(from), "example lacks {from:?}");
        let text = base.replacen(from, to, 1);
        let got = problems(&text);
        assert!(
            got.iter().any(|(f, r)| f == field && r.contains(reason)),
            "changing {from:?} to {to:?}: want {field}: ...{reason}..., got {got:?}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once_and_the_message_names_the_file() {
    let text = example()
        .replacen("protocol: http", "protocol: udp", 1)
        .replacen(
            "endpoints: [127.0.0.1:9001, 127.0.0.1:9002]",
            "endpoints: []",
            1,
        );
    let err = parse(&text).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("test.yaml: invalid gateway config"),
        "{msg}"
    );
    assert!(
        msg.contains("listeners[0].protocol") && msg.contains("services[0].endpoints"),
        "{msg}"
    );
}

#[test]
fn unknown_fields_and_garbage_are_refused() {
    let err = parse(&format!("{}\nretries: 3\n", example())).unwrap_err();
    assert!(err.to_string().contains("retries"), "{err}");
    for garbage in ["", "[1, 2", "- a\n- b", "\u{0}\u{1}"] {
        assert!(parse(garbage).is_err(), "{garbage:?}");
    }
    let missing = GatewayConfig::load(Path::new("/nonexistent/gw.yaml")).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/gw.yaml"));
}

#[test]
fn identity_maps_and_rule_principals_are_checked_field_by_field() {
    let base = example();
    let cfg = parse(&base).unwrap();
    let west = causeway_trust::TrustDomain::new("west.globex.example").unwrap();
    let api = SpiffeId::workload("spiffe://west.globex.example/ns/payments/sa/api").unwrap();
    let other = SpiffeId::workload("spiffe://west.globex.example/ns/shop/sa/web").unwrap();
    let mapped = cfg.identity_map.lookup(&west, &api);
    assert_eq!(mapped.map(|p| p.as_str()), Some("payments-team"));
    assert_eq!(cfg.identity_map.lookup(&west, &other), None);
    let inv = dest("inventory", 8080);
    let auditor = SpiffeId::workload("spiffe://west.globex.example/ns/audit/sa/x").unwrap();
    assert!(cfg.authorizes(&auditor, &inv));
    assert!(!cfg.authorizes(&other, &inv));
    let other_mapped = SpiffeId::workload("spiffe://west.globex.example/ns/payments/sa/b").unwrap();
    assert!(!cfg.authorizes(&other_mapped, &inv));
    assert!(cfg.authorizes_as(
        &other_mapped,
        cfg.identity_map.lookup(&west, &other_mapped),
        &inv
    ));

    let bad = base.replace(
        "    principal: payments-team\n",
        "    principal: payments-team\n  - peer_trust_domain: west.globex.example\n    pattern: spiffe://west.globex.example/ns/*/sa/api\n    principal: api-callers\n  - peer_trust_domain: third.example\n    pattern: spiffe://east.acme.example/x/**\n    principal: x\n  - peer_trust_domain: west.globex.example\n    pattern: spiffe://west.globex.example/a*\n    principal: Bad\n",
    )
    .replace(
        "\n\nlimits",
        "\n  - service: inventory\n    allow:\n      - {id: spiffe://west.globex.example/a, principal: x}\n\nlimits",
    );
    let p = problems(&bad);
    let at = |f: &str| {
        p.iter()
            .find(|(field, _)| field == f)
            .unwrap_or_else(|| panic!("no problem at {f}: {p:?}"))
            .1
            .clone()
    };
    assert!(
        at("identity_map[1].pattern").contains("both match"),
        "{p:?}"
    );
    assert!(
        at("identity_map[2].peer_trust_domain")
            .contains("not the trust domain of a configured peer")
    );
    assert!(at("identity_map[2].pattern").contains("not in the peer's trust domain"));
    assert!(at("identity_map[3].pattern").contains("wildcard"), "{p:?}");
    at("identity_map[3].principal");
    assert!(at("authorization[1].allow[0]").contains("exactly one"));
}
