#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The gateway's control client against a small GatewayApi server defined
//! here: real TLS and gRPC on loopback (ports from the OS), a real CA from
//! `causeway_trust::testing` that issues real certificates from the
//! client's CSRs, temp dirs for the data directory.
//!
//! NOTE: the end-to-end tests against the real controller (a controller
//! process, a joined gateway, a cross-cluster call, renewals under load,
//! controller and store down) come with the merge of the controller; this
//! server only speaks the same API.

mod control_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use causeway_gateway::control::join::JoinError;
use causeway_gateway::control::tls::{PinRefusal, sha256_hex};
use causeway_gateway::control::{authorities_digest, cache, files::DataDir};
use causeway_proto::controller::v1::gateway_message::Message as FromGateway;
use causeway_trust::VerifyError;
use causeway_trust::testing::TestDomain;
use control_support::*;

#[tokio::test]
async fn join_with_a_good_token_writes_key_svid_and_bundle() {
    let ctl = TestController::start(Setup::default()).await;
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    let client = gw.client();
    let svid = client.ensure_svid().await.unwrap();
    assert_eq!(
        svid.spiffe_id().as_str(),
        "spiffe://east.example/causeway/gateway/edge-1"
    );
    assert_eq!(ctl.state.joins.load(Ordering::SeqCst), 1);
    let data = gw.dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("svid.pem")), 0o600);
    let bundle = std::fs::read_to_string(data.join("bundles/east.example.json")).unwrap();
    assert!(bundle.contains("x509-svid"));

    // The SVID on disk is used from now on: no second join, no token needed.
    std::fs::remove_file(gw.dir.path().join("token")).unwrap();
    drop(client);
    let again = gw.client();
    let same = again.ensure_svid().await.unwrap();
    assert_eq!(same.info().serial, svid.info().serial);
    assert_eq!(ctl.state.joins.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_token_pinning_another_root_is_refused_before_it_is_sent() {
    let ctl = TestController::start(Setup::default()).await;
    let other = TestDomain::new("east.example");
    let gw = GatewayDir::new(&ctl, &sha256_hex(other.ca.roots()[0].as_ref()));
    let err = gw.client().ensure_svid().await.unwrap_err();
    match err {
        JoinError::ServerRefused { refusal, .. } => {
            assert!(
                matches!(*refusal, PinRefusal::PinMismatch { .. }),
                "{refusal}"
            );
        }
        other => panic!("expected a refusal of the server, got {other}"),
    }
    // The token never reached the server's handler.
    assert_eq!(ctl.state.joins.load(Ordering::SeqCst), 0);
    assert!(!gw.dir.path().join("data/svid.pem").exists());
}

#[tokio::test]
async fn a_server_that_is_not_the_controller_is_refused() {
    let ctl = TestController::start(Setup {
        server_path: "/ns/default/sa/impostor".into(),
        ..Setup::default()
    })
    .await;
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    let err = gw.client().ensure_svid().await.unwrap_err();
    match err {
        JoinError::ServerRefused { refusal, .. } => assert!(
            matches!(
                *refusal,
                PinRefusal::Verify(VerifyError::UnexpectedId { .. })
            ),
            "{refusal}"
        ),
        other => panic!("expected a refusal of the server, got {other}"),
    }
    assert_eq!(ctl.state.joins.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn svid_renews_several_times_with_a_short_ttl() {
    let ctl = TestController::start(Setup {
        ttl: Duration::from_secs(4),
        ..Setup::default()
    })
    .await;
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    let client = gw.client();
    let first = client.ensure_svid().await.unwrap();
    let applier = Recorder::new();
    let _tasks = client.spawn(applier.clone());
    let svid_file = gw.dir.path().join("data/svid.pem");
    let mut files = vec![std::fs::read(&svid_file).unwrap()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while files.len() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} renewals",
            files.len() - 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = std::fs::read(&svid_file).unwrap();
        if files.last() != Some(&now) {
            files.push(now);
        }
    }
    assert!(ctl.state.renews.load(Ordering::SeqCst) >= 3);
    let current = client.svid().unwrap();
    assert_ne!(current.info().serial, first.info().serial);
    // A new key each time.
    assert_ne!(
        current.key().secret_der(),
        first.key().secret_der(),
        "the key was reused"
    );
    let ok = client
        .metrics()
        .renewals
        .with_label_values(&["ok", "renewed"])
        .get();
    assert!(ok >= 3, "{ok}");
    // The config stream reported the new SVID in a Holdings message.
    let serial = current.info().serial.clone();
    ctl.wait_for(|m| matches!(m, FromGateway::Holdings(h) if h.svid_serial == serial))
        .await;
}

#[tokio::test]
async fn a_failed_renewal_is_retried_and_the_old_svid_stays() {
    let ctl = TestController::start(Setup {
        ttl: Duration::from_secs(6),
        ..Setup::default()
    })
    .await;
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    let client = gw.client();
    let first = client.ensure_svid().await.unwrap();
    let on_disk = std::fs::read(gw.dir.path().join("data/svid.pem")).unwrap();
    ctl.state.fail_renewals.store(true, Ordering::SeqCst);
    let _tasks = client.spawn(Recorder::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ctl.state.renews.load(Ordering::SeqCst) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no retries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(client.svid().unwrap().info().serial, first.info().serial);
    assert_eq!(
        std::fs::read(gw.dir.path().join("data/svid.pem")).unwrap(),
        on_disk
    );
    let refused = client
        .metrics()
        .renewals
        .with_label_values(&["error", "refused"])
        .get();
    assert!(refused >= 2, "{refused}");

    // The controller comes back: the next retry renews.
    ctl.state.fail_renewals.store(false, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.svid().unwrap().info().serial == first.info().serial {
        assert!(tokio::time::Instant::now() < deadline, "never renewed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn snapshots_are_applied_and_acked_an_invalid_one_nacked() {
    let west = TestDomain::new("west.example");
    let ctl = TestController::start(Setup::default()).await;
    ctl.set_initial(good_snapshot(1, &west));
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    let client = gw.client();
    client.ensure_svid().await.unwrap();
    let applier = Recorder::new();
    let _tasks = client.spawn(applier.clone());

    let hello = ctl.wait_for(|m| matches!(m, FromGateway::Hello(_))).await;
    let FromGateway::Hello(hello) = hello else {
        unreachable!()
    };
    assert_eq!(hello.gateway, "edge-1");
    assert_eq!(hello.version, 0);
    let holdings = hello.holdings.unwrap();
    assert_eq!(holdings.svid_serial, client.svid().unwrap().info().serial);
    assert!(
        holdings
            .bundles
            .iter()
            .any(|b| b.trust_domain == "east.example"
                && b.digest.starts_with("sha256:")
                && b.digest.len() == 71)
    );

    let ack = ctl.wait_for(|m| matches!(m, FromGateway::Ack(_))).await;
    assert!(
        matches!(ack, FromGateway::Ack(ref a) if a.version == 1 && a.error.is_empty()),
        "{ack:?}"
    );
    let applied = applier.configs();
    assert_eq!(applied.len(), 1);
    assert!(
        applied[0]
            .services
            .keys()
            .any(|d| d.service.as_str() == "payments")
    );
    assert!(applied[0].peers.contains_key("west"));
    assert!(
        gw.dir
            .path()
            .join("data/bundles/west.example.json")
            .exists()
    );
    assert_eq!(client.applied_version(), 1);

    // An import from a peer that does not exist: refused with the field.
    let mut bad = good_snapshot(2, &west);
    bad.imports[0].peer = "nobody".into();
    ctl.push(bad);
    let nack = ctl
        .wait_for(|m| matches!(m, FromGateway::Ack(a) if a.version == 2))
        .await;
    let FromGateway::Ack(nack) = nack else {
        unreachable!()
    };
    assert!(nack.error.contains("imports[0].peer"), "{}", nack.error);
    assert_eq!(applier.configs().len(), 1, "the refused config was applied");
    assert_eq!(client.applied_version(), 1);
    let dir = DataDir::open(&gw.dir.path().join("data")).unwrap();
    assert_eq!(cache::load(&dir).unwrap().unwrap().version, 1);

    // The applier's own refusal is a NACK too.
    applier.refuse("listener busy");
    ctl.push(good_snapshot(3, &west));
    let nack = ctl
        .wait_for(|m| matches!(m, FromGateway::Ack(a) if a.version == 3))
        .await;
    assert!(matches!(nack, FromGateway::Ack(ref a) if a.error == "listener busy"));
    assert_eq!(cache::load(&dir).unwrap().unwrap().version, 1);
}

#[tokio::test]
async fn a_restart_with_the_controller_down_serves_the_cached_config() {
    let west = TestDomain::new("west.example");
    let ctl = TestController::start(Setup::default()).await;
    ctl.set_initial(good_snapshot(7, &west));
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    {
        let client = gw.client();
        client.ensure_svid().await.unwrap();
        let _tasks = client.spawn(Recorder::new());
        ctl.wait_for(|m| matches!(m, FromGateway::Ack(a) if a.version == 7 && a.error.is_empty()))
            .await;
    }
    // The controller goes away; the gateway restarts.
    ctl.stop();
    let client = gw.client();
    client.ensure_svid().await.unwrap();
    let (running, _tasks) = start_controlled(&client).await;
    let running = running.listeners.clone();
    assert!(running.contains_key("payments"), "{running:?}");
    assert_eq!(client.applied_version(), 7);
    assert_eq!(
        client
            .metrics()
            .configs
            .with_label_values(&["cached"])
            .get(),
        1
    );
    // It keeps trying the controller meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        client
            .metrics()
            .connects
            .with_label_values(&["error"])
            .get()
            >= 1
    );
}

#[tokio::test]
async fn holdings_are_sent_again_after_the_gateway_reloads_a_bundle() {
    let west = TestDomain::new("west.example");
    let ctl = TestController::start(Setup::default()).await;
    ctl.set_initial(good_snapshot(1, &west));
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    let client = gw.client();
    client.ensure_svid().await.unwrap();
    let (_running, _tasks) = start_controlled(&client).await;
    ctl.wait_for(|m| matches!(m, FromGateway::Ack(a) if a.version == 1 && a.error.is_empty()))
        .await;

    // West rotates its root: the controller sends the new bundle; the
    // gateway's reload task swaps it in; the client reports what the
    // running gateway now holds.
    let rotated = TestDomain::new("west.example");
    let mut next = good_snapshot(2, &west);
    next.bundles[0].document = rotated.bundle().to_json();
    next.bundles[0].digest = authorities_digest(&rotated.bundle());
    ctl.push(next);
    let digest = authorities_digest(&rotated.bundle());
    ctl.wait_for(|m| {
        matches!(m, FromGateway::Holdings(h)
            if h.bundles.iter().any(|b| b.trust_domain == "west.example" && b.digest == digest))
    })
    .await;
}
