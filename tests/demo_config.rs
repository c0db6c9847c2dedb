#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Every file of config/demo/, as written (fixed loopback ports), loaded by
//! the code that reads it in the product: each controller file as
//! `causeway controller --config` loads it, each gateway file as
//! `causeway gateway --config` does for a controller-run gateway, and each
//! organization's resource files loaded and admitted in one apply as
//! `causeway apply -f` and its controller do. And the files name each
//! other coherently: what one names is where another listens, as the demo
//! relies on when it replaces those addresses (config/demo/README.md).

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use causeway_controller::ControllerConfig;
use causeway_gateway::control::{ControlClient, ControlOptions};
use causeway_resources::{ResourceSet, admit, load_file};
use causeway_trust::TrustDomain;
use causeway_trust::files::{CaDir, InitOptions};

/// Each organization's directory, its trust domain and its files: the
/// controller's, the gateway's, then the resources in apply order. A new
/// file in config/demo/ fails `every_file_is_listed` until it is added.
const SIDES: [(&str, &str, &[&str]); 2] = [
    (
        "east",
        "east.acme.example",
        &["service-inventory.yaml", "peering-west.yaml"],
    ),
    (
        "west",
        "west.globex.example",
        &[
            "service-payments.yaml",
            "service-ledger.yaml",
            "peering-east.yaml",
        ],
    ),
];

fn demo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/demo")
}

fn yaml(path: &Path) -> serde_json::Value {
    serde_saphyr::from_str(&fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn addr(v: &serde_json::Value) -> SocketAddr {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .parse()
        .unwrap()
}

#[test]
fn every_file_is_listed() {
    let mut found = Vec::new();
    for entry in fs::read_dir(demo_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            for f in fs::read_dir(&path).unwrap() {
                let f = f.unwrap().file_name().to_str().unwrap().to_owned();
                found.push(format!("{name}/{f}"));
            }
        } else {
            found.push(name);
        }
    }
    found.sort();
    let mut listed = vec!["README.md".to_owned()];
    for (side, _, resources) in SIDES {
        listed.push(format!("{side}/controller.yaml"));
        listed.push(format!("{side}/gateway.yaml"));
        listed.extend(resources.iter().map(|r| format!("{side}/{r}")));
    }
    listed.sort();
    assert_eq!(found, listed);
}

/// Copies config/demo/ into a temp dir, with each peer's first bundle
/// (from a CA of its trust domain) where its peering names it:
/// `<side>/<peer side>.bundle.json`.
fn copy_with_bundles(root: &Path) {
    for (side, _, _) in SIDES {
        fs::create_dir_all(root.join(side)).unwrap();
    }
    for (side, td, _) in SIDES {
        for f in fs::read_dir(demo_dir().join(side)).unwrap() {
            let f = f.unwrap().path();
            fs::copy(&f, root.join(side).join(f.file_name().unwrap())).unwrap();
        }
        let ca = CaDir::init(
            &root.join(format!("{side}-ca")),
            &TrustDomain::new(td).unwrap(),
            &InitOptions::default(),
        )
        .unwrap();
        for (other, _, _) in SIDES {
            if other != side {
                let to = root.join(other).join(format!("{side}.bundle.json"));
                fs::write(to, ca.bundle().to_json()).unwrap();
            }
        }
    }
}

#[test]
fn every_file_loads_and_each_organization_admits_its_own() {
    let root = tempfile::tempdir().unwrap();
    copy_with_bundles(root.path());
    for (side, td, resources) in SIDES {
        let dir = root.path().join(side);
        let c =
            ControllerConfig::load(&dir.join("controller.yaml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.trust_domain.as_str(), td);
        assert!(
            c.data_dir.starts_with(&dir),
            "data_dir relative to the file"
        );
        assert!(
            c.federation_listen.is_some(),
            "peers need the bundle endpoint"
        );

        let registry = prometheus::Registry::new();
        let gw = ControlClient::load(
            &dir.join("gateway.yaml"),
            ControlOptions::default(),
            &registry,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(gw.settings().host, "127.0.0.1");
        assert!(gw.data_dir().root().starts_with(&dir));

        let local = TrustDomain::new(td).unwrap();
        let entries = resources
            .iter()
            .flat_map(|f| load_file(&dir.join(f)).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let set: ResourceSet =
            admit(&local, &ResourceSet::default(), entries).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.len(), resources.len());
        assert_eq!(set.peerings().count(), 1);
    }
}

/// Every fixed address a part listens on, by what listens.
fn listens() -> BTreeMap<SocketAddr, String> {
    let mut out = BTreeMap::new();
    let mut add = |a: SocketAddr, what: String| {
        if let Some(other) = out.insert(a, what.clone()) {
            panic!("{a}: both {other} and {what}");
        }
    };
    for (side, _, resources) in SIDES {
        let dir = demo_dir().join(side);
        let c = yaml(&dir.join("controller.yaml"));
        for f in ["api", "metrics", "federation"] {
            add(addr(&c[f]["listen"]), format!("{side} controller {f}"));
        }
        let g = yaml(&dir.join("gateway.yaml"));
        add(addr(&g["admin"]["listen"]), format!("{side} gateway admin"));
        add(
            addr(&g["peer_listener"]["listen"]),
            format!("{side} gateway peer_listener"),
        );
        for l in g["listeners"].as_array().unwrap() {
            add(
                addr(&l["listen"]),
                format!("{side} gateway listener {}", l["name"]),
            );
        }
        for r in resources.iter().filter(|r| r.starts_with("service-")) {
            for e in yaml(&dir.join(r))["spec"]["endpoints"].as_array().unwrap() {
                add(addr(e), format!("{side} {r} endpoint"));
            }
        }
    }
    out
}

#[test]
fn the_files_name_each_other_where_they_listen() {
    let listens = listens();
    let at = |a: SocketAddr| {
        listens
            .get(&a)
            .cloned()
            .unwrap_or_else(|| format!("nothing at {a}"))
    };
    for (side, _, _) in SIDES {
        let (peer, peer_td) = SIDES
            .iter()
            .find(|(s, _, _)| *s != side)
            .map(|(s, td, _)| (*s, *td))
            .unwrap();
        let dir = demo_dir().join(side);
        let g = yaml(&dir.join("gateway.yaml"));
        assert_eq!(
            at(addr(&g["controller"]["address"])),
            format!("{side} controller api")
        );

        let peering = yaml(&dir.join(format!("peering-{peer}.yaml")));
        assert_eq!(peering["kind"], "Peering");
        let spec = &peering["spec"];
        assert_eq!(spec["trustDomain"], peer_td);
        let url = spec["bundleEndpoint"]["url"].as_str().unwrap();
        let host = url.trim_start_matches("https://").trim_end_matches('/');
        assert_eq!(
            at(host.parse().unwrap()),
            format!("{peer} controller federation")
        );
        assert_eq!(
            spec["firstBundle"]["file"],
            format!("{peer}.bundle.json"),
            "the demo writes the peer's bundle there"
        );
        let peer_gw = yaml(&demo_dir().join(peer).join("gateway.yaml"));
        let gws = spec["gateways"].as_array().unwrap();
        assert_eq!(gws.len(), 1);
        assert_eq!(
            at(addr(&gws[0]["address"])),
            format!("{peer} gateway peer_listener")
        );
        assert_eq!(
            gws[0]["id"],
            format!(
                "spiffe://{peer_td}/causeway/gateway/{}",
                peer_gw["controller"]["name"].as_str().unwrap()
            )
        );
    }
    // Every listen address is loopback, so that the demo finds them all.
    assert!(listens.keys().all(|a| a.ip().is_loopback()));
}
