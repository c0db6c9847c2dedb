#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The `controller:` section of the gateway's file: the example in config/
//! loads, what it derives, and every mistake named by its field.

use std::path::{Path, PathBuf};

use causeway_gateway::config::GatewayConfig;
use causeway_gateway::config::raw::RawConfig;
use causeway_gateway::control::{ControlClient, ControlError, ControlOptions};
use causeway_trust::TrustDomain;

const BASE: &str = "trust_domain: east.example
controller:
  address: 127.0.0.1:7443
  token_file: token
  data_dir: data
  name: edge-1
";

fn fields(text: &str) -> Vec<String> {
    GatewayConfig::from_yaml("test.yaml", text, Path::new("/etc/causeway"))
        .unwrap_err()
        .problems
        .into_iter()
        .map(|p| p.field)
        .collect()
}

#[test]
fn the_example_loads_and_derives_id_svid_and_bundles() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/gateway-east-controlled.yaml");
    let raw: RawConfig = serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // The tcp listener names a service that only a snapshot brings; the
    // control client checks it with each one. Without it the file is valid.
    let mut probe = raw.clone();
    probe.listeners.retain(|l| l.protocol != "tcp");
    let cfg = GatewayConfig::from_raw("example", probe, path.parent().unwrap()).unwrap();
    let c = cfg.controller.as_ref().unwrap();
    assert_eq!(c.host, "controller.east.internal");
    assert_eq!(c.port, 15012);
    assert_eq!(
        cfg.id.as_str(),
        "spiffe://east.acme.example/causeway/gateway/east-1"
    );
    assert_eq!(
        c.controller_id.as_str(),
        "spiffe://east.acme.example/causeway/controller"
    );
    let data = Path::new("/var/lib/causeway/east-1");
    assert_eq!(cfg.credentials.svid_cert, data.join("svid.pem"));
    assert_eq!(cfg.credentials.svid_key, data.join("svid.pem"));
    let td = TrustDomain::new("east.acme.example").unwrap();
    assert_eq!(
        cfg.credentials.bundles.get(&td).unwrap(),
        &data.join("bundles/east.acme.example.json")
    );
    assert!(
        c.token_file
            .as_ref()
            .unwrap()
            .ends_with("config/east-1.token")
    );
}

#[test]
fn relative_paths_start_at_the_file() {
    let cfg = GatewayConfig::from_yaml("t", BASE, Path::new("/etc/causeway")).unwrap();
    let c = cfg.controller.unwrap();
    assert_eq!(c.data_dir, Path::new("/etc/causeway/data"));
    assert_eq!(c.token_file.unwrap(), Path::new("/etc/causeway/token"));
}

#[test]
fn what_the_controller_provides_may_not_be_written() {
    let f = fields(&format!(
        "{BASE}svid: {{cert: a.pem, key: a.key}}\nbundles: [{{trust_domain: east.example, file: b.json}}]\nid: spiffe://east.example/other\n"
    ));
    for want in ["svid", "bundles", "id"] {
        assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
    }
}

#[test]
fn bad_controller_fields_are_named() {
    let text = "trust_domain: east.example
controller:
  address: no-port
  data_dir: ''
  name: Edge/1
";
    let f = fields(text);
    for want in [
        "controller.address",
        "controller.data_dir",
        "controller.name",
    ] {
        assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
    }
}

#[test]
fn without_a_controller_the_svid_is_required() {
    let f = fields("trust_domain: east.example\nid: spiffe://east.example/gw\n");
    assert!(f.iter().any(|x| x == "svid"), "{f:?}");
}

#[test]
fn the_local_file_may_not_carry_services_or_rules() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{BASE}services: [{{name: a, port: 80, endpoints: ['127.0.0.1:1']}}]\nauthorization: [{{service: a, allow: [{{trust_domain: east.example}}]}}]\n"
    );
    let raw: RawConfig = serde_saphyr::from_str(&text).unwrap();
    let err = ControlClient::from_raw(
        "test.yaml",
        raw,
        dir.path(),
        ControlOptions::default(),
        &prometheus::Registry::new(),
    )
    .unwrap_err();
    let ControlError::Config(e) = err else {
        panic!("{err}")
    };
    let f: Vec<&str> = e.problems.iter().map(|p| p.field.as_str()).collect();
    assert!(
        f.contains(&"services") && f.contains(&"authorization"),
        "{f:?}"
    );
}

mod snapshots {
    //! A controller's snapshot into the gateway's config: refusals name the
    //! snapshot's field.

    use std::path::Path;

    use causeway_gateway::config::raw::RawConfig;
    use causeway_gateway::control::snapshot::convert;
    use causeway_proto::controller::v1 as pb;
    use causeway_trust::testing::TestDomain;

