#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Root rotation, the gateway's side, against the test controller of
//! `control_support` (real TLS and gRPC on loopback, real CAs): a snapshot
//! whose `svid_root` names a root the SVID does not chain to makes the
//! gateway renew at once, its holdings report the new root, and the own
//! bundle can then change to the new root alone.

mod control_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use causeway_gateway::control::{ControlClient, authorities_digest, svid_root};
use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::gateway_message::Message as FromGateway;
use causeway_trust::testing::TestDomain;
use control_support::*;

/// How long a forced renewal may take, from the snapshot to the holdings
/// naming the new root (the SVIDs here live an hour: their half-life is
/// far away).
const PROMPT: Duration = Duration::from_secs(3);

fn renewals(client: &ControlClient, reason: &str) -> u64 {
    client
        .metrics()
        .renewals
        .with_label_values(&["ok", reason])
        .get()
}

/// `good_snapshot` with the own bundle and the root the controller
/// issues from.
fn snapshot(
    version: u64,
    west: &TestDomain,
    ctl: &TestController,
    root: &str,
) -> pb::ConfigSnapshot {
    let mut s = good_snapshot(version, west);
    s.bundles.push(bundle_entry(&ctl.own_bundle()));
    s.svid_root = root.to_owned();
    s
}

async fn acked(ctl: &TestController, version: u64) {
    let ack = ctl
        .wait_for(|m| matches!(m, FromGateway::Ack(a) if a.version == version))
        .await;
    assert!(
        matches!(ack, FromGateway::Ack(ref a) if a.error.is_empty()),
        "{ack:?}"
    );
}

fn own_digest(h: &pb::Holdings) -> Option<&str> {
    h.bundles
        .iter()
        .find(|b| b.trust_domain == "east.example")
        .map(|b| b.digest.as_str())
}

#[tokio::test]
async fn a_new_root_named_by_the_controller_renews_at_once_and_the_old_root_can_go() {
    let west = TestDomain::new("west.example");
    let ctl = TestController::start(Setup::default()).await;
    ctl.set_initial(snapshot(1, &west, &ctl, ""));
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    let client = gw.client();
    let first = client.ensure_svid().await.unwrap();
    let (running, _tasks) = start_controlled(&client).await;
    acked(&ctl, 1).await;
    let pin_a = ctl.pin();
    let hello = ctl.wait_for(|m| matches!(m, FromGateway::Hello(_))).await;
    assert!(
        matches!(&hello, FromGateway::Hello(h) if h.holdings.as_ref().unwrap().svid_root == pin_a),
        "{hello:?}"
    );

    // Old + new root in the bundle, issuing from the new one.
    let pin_b = ctl.begin_rotation();
    let both = ctl.own_bundle();
    let pushed = Instant::now();
    ctl.push(snapshot(2, &west, &ctl, &pin_b));
    acked(&ctl, 2).await;
    let h = ctl
        .wait_for(|m| matches!(m, FromGateway::Holdings(h) if h.svid_root == pin_b))
        .await;
    let took = pushed.elapsed();
    assert!(
        took < PROMPT,
        "the holdings named the new root after {took:?}"
    );
    let FromGateway::Holdings(h) = h else {
        unreachable!()
    };
    assert_eq!(own_digest(&h), Some(authorities_digest(&both).as_str()));
    assert_eq!(renewals(&client, "root_rotation"), 1);
    assert_eq!(renewals(&client, "renewed"), 0);
    assert_eq!(ctl.state.renews.load(Ordering::SeqCst), 1);
    assert_eq!(client.wanted_root(), pin_b);

    // The running gateway took the new SVID through its reload path, with
    // no refusal on the way (the bundle adding the root came first).
    let (credentials, metrics) = (running.credentials().clone(), running.metrics().clone());
    let svid = credentials.svid();
    assert_ne!(svid.info().serial, first.info().serial);
    assert_eq!(svid.info().serial, client.svid().unwrap().info().serial);
    assert_eq!(
        svid_root(&svid, &credentials.bundles()),
        Some(pin_b.clone())
    );
    let refused = metrics
        .credential_reloads
        .with_label_values(&["svid", "untrusted_chain"])
        .get();
    assert_eq!(refused, 0);

    // Back to the schedule: no second renewal.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ctl.state.renews.load(Ordering::SeqCst), 1);

    // The new root only.
    ctl.finish_rotation();
    let only_b = ctl.own_bundle();
    ctl.push(snapshot(3, &west, &ctl, &pin_b));
    acked(&ctl, 3).await;
    let digest = authorities_digest(&only_b);
    ctl.wait_for(|m| {
        matches!(m, FromGateway::Holdings(h)
            if own_digest(h) == Some(digest.as_str()) && h.svid_root == pin_b)
    })
    .await;
    let own = credentials.bundles();
    let own = own
        .bundles()
        .find(|b| b.trust_domain().as_str() == "east.example");
    assert_eq!(own.map(|b| b.digest()), Some(digest));
    assert_eq!(ctl.state.renews.load(Ordering::SeqCst), 1);

    // The controller, now presenting an SVID from the new root, is still
    // reached: a renewal over mTLS works.
    let issued = client.renew_once().await.unwrap();
    assert_eq!(
        svid_root(&issued.svid, &credentials.bundles()),
        Some(pin_b.clone())
    );
    assert_eq!(renewals(&client, "root_rotation"), 1);
    let text = metrics.render();
    for td in ["east.example", "west.example"] {
        let series = format!("causeway_gateway_root_expiry_seconds{{trust_domain=\"{td}\"}} ");
        assert!(text.contains(&series), "{td} in\n{text}");
    }
}

