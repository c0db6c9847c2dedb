//! Plans (what an apply would change) and round trips (a resource written
//! as the store keeps it reads back equal).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use causeway_resources::plan::{Action, Plan};
use causeway_resources::raw::{RawDocument, RawServiceSpec};
use causeway_resources::{Resource, ResourceSet, admit, parse_str};
use support::*;

#[test]
fn plan_of_a_first_apply_creates_everything() {
    let fx = Fixture::new();
    let both = format!("{SERVICE_INVENTORY}---\n{PEERING_WEST}");
    let plan = Plan::new(&ResourceSet::default(), &fx.entries("both.yaml", &both));
    assert_eq!(
        plan.to_string(),
        "+ Service/inventory  created\n+ Peering/west  created\n2 created, 0 updated, 0 unchanged"
    );
    assert!(!plan.is_noop());
}

#[test]
fn plan_names_the_fields_that_change() {
    let fx = Fixture::new();
    let stored = fx.stored(&[
        ("inventory.yaml", SERVICE_INVENTORY),
        ("west.yaml", PEERING_WEST),
    ]);
    // Same resources again, from another directory: nothing changes.
    let again = format!("{SERVICE_INVENTORY}---\n{PEERING_WEST}");
    let plan = Plan::new(&stored, &fx.entries("again.yaml", &again));
    assert!(plan.is_noop(), "{plan}");
    assert_eq!(plan.counts(), (0, 0, 2));

    let west = PEERING_WEST
        .replace("192.0.2.10:15443", "192.0.2.12:15443")
        .replace("principal: auditors", "principal: west-auditors")
        .replace(
            "bundle.west.globex.example:8443",
            "bundle.west.globex.example:9443",
        )
        .replace("west.bundle.json", "north.bundle.json")
        .replace(
            "trustDomain: west.globex.example",
            "trustDomain: north.initech.example",
        )
        .replace("west.globex.example", "north.initech.example");
    let service = SERVICE_INVENTORY.replace(
        "endpoints: [10.0.1.21:8080]",
        "endpoints: [10.0.1.21:8080, 10.0.1.22:8080]",
    );
    let text = format!("{service}---\n{west}---\n{PEERING_NORTH}");
    let incoming = fx.entries("change.yaml", &text);
    let plan = Plan::new(&stored, &incoming);
    let out = plan.to_string();
    assert!(out.starts_with("~ Service/inventory  updated\n    spec.endpoints: +10.0.1.22:8080\n~ Peering/west  updated\n    spec.trustDomain: west.globex.example → north.initech.example\n    spec.bundleEndpoint.url: https://bundle.west.globex.example:8443/bundle → https://bundle.north.initech.example:9443/bundle\n"), "{out}");
    assert!(out.contains("    spec.firstBundle: sha256:"), "{out}");
    assert!(
        out.contains("    spec.gateways: +192.0.2.12:15443 -192.0.2.10:15443\n"),
        "{out}"
    );
    assert!(out.contains("    spec.identityMap: +spiffe://north.initech.example/ns/audit/** +spiffe://north.initech.example/ns/payments/sa/* -spiffe://west.globex.example/ns/audit/** -spiffe://west.globex.example/ns/payments/sa/*\n"), "{out}");
    assert!(
        out.ends_with("+ Peering/north  created\n1 created, 2 updated, 0 unchanged"),
        "{out}"
    );
    let Action::Update(fields) = &plan.changes[0].action else {
        panic!("{out}");
    };
    assert_eq!(fields.len(), 1);
    assert_eq!(plan.changes[1].origin.document, 2);
}

#[test]
fn plan_shows_changed_list_items() {
    let fx = Fixture::new();
    let stored = fx.stored(&[
        ("inventory.yaml", SERVICE_INVENTORY),
        ("west.yaml", PEERING_WEST),
    ]);
    let west = PEERING_WEST.replace(
        "ports: [8080]\n      callers",
        "ports: [8080, 9090]\n      callers",
    );
    let service = SERVICE_INVENTORY.replace("protocol: http2", "protocol: tcp");
    let text = format!("{west}---\n{service}");
    let plan = Plan::new(&stored, &fx.entries("change.yaml", &text));
    assert_eq!(
        plan.to_string(),
        "~ Peering/west  updated\n    spec.exports: ~inventory\n~ Service/inventory  updated\n    spec.ports: ~9090\n0 created, 2 updated, 0 unchanged"
    );
    // The plan describes what admission then accepts.
    admit(&east(), &stored, fx.entries("change.yaml", &text)).unwrap();
}

#[test]
fn resources_round_trip_through_the_store_form() {
    let fx = Fixture::new();
    let text = format!("{SERVICE_INVENTORY}---\n{PEERING_WEST}---\n{PEERING_NORTH}");
    for entry in fx.entries("all.yaml", &text) {
        let yaml = entry.resource.to_yaml().unwrap();
        // The store form stands on its own: no file next to it.
        let back = parse_str("store", &yaml, std::path::Path::new("/nonexistent")).unwrap();
        assert_eq!(back.len(), 1);
        let mut expected = entry.resource.clone();
        if let Resource::Peering(p) = &mut expected {
            assert!(yaml.contains("inline:"), "{yaml}");
            p.first_bundle.file = None;
        }
        assert_eq!(back[0].resource, expected, "{yaml}");
        // And once more: stable.
        assert_eq!(back[0].resource.to_yaml().unwrap(), yaml);
    }
}

#[test]
fn raw_specs_keep_what_was_written() {
    let fx = Fixture::new();
    let entries = fx.entries("inventory.yaml", SERVICE_INVENTORY);
    let Resource::Service(s) = &entries[0].resource else {
        panic!("not a service");
    };
    let written: RawDocument<RawServiceSpec> = serde_saphyr::from_str(SERVICE_INVENTORY).unwrap();
    assert_eq!(s.to_raw(), written.spec);
    let stored: RawDocument<RawServiceSpec> =
        serde_saphyr::from_str(&entries[0].resource.to_yaml().unwrap()).unwrap();
    assert_eq!(stored, written);
}