    fn template() -> RawConfig {
        serde_saphyr::from_str(super::BASE).unwrap()
    }

    fn snapshot() -> pb::ConfigSnapshot {
        let west = TestDomain::new("west.example");
        pb::ConfigSnapshot {
            version: 4,
            bundles: vec![pb::Bundle {
                trust_domain: "west.example".into(),
                document: west.bundle().to_json(),
                sequence: 1,
                digest: String::new(),
            }],
            services: vec![pb::Service {
                name: "payments".into(),
                port: 8080,
                protocol: "http".into(),
                endpoints: vec!["127.0.0.1:9".into()],
            }],
            peers: vec![pb::Peer {
                name: "west".into(),
                trust_domain: "west.example".into(),
                gateways: vec![pb::PeerGateway {
                    address: "127.0.0.1:4999".into(),
                    id: "spiffe://west.example/causeway/gateway/w1".into(),
                }],
            }],
            authorization: vec![pb::Rule {
                service: "payments".into(),
                ports: vec![8080],
                allow: vec![pb::Principal {
                    r#match: Some(pb::principal::Match::Id(
                        "spiffe://west.example/ns/a/sa/b".into(),
                    )),
                }],
            }],
            ..Default::default()
        }
    }

    fn refused(s: &pb::ConfigSnapshot) -> Vec<String> {
        let e = convert(&template(), Path::new("/etc/causeway"), s, |_| false).unwrap_err();
        assert_eq!(
            e.source_name,
            format!("controller config version {}", s.version)
        );
        e.problems.into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn a_good_snapshot_converts_with_its_bundles() {
        let c = convert(&template(), Path::new("/etc/causeway"), &snapshot(), |_| {
            false
        })
        .unwrap();
        assert_eq!(c.version, 4);
        assert_eq!(c.bundles.len(), 1);
        assert_eq!(c.config.rules.len(), 1);
        assert_eq!(c.config.credentials.bundles.len(), 2, "own and west");
    }

    /// Pattern and local-principal rules and the identity map arrive as
    /// the gateway's own config has them; a malformed pattern is refused
    /// by the gateway's validation, naming the rule.
    #[test]
    fn identity_map_and_mapped_principals_convert() {
        use causeway_gateway::config::Principal;
        let mut s = snapshot();
        s.identity_map.push(pb::IdentityMapping {
            peer_trust_domain: "west.example".into(),
            pattern: "spiffe://west.example/ns/shop/sa/*".into(),
            principal: "shoppers".into(),
        });
        for m in [
            pb::principal::Match::Pattern("spiffe://west.example/ns/a/*".into()),
            pb::principal::Match::Principal("shoppers".into()),
        ] {
            s.authorization[0]
                .allow
                .push(pb::Principal { r#match: Some(m) });
        }
        let c = convert(&template(), Path::new("/etc/causeway"), &s, |_| false).unwrap();
        let allow = &c.config.rules[0].allow;
        assert!(
            allow.iter().any(|p| matches!(p, Principal::Pattern(_))),
            "{allow:?}"
        );
        assert!(
            allow
                .iter()
                .any(|p| matches!(p, Principal::Local(n) if n.to_string() == "shoppers")),
            "{allow:?}"
        );

        let mut bad = snapshot();
        bad.authorization[0].allow.push(pb::Principal {
            r#match: Some(pb::principal::Match::Pattern(
                "spiffe://west.example/ns/a-*".into(),
            )),
        });
        let f = refused(&bad);
        assert!(
            f.iter().any(|x| x.starts_with("authorization[0].allow[1]")),
            "{f:?}"
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let mut s = snapshot();
        s.services[0].port = 70000;
        s.services[0].protocol = "udp".into();
        s.bundles[0].document = "{".into();
        let mut digest = s.clone();
        digest.bundles[0].digest = "00".repeat(32);
        s.authorization[0].allow.push(pb::Principal {
            r#match: Some(pb::principal::Match::Pattern(
                "spiffe://west.example/ns/a/*".into(),
            )),
        });
        s.authorization[0]
            .allow
            .push(pb::Principal { r#match: None });
        let f = refused(&s);
        for want in [
            "services[0].port",
            "services[0].protocol",
            "bundles[0].document",
            "peers[0].trust_domain",
            "authorization[0].allow[2]",
        ] {
            assert!(f.iter().any(|x| x == want), "{want} in {f:?}");
        }
        digest.bundles[0].document = TestDomain::new("west.example").bundle().to_json();
        assert!(refused(&digest).iter().any(|x| x == "bundles[0].digest"));
    }

    #[test]
    fn validation_errors_of_the_whole_config_are_refusals() {
        let mut s = snapshot();
        s.authorization[0].service = "nowhere".into();
        let f = refused(&s);
        assert!(f.iter().any(|x| x == "authorization[0].service"), "{f:?}");
    }
}