#[tokio::test]
async fn a_replica_still_issuing_from_the_old_root_is_asked_again_with_backoff() {
    let west = TestDomain::new("west.example");
    let ctl = TestController::start(Setup::default()).await;
    ctl.set_initial(snapshot(1, &west, &ctl, ""));
    let gw = GatewayDir::new(&ctl, &ctl.pin());
    let client = gw.client();
    client.ensure_svid().await.unwrap();
    let _tasks = client.spawn(Recorder::new());
    acked(&ctl, 1).await;

    let pin_b = ctl.begin_rotation();
    let both = ctl.own_bundle();
    // The next two renewals are answered from the old root, with the old
    // own bundle.
    ctl.state.stale_renewals.store(2, Ordering::SeqCst);
    let pushed = Instant::now();
    ctl.push(snapshot(2, &west, &ctl, &pin_b));
    acked(&ctl, 2).await;
    ctl.wait_for(|m| matches!(m, FromGateway::Holdings(h) if h.svid_root == pin_b))
        .await;
    let took = pushed.elapsed();
    // Waits of 100-200 ms and 200-400 ms between the three renewals.
    assert!(
        took >= Duration::from_millis(300) && took < PROMPT,
        "renewed from the new root after {took:?}"
    );
    assert_eq!(ctl.state.renews.load(Ordering::SeqCst), 3);
    assert_eq!(renewals(&client, "root_rotation"), 3);
    // Then the schedule again, no busy loop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ctl.state.renews.load(Ordering::SeqCst), 3);
    // The older own bundle of the stale answers was never taken: once the
    // snapshot brought both roots, no holdings went back to the old one.
    let seen = ctl.seen().await;
    let ack2 = seen
        .iter()
        .position(|m| matches!(m, FromGateway::Ack(a) if a.version == 2))
        .unwrap();
    for m in &seen[ack2..] {
        if let FromGateway::Holdings(h) = m {
            assert_eq!(
                own_digest(h),
                Some(authorities_digest(&both).as_str()),
                "{h:?}"
            );
        }
    }
    let on_disk =
        std::fs::read_to_string(gw.dir.path().join("data/bundles/east.example.json")).unwrap();
    assert_eq!(on_disk, both.to_json());
}

#[tokio::test]
async fn no_renewal_when_the_snapshot_names_no_root_or_the_one_in_use() {
    let west = TestDomain::new("west.example");
    let ctl = TestController::start(Setup::default()).await;
    let pin_a = ctl.pin();
    ctl.set_initial(snapshot(1, &west, &ctl, ""));
    let gw = GatewayDir::new(&ctl, &pin_a);
    let client = gw.client();
    let first = client.ensure_svid().await.unwrap();
    let (running, _tasks) = start_controlled(&client).await;
    acked(&ctl, 1).await;

    // Both roots held, the controller issuing from the new one, but no
    // snapshot asks for it; then one names the root in use.
    ctl.begin_rotation();
    ctl.push(snapshot(2, &west, &ctl, ""));
    acked(&ctl, 2).await;
    ctl.push(snapshot(3, &west, &ctl, &pin_a));
    acked(&ctl, 3).await;
    assert_eq!(client.wanted_root(), pin_a);
    // A value that is no SHA-256 is refused: the version before stays.
    ctl.push(snapshot(4, &west, &ctl, "not-a-pin"));
    let nack = ctl
        .wait_for(|m| matches!(m, FromGateway::Ack(a) if a.version == 4))
        .await;
    assert!(
        matches!(&nack, FromGateway::Ack(a) if a.error.contains("svid_root")),
        "{nack:?}"
    );
    assert_eq!(client.wanted_root(), pin_a);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ctl.state.renews.load(Ordering::SeqCst), 0);
    assert_eq!(renewals(&client, "root_rotation"), 0);
    assert_eq!(client.svid().unwrap().info().serial, first.info().serial);
    // Holdings name the root in use.
    let credentials = running.credentials().clone();
    assert_eq!(
        svid_root(&credentials.svid(), &credentials.bundles()),
        Some(pin_a)
    );
}
