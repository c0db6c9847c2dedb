#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The controller in process on loopback (ports from the OS), on the
//! embedded store and on a real etcd: joining with a token and the
//! refusals, renewal, the config stream across an apply, NACKs recorded,
//! and a restart that keeps the root, peerings and services.

use std::path::Path;
use std::time::Duration;

use causeway_controller::testing::{self, ConfigStream, EtcdServer, Joined};
use causeway_controller::{ControllerConfig, Running, StartOptions, StoreConfig, client};
use causeway_proto::controller::v1 as pb;
use tempfile::TempDir;
use tonic::Code;

const TD: &str = "east.acme.example";

fn config(dir: &Path, store: StoreConfig) -> ControllerConfig {
    testing::config(dir, TD, store, Duration::from_secs(3600))
}

async fn start(config: ControllerConfig) -> Running {
    causeway_trust::tls::install_default_provider();
    causeway_controller::start(config, StartOptions::default())
        .await
        .expect("controller starts")
}

async fn token(c: &Running, gateway: &str, ttl: u64) -> String {
    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    admin
        .create_token(pb::CreateTokenRequest {
            gateway: gateway.into(),
            ttl_seconds: ttl,
        })
        .await
        .unwrap()
        .into_inner()
        .token
}

async fn apply(c: &Running, files: &[&str], dry_run: bool) -> pb::ApplyResponse {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut out = Vec::new();
    for f in files {
        let entries = causeway_resources::load_file(&root.join(f)).unwrap();
        let content = entries
            .iter()
            .map(|e| e.resource.to_yaml().unwrap())
            .collect::<Vec<_>>()
            .join("---\n");
        out.push(pb::ResourceFile {
            name: (*f).to_owned(),
            content,
        });
    }
    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    admin
        .apply(pb::ApplyRequest {
            files: out,
            dry_run,
        })
        .await
        .unwrap()
        .into_inner()
}

async fn metric(c: &Running, sample: &str) -> f64 {
    testing::sample(&testing::scrape(c.metrics.unwrap()).await, sample)
}

async fn join_ok(c: &Running, name: &str) -> Joined {
    let t = token(c, name, 0).await;
    testing::join(c.api, &t, name, TD).await.expect("join")
}

#[tokio::test]
async fn join_renew_and_every_refusal() {
    let dir = TempDir::new().unwrap();
    let c = start(config(dir.path(), StoreConfig::Embedded)).await;
    let t = token(&c, "east-1", 0).await;
    assert!(t.starts_with("cw1.") && t.ends_with(&c.pin), "{t}");

    // A CSR for another gateway's ID is refused, and does not burn the token.
    let e = testing::join(c.api, &t, "east-2", TD).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let joined = testing::join(c.api, &t, "east-1", TD).await.expect("join");
    let id = joined.svid.svid().spiffe_id().to_string();
    assert_eq!(id, format!("spiffe://{TD}/causeway/gateway/east-1"));
    assert_eq!(joined.own_bundle.x509_authorities().len(), 1);

    // Used once: a second use fails.
    let e = testing::join(c.api, &t, "east-1", TD).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("already used"), "{e:?}");

    // Forged: a known id with a made-up secret.
    let t2 = token(&c, "east-3", 0).await;
    let parts: Vec<&str> = t2.split('.').collect();
    let forged = format!("cw1.{}.{}.{}", parts[1], "0".repeat(64), parts[3]);
    let e = testing::join(c.api, &forged, "east-3", TD)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // The real one still works after the forgery.
    testing::join(c.api, &t2, "east-3", TD).await.expect("join");

    // A token for another root: the TLS handshake fails on the pin.
    let other_pin = format!("cw1.{}.{}.{}", parts[1], parts[2], "a".repeat(64));
    assert!(
        testing::join(c.api, &other_pin, "east-3", TD)
            .await
            .is_err()
    );

    // Expired.
    let t3 = token(&c, "east-4", 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let e = testing::join(c.api, &t3, "east-4", TD).await.unwrap_err();
    assert!(e.message().contains("expired"), "{e:?}");

    // Renew: same ID, new certificate.
    let renewed = testing::renew(c.api, &joined).await.expect("renew");
    assert_eq!(renewed.svid.svid().spiffe_id().to_string(), id);
    assert_ne!(
        renewed.svid.svid().info().serial,
        joined.svid.svid().info().serial
    );

    let refused = |reason: &str, kind: &str| {
        format!("causeway_controller_svids_refused_total{{kind=\"{kind}\",reason=\"{reason}\"}}")
    };
    assert_eq!(metric(&c, &refused("wrong_id", "join")).await, 1.0);
    assert_eq!(metric(&c, &refused("reused_token", "join")).await, 1.0);
    assert_eq!(metric(&c, &refused("bad_token", "join")).await, 1.0);
    assert_eq!(metric(&c, &refused("expired_token", "join")).await, 1.0);
    assert_eq!(
        metric(&c, "causeway_controller_svids_issued_total{kind=\"renew\"}").await,
        1.0
    );
    assert_eq!(
        metric(&c, "causeway_controller_join_tokens_total{event=\"used\"}").await,
        2.0
    );
    assert_eq!(metric(&c, "causeway_controller_leader").await, 1.0);
    c.shutdown().await;
}

