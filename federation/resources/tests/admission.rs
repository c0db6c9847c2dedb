//! Admission: each refusal names the file, the field and the reason, and
//! every problem of a file is reported at once.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use causeway_resources::{ResourceError, ResourceSet, admit};
use support::*;

/// Applies `text` as `name` over `stored` and returns the refusal.
fn refuse(fx: &Fixture, stored: &ResourceSet, name: &str, text: &str) -> ResourceError {
    let incoming = match fx.parse(name, text) {
        Ok(e) => e,
        Err(e) => return e,
    };
    match admit(&east(), stored, incoming) {
        Ok(_) => panic!("{name} was admitted"),
        Err(e) => e,
    }
}

fn with_inventory(fx: &Fixture) -> ResourceSet {
    fx.stored(&[("inventory.yaml", SERVICE_INVENTORY)])
}

#[test]
fn the_valid_peering_is_admitted_with_its_service() {
    let fx = Fixture::new();
    let stored = with_inventory(&fx);
    let set = admit(&east(), &stored, fx.entries("west.yaml", PEERING_WEST)).unwrap();
    assert_eq!(set.len(), 2);
    // A service and the peering exporting it may come in one file.
    let both = format!("{SERVICE_INVENTORY}---\n{PEERING_WEST}");
    let set = admit(
        &east(),
        &ResourceSet::default(),
        fx.entries("both.yaml", &both),
    )
    .unwrap();
    assert_eq!(set.len(), 2);
}

#[test]
fn refuses_a_peering_claiming_the_local_trust_domain() {
    let fx = Fixture::new();
    let text = PEERING_NORTH
        .replace("north.initech.example", "east.acme.example")
        .replace("north.bundle.json", "east.bundle.json");
    let err = refuse(&fx, &ResourceSet::default(), "self.yaml", &text);
    assert_problem(
        &err,
        "self.yaml",
        "spec.trustDomain",
        "this controller's own trust domain",
    );
}

#[test]
fn refuses_a_trust_domain_another_peering_claims() {
    let fx = Fixture::new();
    let stored = fx.stored(&[("north.yaml", PEERING_NORTH)]);
    let text = edit(PEERING_NORTH, "name: north", "name: north-again");
    let err = refuse(&fx, &stored, "again.yaml", &text);
    let line = assert_problem(
        &err,
        "again.yaml",
        "spec.trustDomain",
        "north.initech.example is already the trust domain of Peering/north (store)",
    );
    assert!(line.contains("Peering/north-again"), "{line}");
    // Re-applying the same peering (same name) is an update, not a claim.
    admit(&east(), &stored, fx.entries("north.yaml", PEERING_NORTH)).unwrap();
}

#[test]
fn refuses_two_identities_mapped_to_one_principal_in_one_peering() {
    let fx = Fixture::new();
    let stored = with_inventory(&fx);
    let text = edit(
        PEERING_WEST,
        "      principal: auditors\n      shared: true\n",
        "      principal: west-payments\n",
    );
    let err = refuse(&fx, &stored, "west.yaml", &text);
    assert_problem(
        &err,
        "west.yaml",
        "spec.identityMap[1].principal",
        "principal west-payments is already mapped from another foreign identity by spec.identityMap[0]",
    );
}

#[test]
fn refuses_two_peerings_mapping_to_one_principal_unless_all_say_shared() {
    let fx = Fixture::new();
    let stored = fx.stored(&[
        ("inventory.yaml", SERVICE_INVENTORY),
        ("west.yaml", PEERING_WEST),
    ]);
    let north = format!(
        "{PEERING_NORTH}  identityMap:\n    - from: spiffe://north.initech.example/ns/audit/sa/*\n      principal: auditors\n"
    );
    let err = refuse(&fx, &stored, "north.yaml", &north);
    assert_problem(
        &err,
        "north.yaml",
        "spec.identityMap[0].principal",
        "spec.identityMap[1] of Peering/west (store)",
    );
    assert!(err.to_string().contains("shared: true"), "{err}");
    // Every rule naming it says shared: admitted.
    let shared = format!("{north}      shared: true\n");
    admit(&east(), &stored, fx.entries("north.yaml", &shared)).unwrap();
    // One side shared is not enough, from either side.
    let err = refuse(
        &fx,
        &stored,
        "north-principal.yaml",
        &north.replace("principal: auditors", "principal: west-payments"),
    );
    assert_problem(
        &err,
        "north-principal.yaml",
        "spec.identityMap[0].principal",
        "principal west-payments is already mapped",
    );
}

