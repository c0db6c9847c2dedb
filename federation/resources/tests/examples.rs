//! Every peering and service file in config/ loads and is admitted by the
//! controller that would apply it; the identity maps and authorization
//! rules they declare decide as their comments say.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::{Path, PathBuf};

use causeway_resources::{Entry, IdentityMap, Resource, ResourceSet, admit, load_file};
use causeway_trust::{SpiffeId, TrustDomain};

/// Which controller applies each resource file of config/. A new resource
/// file fails `every_resource_file_is_listed` until it is added here.
const FILES: &[(&str, &str)] = &[
    ("service-inventory.yaml", "east.acme.example"),
    ("peering-west.yaml", "east.acme.example"),
    ("service-payments.yaml", "west.globex.example"),
    ("authorization.yaml", "west.globex.example"),
    ("peering-east.yaml", "west.globex.example"),
];

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config")
}

/// YAML files of config/ that hold resources: all but the gateway and
/// controller configs (`gateway-*.yaml`, `controller-*.yaml`, each loaded
/// by its own crate's test).
fn resource_files() -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(config_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".yaml")
            && !name.starts_with("gateway-")
            && !name.starts_with("controller-")
        {
            out.push(name);
        }
    }
    out.sort();
    out
}

fn admitted(domain: &str) -> ResourceSet {
    let local = TrustDomain::new(domain).unwrap();
    let mut set = ResourceSet::default();
    for (file, td) in FILES {
        if *td == domain {
            let entries = load_file(&config_dir().join(file)).unwrap_or_else(|e| panic!("{e}"));
            set = admit(&local, &set, entries).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    set
}

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap()
}

#[test]
fn every_resource_file_is_listed() {
    let mut listed: Vec<String> = FILES.iter().map(|(f, _)| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(resource_files(), listed);
}

#[test]
fn each_controller_admits_its_files_in_one_apply_too() {
    for domain in ["east.acme.example", "west.globex.example"] {
        let local = TrustDomain::new(domain).unwrap();
        let entries: Vec<Entry> = FILES
            .iter()
            .filter(|(_, td)| *td == domain)
            .flat_map(|(f, _)| load_file(&config_dir().join(f)).unwrap())
            .collect();
        let resources = entries.len();
        let set = admit(&local, &ResourceSet::default(), entries).unwrap();
        assert_eq!(set, admitted(domain));
        assert_eq!(set.len(), resources);
        assert!(set.len() >= 2, "{domain}: a service and a peering at least");
    }
}

#[test]
fn east_maps_west_callers_and_authorizes_them() {
    let set = admitted("east.acme.example");
    let west = TrustDomain::new("west.globex.example").unwrap();
    let map = IdentityMap::from_set(&set);
    assert_eq!(map.len(), 2);
    let api = id("spiffe://west.globex.example/ns/payments/sa/api");
    let principal = map.lookup(&west, &api).map(|p| p.as_str());
    assert_eq!(principal, Some("west-payments"));
    let auditor = id("spiffe://west.globex.example/ns/audit/sa/reader/v2");
    assert_eq!(
        map.lookup(&west, &auditor).map(|p| p.as_str()),
        Some("auditors")
    );
    assert_eq!(
        map.lookup(&west, &id("spiffe://west.globex.example/ns/shop/sa/x")),
        None
    );

    let Some(Resource::Service(inventory)) = set
        .get(causeway_resources::Kind::Service, "inventory")
        .map(|e| &e.resource)
    else {
        panic!("no inventory");
    };
    assert!(inventory.authorizes(8080, &api, principal));
    assert!(!inventory.authorizes(8081, &api, principal));
    let shop = id("spiffe://east.acme.example/ns/shop/sa/frontend");
    assert!(inventory.authorizes(8080, &shop, None));
    assert!(!inventory.authorizes(8080, &auditor, Some("auditors")));
}

#[test]
fn west_maps_east_frontend_and_authorizes_it() {
    let set = admitted("west.globex.example");
    let east = TrustDomain::new("east.acme.example").unwrap();
    let map = IdentityMap::from_set(&set);
    let frontend = id("spiffe://east.acme.example/ns/shop/sa/frontend");
    let principal = map.lookup(&east, &frontend).map(|p| p.as_str());
    assert_eq!(principal, Some("east-frontend"));
    let payments = service(&set, "payments");
    assert!(payments.authorizes(9090, &frontend, principal));
    assert_eq!(payments.endpoints_of(9090).len(), 1);
    assert_eq!(payments.endpoints_of(8080).len(), 2);
    // A gateway of east cannot speak for west's own workloads.
    let west_id = id("spiffe://west.globex.example/ns/shop/sa/frontend");
    assert_eq!(map.lookup(&east, &west_id), None);
}

fn service<'a>(set: &'a ResourceSet, name: &str) -> &'a causeway_resources::Service {
    set.services()
        .find(|s| s.name.as_str() == name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

/// config/authorization.yaml decides as its comments say.
#[test]
fn the_authorization_example_allows_what_its_comments_say_and_nothing_else() {
    let set = admitted("west.globex.example");
    let east = TrustDomain::new("east.acme.example").unwrap();
    let map = IdentityMap::from_set(&set);
    let ledger = service(&set, "ledger");
    let decide = |port: u16, caller: &str| {
        let caller = id(caller);
        let principal = map.lookup(&east, &caller).map(|p| p.as_str().to_owned());
        ledger.authorizes(port, &caller, principal.as_deref())
    };
    let frontend = "spiffe://east.acme.example/ns/shop/sa/frontend";
    // A principal: east's frontend, on the TCP port only.
    assert!(decide(5432, frontend));
    assert!(!decide(8081, frontend));
    // An unmapped caller of east: nothing allows it.
    assert!(!decide(
        5432,
        "spiffe://east.acme.example/ns/batch/sa/report"
    ));
    // A pattern: west's ledger workloads, every port, any depth.
    assert!(decide(
        5432,
        "spiffe://west.globex.example/ns/ledger/sa/writer"
    ));
    assert!(decide(
        8081,
        "spiffe://west.globex.example/ns/ledger/sa/a/b"
    ));
    assert!(!decide(
        5432,
        "spiffe://west.globex.example/ns/ledgers/sa/x"
    ));
    // One ID, admin API only.
    assert!(decide(
        8081,
        "spiffe://west.globex.example/ns/ops/sa/console"
    ));
    // Any workload of west: the admin API, not the TCP port.
    assert!(decide(8081, "spiffe://west.globex.example/ns/shop/sa/x"));
    assert!(!decide(5432, "spiffe://west.globex.example/ns/shop/sa/x"));
    assert!(!decide(
        5432,
        "spiffe://west.globex.example/ns/ops/sa/console"
    ));
    // East's auditors are `auditors` through the map: the admin API only.
    let auditor = "spiffe://east.acme.example/ns/audit/sa/reader";
    assert!(decide(8081, auditor));
    assert!(!decide(5432, auditor));
    // A port the service does not have.
    assert!(!decide(
        9999,
        "spiffe://west.globex.example/ns/ledger/sa/writer"
    ));
}

#[test]
fn first_bundles_are_read_relative_to_the_peering_file() {
    let set = admitted("east.acme.example");
    let west = set.peerings().next().unwrap();
    assert_eq!(
        west.first_bundle.file.as_deref(),
        Some(Path::new("west.bundle.json"))
    );
    assert_eq!(
        west.first_bundle.bundle.trust_domain().as_str(),
        "west.globex.example"
    );
    assert_eq!(west.first_bundle.bundle.x509_authorities().len(), 1);
}