async fn stream_across_apply(c: &Running) {
    let joined = join_ok(c, "east-1").await;
    let mut stream = ConfigStream::open(c.api, &joined, "east-1").await.unwrap();
    let first = stream.next().await.unwrap();
    assert!(first.version >= 1);
    assert_eq!(first.bundles.len(), 1, "own bundle only");
    assert_eq!(first.bundles[0].trust_domain, TD);
    stream.ack(first.version, "").await;

    let r = apply(c, &["service-inventory.yaml", "peering-west.yaml"], false).await;
    assert!(r.applied && r.problems.is_empty(), "{r:?}");
    let second = stream.next().await.unwrap();
    assert!(second.version > first.version);
    assert_eq!(second.services.len(), 1);
    assert_eq!(second.services[0].name, "inventory");
    assert_eq!(second.peers.len(), 1);
    assert_eq!(second.peers[0].gateways.len(), 2);
    assert_eq!(second.imports.len(), 2, "payments.west on two ports");
    assert_eq!(second.bundles.len(), 2);
    assert_eq!(second.identity_map.len(), 2);
    stream
        .ack(second.version, "listener payments.west: port in use")
        .await;

    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    let mut gateways = Vec::new();
    for _ in 0..50 {
        gateways = admin
            .list_gateways(pb::ListGatewaysRequest {})
            .await
            .unwrap()
            .into_inner()
            .gateways;
        if gateways.first().is_some_and(|g| !g.last_error.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let g = &gateways[0];
    assert!(g.connected);
    assert_eq!(g.acked_version, first.version);
    assert!(g.last_error.contains("port in use"), "{g:?}");
    assert_eq!(g.holdings.as_ref().unwrap().bundles.len(), 1);

    // A disconnected gateway is no longer connected.
    drop(stream);
    for _ in 0..50 {
        let gs = admin
            .list_gateways(pb::ListGatewaysRequest {})
            .await
            .unwrap()
            .into_inner();
        if gs.gateways.iter().all(|g| !g.connected) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway still shows as connected");
}

async fn restart_keeps_everything(dir: &Path, store: StoreConfig, c: Running) {
    let pin = c.pin.clone();
    c.shutdown().await;
    let c = start(config(dir, store)).await;
    assert_eq!(c.pin, pin, "the same root after a restart");
    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    let peers = admin
        .list_peers(pb::ListPeersRequest {})
        .await
        .unwrap()
        .into_inner()
        .peers;
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0].name, "west");
    assert_eq!(peers[0].trust_domain, "west.globex.example");
    let show = admin
        .show_peer(pb::ShowPeerRequest {
            name: "west".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(show.resource.contains("west.globex.example"));
    // Applying the same files again changes nothing.
    let r = apply(&c, &["service-inventory.yaml", "peering-west.yaml"], true).await;
    assert!(
        r.plan.contains("0 created, 0 updated, 2 unchanged"),
        "{}",
        r.plan
    );
    // Joining still works with the kept root.
    let joined = join_ok(&c, "east-9").await;
    let mut stream = ConfigStream::open(c.api, &joined, "east-9").await.unwrap();
    assert_eq!(stream.next().await.unwrap().services.len(), 1);
    drop(stream);
    c.shutdown().await;
}

#[tokio::test]
async fn embedded_stream_nack_and_restart() {
    let dir = TempDir::new().unwrap();
    let c = start(config(dir.path(), StoreConfig::Embedded)).await;
    stream_across_apply(&c).await;
    restart_keeps_everything(dir.path(), StoreConfig::Embedded, c).await;
}

#[tokio::test]
async fn etcd_join_stream_nack_and_restart() {
    let dir = TempDir::new().unwrap();
    let etcd = EtcdServer::start(&dir.path().join("etcd"));
    let store = StoreConfig::Etcd {
        endpoints: vec![etcd.endpoint.clone()],
        prefix: None,
    };
    let data = dir.path().join("data");
    let c = start(config(&data, store.clone())).await;
    let joined = join_ok(&c, "east-2").await;
    testing::renew(c.api, &joined).await.expect("renew");
    stream_across_apply(&c).await;
    restart_keeps_everything(&data, store, c).await;
    etcd.kill();
}

#[tokio::test]
async fn two_replicas_share_one_root_and_one_leader() {
    let dir = TempDir::new().unwrap();
    let etcd = EtcdServer::start(&dir.path().join("etcd"));
    let store = StoreConfig::Etcd {
        endpoints: vec![etcd.endpoint.clone()],
        prefix: None,
    };
    let (a, b) = tokio::join!(
        start(config(&dir.path().join("a"), store.clone())),
        start(config(&dir.path().join("b"), store.clone()))
    );
    assert_eq!(a.pin, b.pin, "one root for both replicas");
    let leaders = metric(&a, "causeway_controller_leader").await
        + metric(&b, "causeway_controller_leader").await;
    assert_eq!(leaders, 1.0);
    // A token made at one replica joins at the other; its stream sees an
    // apply made at the first.
    let t = token(&a, "east-5", 0).await;
    let joined = testing::join(b.api, &t, "east-5", TD)
        .await
        .expect("join at b");
    let mut stream = ConfigStream::open(b.api, &joined, "east-5").await.unwrap();
    let first = stream.next().await.unwrap();
    let r = apply(&a, &["service-inventory.yaml"], false).await;
    assert!(r.applied, "{r:?}");
    let second = stream.next().await.unwrap();
    assert!(second.version > first.version);
    drop(stream);
    a.shutdown().await;
    b.shutdown().await;
    etcd.kill();
}

#[tokio::test]
async fn apply_refusal_names_file_and_field_and_stores_nothing() {
    let dir = TempDir::new().unwrap();
    let c = start(config(dir.path(), StoreConfig::Embedded)).await;
    // An export of a service that does not exist.
    let r = apply(&c, &["peering-west.yaml"], false).await;
    assert!(!r.applied);
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with("peering-west.yaml") && p.contains("spec.exports[0].service")),
        "{r:?}"
    );
    let r = apply(&c, &["service-inventory.yaml"], true).await;
    assert!(
        !r.applied && r.plan.contains("+ Service/inventory"),
        "{r:?}"
    );
    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    let peers = admin
        .list_peers(pb::ListPeersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(peers.peers.is_empty());
    let e = admin
        .show_peer(pb::ShowPeerRequest {
            name: "west".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let bundle = admin
        .export_bundle(pb::ExportBundleRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        bundle.document.contains("spiffe_sequence"),
        "{}",
        bundle.document
    );
    c.shutdown().await;
}

/// An apply is one store transaction: more resources than one may hold
/// are refused with what to do, and nothing is stored; the most one may
/// hold go in. The same on etcd, whose default `--max-txn-ops` sets the
/// limit (the store suite checks both backends refuse alike).
#[tokio::test]
async fn an_apply_over_one_transaction_is_refused_whole_with_what_to_do() {
    let dir = TempDir::new().unwrap();
    let c = start(config(dir.path(), StoreConfig::Embedded)).await;
    let service = |i: usize| {
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Service\nname: s{i:03}\nspec:\n  ports: [{{port: 80, protocol: http}}]\n  endpoints: ['127.0.0.1:80']\n"
        )
    };
    let file = |n: usize| pb::ResourceFile {
        name: "many.yaml".into(),
        content: (0..n).map(service).collect::<Vec<_>>().join("---\n"),
    };
    let max = causeway_store::MAX_TXN_OPS - 1;
    let apply = async |n: usize| {
        client::admin(&c.admin_socket)
            .await
            .unwrap()
            .apply(pb::ApplyRequest {
                files: vec![file(n)],
                dry_run: false,
            })
            .await
            .unwrap()
            .into_inner()
    };
    let r = apply(max + 1).await;
    assert!(!r.applied, "{r:?}");
    assert_eq!(
        r.problems,
        [format!(
            "this apply changes {} resources; one apply changes at most {max} (one store transaction): apply the files in parts",
            max + 1
        )]
    );
    let r = apply(max).await;
    assert!(r.applied && r.problems.is_empty(), "{r:?}");
    // The rest, in a second apply: the first `max` are unchanged.
    let r = apply(max + 1).await;
    assert!(r.applied, "{r:?}");
    assert!(r.plan.contains("+ Service/s127"), "{}", r.plan);
    c.shutdown().await;
}