#[test]
fn refuses_overlapping_patterns_mapping_to_two_principals() {
    let fx = Fixture::new();
    let stored = with_inventory(&fx);
    let text = edit(
        PEERING_WEST,
        "    - from: spiffe://west.globex.example/ns/audit/**",
        "    - from: spiffe://west.globex.example/ns/*/sa/api",
    );
    let err = refuse(&fx, &stored, "west.yaml", &text);
    assert_problem(
        &err,
        "west.yaml",
        "spec.identityMap[1].from",
        "spiffe://west.globex.example/ns/payments/sa/api would map to both west-payments and auditors",
    );
}

#[test]
fn refuses_an_import_named_like_a_local_service() {
    let fx = Fixture::new();
    let stored = with_inventory(&fx);
    let text = edit(
        PEERING_WEST,
        "localName: payments.west",
        "localName: inventory",
    );
    let err = refuse(&fx, &stored, "west.yaml", &text);
    assert_problem(
        &err,
        "west.yaml",
        "spec.imports[0].localName",
        "inventory clashes with the local service of that name (Service/inventory (store))",
    );
    // The other way round: a Service named like an import already stored.
    let stored = fx.stored(&[
        ("inventory.yaml", SERVICE_INVENTORY),
        ("west.yaml", PEERING_WEST),
    ]);
    let service = SERVICE_INVENTORY.replace("name: inventory", "name: payments.west");
    let err = refuse(&fx, &stored, "payments.yaml", &service);
    assert_problem(
        &err,
        "payments.yaml",
        "name",
        "Peering/west (store) imports a service under the name payments.west",
    );
}

#[test]
fn refuses_an_import_named_like_another_peerings_import() {
    let fx = Fixture::new();
    let stored = fx.stored(&[
        ("inventory.yaml", SERVICE_INVENTORY),
        ("west.yaml", PEERING_WEST),
    ]);
    let north = format!(
        "{PEERING_NORTH}  imports:\n    - service: payments\n      ports: [443]\n      localName: payments.west\n"
    );
    let err = refuse(&fx, &stored, "north.yaml", &north);
    assert_problem(
        &err,
        "north.yaml",
        "spec.imports[0].localName",
        "payments.west is already the local name of an import of Peering/west (store)",
    );
}

#[test]
fn refuses_malformed_values_all_at_once() {
    let fx = Fixture::new();
    let text = PEERING_WEST
        .replace(
            "ns/payments/sa/*\n      principal",
            "ns/payments/sa-*\n      principal",
        )
        .replace("url: https://", "url: http://")
        .replace(
            "id: spiffe://west.globex.example/gateway/west-1",
            "id: spiffe://west.globex.example/gateway//1",
        )
        .replace("address: 192.0.2.10:15443", "address: 192.0.2.10:99999")
        .replace("ports: [8080]\n      callers", "ports: [0]\n      callers");
    let err = refuse(&fx, &ResourceSet::default(), "west.yaml", &text);
    assert_problem(
        &err,
        "west.yaml",
        "spec.identityMap[0].from",
        "\"sa-*\" mixes '*' with other characters",
    );
    assert_problem(
        &err,
        "west.yaml",
        "spec.bundleEndpoint.url",
        "is not an https URL",
    );
    assert_problem(&err, "west.yaml", "spec.gateways[0].id", "empty segment");
    assert_problem(
        &err,
        "west.yaml",
        "spec.gateways[0].address",
        "\"99999\" is not a port",
    );
    assert_problem(
        &err,
        "west.yaml",
        "spec.exports[0].ports[0]",
        "0 is not a port",
    );
    assert_eq!(err.problems.len(), 5, "{err}");
}

