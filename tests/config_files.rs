#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Every file in config/ is loaded and validated here by the code that
//! reads it in the product, and the files agree with each other where one
//! names what another serves. config/demo/ is the demo's, checked the same
//! way by tests/demo_config.rs (which lists its files in turn).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use causeway_controller::ControllerConfig;
use causeway_gateway::config::GatewayConfig;
use causeway_gateway::config::raw::RawConfig;
use causeway_resources::{ResourceSet, admit, load_file};
use causeway_trust::{TrustBundle, TrustDomain};

const EAST: &str = "east.acme.example";
const WEST: &str = "west.globex.example";

/// What each file of config/ is, and for resources and bundles, whose.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Controller,
    /// A gateway with its whole config in the file.
    Gateway,
    /// A gateway run by a controller (`controller:` section).
    ControlledGateway,
    /// Peering or Service files, applied at this trust domain's
    /// controller, in this order.
    Resource(&'static str),
    /// A trust domain's bundle, as `causeway bundle export` writes it.
    Bundle(&'static str),
    /// config/demo/: tests/demo_config.rs.
    Demo,
}

/// Every entry of config/, in apply order for resources. A new file fails
/// `every_file_in_config_is_listed` until it is added.
const FILES: &[(&str, Kind)] = &[
    ("controller-east.yaml", Kind::Controller),
    ("gateway-east.yaml", Kind::Gateway),
    ("gateway-east-controlled.yaml", Kind::ControlledGateway),
    ("service-inventory.yaml", Kind::Resource(EAST)),
    ("peering-west.yaml", Kind::Resource(EAST)),
    ("service-payments.yaml", Kind::Resource(WEST)),
    ("authorization.yaml", Kind::Resource(WEST)),
    ("peering-east.yaml", Kind::Resource(WEST)),
    ("east.bundle.json", Kind::Bundle(EAST)),
    ("west.bundle.json", Kind::Bundle(WEST)),
    ("demo", Kind::Demo),
];

fn config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config")
}

#[test]
fn every_file_in_config_is_listed() {
    let mut found: Vec<String> = fs::read_dir(config())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().to_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = FILES.iter().map(|(f, _)| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(found, listed);
}

/// A controlled gateway's file, validated as `causeway gateway` does
/// before its controller's first config: everything but a TCP listener's
/// service, which only that config brings. No data directory is created.
fn controlled_gateway(path: &Path) -> GatewayConfig {
    let raw: RawConfig = serde_saphyr::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut probe = raw.clone();
    probe.listeners.retain(|l| l.protocol != "tcp");
    GatewayConfig::from_raw(&path.display().to_string(), probe, path.parent().unwrap())
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn every_file_loads_and_the_files_agree() {
    let dir = config();
    let mut controllers = BTreeMap::new();
    let mut controlled = Vec::new();
    let mut gateways = Vec::new();
    let mut sets: BTreeMap<&str, ResourceSet> = BTreeMap::new();
    let mut bundles = BTreeMap::new();
    for (file, kind) in FILES {
        let path = dir.join(file);
        match kind {
            Kind::Controller => {
                let c = ControllerConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
                controllers.insert(c.trust_domain.to_string(), c);
            }
            Kind::Gateway => {
                gateways.push(GatewayConfig::load(&path).unwrap_or_else(|e| panic!("{e}")));
            }
            Kind::ControlledGateway => controlled.push(controlled_gateway(&path)),
            Kind::Resource(td) => {
                let local = TrustDomain::new(td).unwrap();
                let entries = load_file(&path).unwrap_or_else(|e| panic!("{e}"));
                let set = sets.entry(td).or_default();
                *set = admit(&local, set, entries).unwrap_or_else(|e| panic!("{e}"));
            }
            Kind::Bundle(td) => {
                let b = TrustBundle::from_json(
                    TrustDomain::new(td).unwrap(),
                    &fs::read(&path).unwrap(),
                )
                .unwrap_or_else(|e| panic!("{file}: {e}"));
                assert!(!b.x509_authorities().is_empty(), "{file}: no root");
                bundles.insert(*td, b);
            }
            Kind::Demo => assert!(path.join("README.md").is_file()),
        }
    }

    // A controller-run gateway reaches its controller's gateway API.
    for gw in &controlled {
        let c = &controllers[gw.trust_domain.as_str()];
        let settings = gw.controller.as_ref().unwrap();
        assert_eq!(
            settings.port,
            c.api_listen.port(),
            "{}'s controller.address names port {}, its controller's api.listen is {}",
            gw.id,
            settings.port,
            c.api_listen
        );
    }

    // Each peering's first bundle is the peer's bundle file, and its bundle
    // endpoint is on the port the peer's controller serves it (where
    // config/ has that controller); its gateways are the peer's, by ID and
    // by the port they listen on for peers.
    for (td, set) in &sets {
        for p in set.peerings() {
            let peer = p.trust_domain.as_str();
            assert_ne!(peer, *td);
            assert_eq!(
                p.first_bundle.bundle.x509_authorities(),
                bundles[peer].x509_authorities(),
                "{td}'s peering {}: first bundle",
                p.name
            );
            if let Some(c) = controllers.get(peer) {
                let url = p.bundle_endpoint.url.to_string();
                let port = c.federation_listen.unwrap().port();
                assert!(
                    url.contains(&format!(":{port}/")),
                    "{td}'s peering {}: {url} is not on {peer}'s federation port {port}",
                    p.name
                );
            }
            let peer_gateways: Vec<&GatewayConfig> = gateways
                .iter()
                .chain(&controlled)
                .filter(|g| g.trust_domain.as_str() == peer)
                .collect();
            // Peerings are the controllers' world: the peer's gateways are
            // the ones its controller runs.
            let run_by_controller: Vec<String> = controlled
                .iter()
                .filter(|g| g.trust_domain.as_str() == peer)
                .map(|g| g.id.to_string())
                .collect();
            for g in &p.gateways {
                if !run_by_controller.is_empty() {
                    assert!(
                        run_by_controller.contains(&g.id.to_string()),
                        "{td}'s peering {}: gateway {} is none of {run_by_controller:?}",
                        p.name,
                        g.id
                    );
                }
                for local in &peer_gateways {
                    let listen = local.peer_listener.map(|l| l.port());
                    assert_eq!(
                        Some(g.address.port),
                        listen,
                        "{td}'s peering {}: gateway {} at port {}, {peer}'s gateways listen on {listen:?}",
                        p.name,
                        g.id,
                        g.address.port
                    );
                }
            }
        }
        assert_eq!(set.peerings().count(), 1, "{td}: one peering");
        assert!(set.services().count() >= 1, "{td}: a service");
    }
    assert_eq!(controllers.len(), 1);
    assert_eq!(gateways.len() + controlled.len(), 2);
    assert_eq!(sets.len(), 2);
}