#[test]
fn refuses_more_malformed_patterns() {
    let fx = Fixture::new();
    for (pattern, reason) in [
        (
            "spiffe://west.globex.example/**/sa",
            "'**' may only be the last segment",
        ),
        ("spiffe://*.globex.example/ns", "never a wildcard"),
        (
            "spiffe://west.globex.example/ns?x=1",
            "must not have a query",
        ),
        (
            "spiffe://west.globex.example/ns#x",
            "must not have a fragment",
        ),
        ("spiffe://West.globex.example/ns", "lower case"),
    ] {
        let text = edit(
            PEERING_WEST,
            "from: spiffe://west.globex.example/ns/audit/**",
            &format!("from: \"{pattern}\""),
        );
        let err = refuse(&fx, &ResourceSet::default(), "west.yaml", &text);
        assert_problem(&err, "west.yaml", "spec.identityMap[1].from", reason);
    }
}

#[test]
fn refuses_ids_outside_the_peer_trust_domain() {
    let fx = Fixture::new();
    let text = PEERING_WEST
        .replace(
            "spiffeId: spiffe://west.globex.example/controller",
            "spiffeId: spiffe://east.acme.example/controller",
        )
        .replace(
            "id: spiffe://west.globex.example/gateway/west-1",
            "id: spiffe://north.initech.example/gateway/1",
        )
        .replace(
            "from: spiffe://west.globex.example/ns/audit/**",
            "from: spiffe://north.initech.example/ns/audit/**",
        )
        .replace(
            "pattern: spiffe://west.globex.example/ns/payments/sa/*",
            "pattern: spiffe://east.acme.example/ns/payments/sa/*",
        );
    let err = refuse(&fx, &ResourceSet::default(), "west.yaml", &text);
    let reason = "is not in the peer's trust domain west.globex.example";
    assert_problem(&err, "west.yaml", "spec.bundleEndpoint.spiffeId", reason);
    assert_problem(&err, "west.yaml", "spec.gateways[0].id", reason);
    assert_problem(&err, "west.yaml", "spec.identityMap[1].from", reason);
    assert_problem(
        &err,
        "west.yaml",
        "spec.exports[0].callers[0].pattern",
        reason,
    );
    let td = edit(
        PEERING_WEST,
        "- pattern: spiffe://west.globex.example/ns/payments/sa/*",
        "- trustDomain: north.initech.example",
    );
    let err = refuse(&fx, &ResourceSet::default(), "west.yaml", &td);
    assert_problem(
        &err,
        "west.yaml",
        "spec.exports[0].callers[0].trustDomain",
        reason,
    );
}

#[test]
fn refuses_an_export_of_a_missing_service_or_port() {
    let fx = Fixture::new();
    let err = refuse(&fx, &ResourceSet::default(), "west.yaml", PEERING_WEST);
    assert_problem(
        &err,
        "west.yaml",
        "spec.exports[0].service",
        "no local Service named inventory",
    );
    let stored = with_inventory(&fx);
    let text = edit(
        PEERING_WEST,
        "ports: [8080]\n      callers",
        "ports: [8080, 7070]\n      callers",
    );
    let err = refuse(&fx, &stored, "west.yaml", &text);
    assert_problem(
        &err,
        "west.yaml",
        "spec.exports[0].ports[1]",
        "Service inventory has no port 7070",
    );
    // Nor may a Service drop a port a stored peering exports.
    let stored = fx.stored(&[
        ("inventory.yaml", SERVICE_INVENTORY),
        ("west.yaml", PEERING_WEST),
    ]);
    let service = SERVICE_INVENTORY
        .replace("port: 8080", "port: 8081")
        .replace("ports: [8080]", "ports: [8081]");
    let err = refuse(&fx, &stored, "inventory.yaml", &service);
    assert_problem(
        &err,
        "inventory.yaml",
        "spec.ports",
        "port 8080 is exported by Peering/west (store)",
    );
}

#[test]
fn refuses_a_bad_first_bundle() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.path("a-directory.json")).unwrap();
    for (file, reason) in [
        ("missing.json", "cannot read"),
        ("a-directory.json", "cannot read"),
        (
            "garbage.json",
            "not a SPIFFE bundle document: bundle has no \"keys\" member",
        ),
        (
            "north.bundle.json",
            "the bundle is for north.initech.example",
        ),
    ] {
        let text = edit(
            PEERING_WEST,
            "file: west.bundle.json",
            &format!("file: {file}"),
        );
        let err = refuse(&fx, &ResourceSet::default(), "west.yaml", &text);
        assert_problem(&err, "west.yaml", "spec.firstBundle.file", reason);
    }
    std::fs::write(fx.path("empty.json"), "{\"keys\": []}").unwrap();
    let text = edit(PEERING_WEST, "file: west.bundle.json", "file: empty.json");
    let err = refuse(&fx, &ResourceSet::default(), "west.yaml", &text);
    assert_problem(
        &err,
        "west.yaml",
        "spec.firstBundle.file",
        "holds no X.509 authority",
    );
}

#[test]
fn refuses_unknown_kinds_versions_and_fields() {
    let fx = Fixture::new();
    let none = ResourceSet::default();
    let err = refuse(
        &fx,
        &none,
        "k.yaml",
        &PEERING_WEST.replace("kind: Peering", "kind: Peer"),
    );
    assert_problem(
        &err,
        "k.yaml",
        "kind",
        "\"Peer\" is not a kind of resource (Peering, Service)",
    );
    let err = refuse(
        &fx,
        &none,
        "v.yaml",
        &PEERING_WEST.replace("v1alpha1", "v1"),
    );
    assert_problem(
        &err,
        "v.yaml",
        "apiVersion",
        "\"causeway.dev/v1\" is not a version this Causeway reads",
    );
    let err = refuse(
        &fx,
        &none,
        "f.yaml",
        &PEERING_WEST.replace(
            "      shared: true",
            "      shared: true\n      share: true",
        ),
    );
    assert_problem(
        &err,
        "f.yaml",
        "spec.identityMap[1].share",
        "unknown field `share`",
    );
    let err = refuse(
        &fx,
        &none,
        "t.yaml",
        &PEERING_WEST.replace("shared: true", "shared: [1]"),
    );
    assert_problem(&err, "t.yaml", "spec.identityMap[1].shared", "invalid type");
    let err = refuse(&fx, &none, "y.yaml", "kind: [unclosed");
    assert_problem(&err, "y.yaml", "", "not YAML");
    let err = refuse(&fx, &none, "e.yaml", "# nothing\n");
    assert_problem(&err, "e.yaml", "", "holds no resource");
}

#[test]
fn reports_problems_of_every_document_of_a_file() {
    let fx = Fixture::new();
    let text = format!(
        "{}---\n{}",
        SERVICE_INVENTORY.replace("protocol: http2", "protocol: grpc"),
        PEERING_NORTH
            .replace("192", "x")
            .replace("gw.north.initech.example:15443", "gw.north.initech.example")
    );
    let err = fx.parse("two.yaml", &text).unwrap_err();
    let first = assert_problem(
        &err,
        "two.yaml",
        "spec.ports[1].protocol",
        "\"grpc\" is not tcp, http or http2",
    );
    assert!(first.contains("(document 1) Service/inventory"), "{first}");
    let second = assert_problem(&err, "two.yaml", "spec.gateways[0].address", "has no port");
    assert!(second.contains("(document 2) Peering/north"), "{second}");
}

#[test]
fn refuses_the_same_resource_twice_in_one_apply() {
    let fx = Fixture::new();
    let text = format!("{SERVICE_INVENTORY}---\n{SERVICE_INVENTORY}");
    let err = refuse(&fx, &ResourceSet::default(), "twice.yaml", &text);
    let line = assert_problem(
        &err,
        "twice.yaml",
        "name",
        "Service/inventory is declared twice",
    );
    assert!(line.contains("(document 2)"), "{line}");
}

#[test]
fn refuses_bad_services() {
    let fx = Fixture::new();
    let text = SERVICE_INVENTORY
        .replace("endpoints: [10.0.1.21:8080]", "endpoints: [10.0.1.21]")
        .replace("ports: [8080]\n      allow", "ports: [7070]\n      allow")
        .replace(
            "- principal: west-payments",
            "- principal: west-payments\n          id: spiffe://east.acme.example/x",
        );
    let err = refuse(&fx, &ResourceSet::default(), "inventory.yaml", &text);
    assert_problem(&err, "inventory.yaml", "spec.endpoints[0]", "has no port");
    assert_problem(
        &err,
        "inventory.yaml",
        "spec.authorization[0].ports[0]",
        "the service has no port 7070",
    );
    assert_problem(
        &err,
        "inventory.yaml",
        "spec.authorization[0].allow[0]",
        "set exactly one of principal, id, pattern or trustDomain",
    );
}
