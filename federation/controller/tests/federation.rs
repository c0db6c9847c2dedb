#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Two controllers in process, peered both ways by peering files whose
//! first bundles come from `ExportBundle`: each serves the SPIFFE bundle
//! endpoint and the federation API on its public port; a change of one
//! side's bundle reaches the other side's store and gateways through the
//! announcement (long before the next poll), and the federation API lets
//! in only the peer's controller.

use std::time::{Duration, Instant};

use causeway_controller::client;
use causeway_controller::testing::{self, ConfigStream};
use causeway_proto::controller::v1 as pb;
use causeway_proto::federation::v1 as fpb;
use causeway_trust::{Authority, BundleSet, SpiffeId, TrustBundle, TrustDomain};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_exchange_bundles_and_exports_and_follow_a_new_bundle_at_once() {
    let Pair { east, west, _dirs } = peered_pair().await;

    // Each announced what it exports; the other shows it.
    assert!(
        eventually(Duration::from_secs(15), async || {
            show(&west, "east").await.offered == ["local:8080"]
                && show(&east, "west").await.offered == ["local:8080"]
        })
        .await,
        "west sees {:?}, east sees {:?}",
        show(&west, "east").await,
        show(&east, "west").await
    );

    // A west gateway's config holds east's bundle.
    let token = {
        let mut admin = client::admin(&west.admin_socket).await.unwrap();
        admin
            .create_token(pb::CreateTokenRequest {
                gateway: "west-1".into(),
                ttl_seconds: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .token
    };
    let joined = testing::join(west.api, &token, "west-1", WEST)
        .await
        .unwrap();
    let mut stream = ConfigStream::open(west.api, &joined, "west-1")
        .await
        .unwrap();
    let first = stream.next().await.unwrap();
    let east_bundle = |snap: &pb::ConfigSnapshot| {
        snap.bundles
            .iter()
            .find(|b| b.trust_domain == EAST)
            .cloned()
            .unwrap()
    };
    assert_eq!(east_bundle(&first).sequence, 1);
    stream.ack(first.version, "").await;
    stream.report_holdings(&joined, &first.bundles).await;

    // Everyone holds what they must: east's controller and west's gateway
    // hold east's bundle, west's gateway holds west's.
    assert!(
        eventually(Duration::from_secs(10), async || verify(&west)
            .await
            .in_sync)
        .await,
        "{:?}",
        verify(&west).await
    );
    let at_east = verify(&east).await;
    assert!(at_east.in_sync, "{at_east:?}");
    assert_eq!(
        kinds(&at_east),
        [("peer_controller", ""), ("peer_gateway", "west-1")]
    );

    // East publishes a bundle with a second root (what a rotation's first
    // step does). West holds it within seconds, though it polls every 10
    // minutes: east announced it.
    let old = TrustBundle::from_json(
        TrustDomain::new(EAST).unwrap(),
        export(&east).await.as_bytes(),
    )
    .unwrap();
    let extra =
        Authority::new_root(&TrustDomain::new(EAST).unwrap(), Duration::from_secs(3600)).unwrap();
    let mut both = old.clone().with_sequence(2);
    both.add_x509_authority(extra.cert().clone());
    // The second root goes where a rotation keeps it; the leader publishes
    // the bundle the stored roots call for.
    let standby = serde_json::json!({"cert_pem": extra.cert_pem(), "key_pem": extra.key_pem()});
    let put = causeway_store::Txn::new().put("ca/standby", serde_json::to_vec(&standby).unwrap());
    assert!(east.store().txn(put).await.unwrap().applied);

    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(10), async || {
            show(&west, "east").await.bundle_sequence == 2
        })
        .await,
        "west still holds {:?}",
        show(&west, "east").await
    );
    let took = started.elapsed();
    assert_eq!(show(&west, "east").await.bundle_digest, both.digest());
    assert!(took < Duration::from_secs(10), "{took:?}");

    // West's gateway gets it in a new config version.
    let second = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a new version")
        .unwrap();
    let b = east_bundle(&second);
    assert_eq!((b.sequence, b.digest.as_str()), (2, both.digest().as_str()));

    // Until the gateway says it holds it, both sides name it as behind.
    let behind = verify(&west).await;
    assert!(!behind.in_sync);
    let first_row = &behind.parties[0];
    assert_eq!(
        (
            first_row.kind.as_str(),
            first_row.name.as_str(),
            first_row.bundle_trust_domain.as_str()
        ),
        ("local_gateway", "west-1", EAST),
        "{behind:?}"
    );
    assert_eq!(first_row.problem, "holds sequence 1, not 2 (other roots)");
    assert!(!verify(&east).await.in_sync);
    stream.ack(second.version, "").await;
    stream.report_holdings(&joined, &second.bundles).await;
    assert!(
        eventually(Duration::from_secs(10), async || verify(&west)
            .await
            .in_sync
            && verify(&east).await.in_sync)
        .await,
        "{:?}\n{:?}",
        verify(&west).await,
        verify(&east).await
    );

    // East's bundle endpoint serves it too, to a plain SPIFFE client that
    // authenticates it with the old bundle.
    let anchors = BundleSet::from_bundles([old.clone()]).unwrap();
    let fetched = causeway_exchange::fetch_bundle(
        &format!("https://{}/", east.federation.unwrap()),
        &SpiffeId::new(&format!("spiffe://{EAST}/causeway/controller")).unwrap(),
        &anchors,
        &old,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(fetched.sequence(), Some(2));
    assert_eq!(fetched.digest(), both.digest());

    // The federation API: without a client certificate, unauthenticated;
    // with one of a domain we do not peer with, the handshake fails.
    let tls = client::join_tls(&east.pin, &TrustDomain::new(EAST).unwrap()).unwrap();
    let mut anon = client::federation("127.0.0.1", east.federation.unwrap().port(), tls).unwrap();
    let e = anon
        .holdings(fpb::HoldingsRequest {})
        .await
        .expect_err("no certificate");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    let own = causeway_trust::tls::client_config(
        &joined.svid,
        std::sync::Arc::new(causeway_trust::SpiffeVerifier::new(
            causeway_trust::SharedBundles::new(BundleSet::from_bundles([old.clone()]).unwrap()),
            causeway_trust::Expected::AnyKnownDomain,
        )),
        &[b"h2"],
    )
    .unwrap();
    // West's gateway SVID chains to west's root, which east holds: the
    // handshake passes and the API refuses it by ID.
    let mut gw = client::federation("127.0.0.1", east.federation.unwrap().port(), own).unwrap();
    let e = gw
        .holdings(fpb::HoldingsRequest {})
        .await
        .expect_err("a gateway is not a controller");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // West's metrics: the announcements it received and sent, and how long
    // each bundle's roots have left.
    let m = testing::scrape(west.metrics.unwrap()).await;
    let sample = |name: &str| testing::sample(&m, name);
    assert!(
        sample(
            "causeway_controller_announcements_received_total{outcome=\"updated\",peer=\"east\"}"
        ) >= 1.0,
        "{m}"
    );
    assert!(
        sample("causeway_controller_announcements_sent_total{peer=\"east\",result=\"ok\"}") >= 1.0,
        "{m}"
    );
    for td in [EAST, WEST] {
        let left = sample(&format!(
            "causeway_controller_root_expiry_seconds{{trust_domain=\"{td}\"}}"
        ));
        assert!(
            left > 0.0 && left <= 3600.0 * 24.0 * 366.0,
            "{td}: {left}\n{m}"
        );
    }

    drop(stream);
    east.shutdown().await;
    west.shutdown().await;
}

/// A peer that announces a bundle which does not verify its own
/// controller's certificate is refused, and the bundle held stays: had it
/// been taken, that controller's next announcement and every fetch from its
/// endpoint would be refused, and its rotation could never reach us again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announced_bundle_that_would_lock_out_its_announcer_is_refused() {
    let Pair { east, west, _dirs } = peered_pair().await;
    assert!(
        eventually(Duration::from_secs(15), async || {
            show(&west, "east").await.bundle_sequence == 1
        })
        .await
    );

    // East's controller as it presents itself: an SVID from east's root.
    let td = TrustDomain::new(EAST).unwrap();
    let stored = east.store().get("ca/root").await.unwrap().kv.unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&stored.value).unwrap();
    let root = Authority::from_pem(
        stored["cert_pem"].as_str().unwrap().as_bytes(),
        stored["key_pem"].as_str().unwrap().as_bytes(),
    )
    .unwrap();
    let root_cert = root.cert().clone();
    let ca = causeway_trust::Ca::with_root(td.clone(), root);
    let issued = ca
        .issue_with_new_key(
            &td.workload_id("/causeway/controller").unwrap(),
            causeway_trust::Validity::starting_now(Duration::from_secs(600)),
        )
        .unwrap();
    let mut chain = issued.chain().to_vec();
    chain.push(root_cert.clone());
    let svid = causeway_trust::tls::SvidSource::new(
        causeway_trust::Svid::new(chain, issued.key().clone_key()).unwrap(),
    )
    .unwrap();
    let west_bundle = TrustBundle::from_json(
        TrustDomain::new(WEST).unwrap(),
        export(&west).await.as_bytes(),
    )
    .unwrap();
    let tls = causeway_trust::tls::client_config(
        &svid,
        std::sync::Arc::new(causeway_trust::SpiffeVerifier::new(
            causeway_trust::SharedBundles::new(BundleSet::from_bundles([west_bundle]).unwrap()),
            causeway_trust::Expected::AnyKnownDomain,
        )),
        &[b"h2"],
    )
    .unwrap();
    let mut api = client::federation("127.0.0.1", west.federation.unwrap().port(), tls).unwrap();
    let announce = |bundle: &TrustBundle| fpb::Announcement {
        document: bundle.to_json(),
        sequence: bundle.sequence().unwrap(),
        digest: bundle.digest(),
        exports: vec![fpb::ExportedService {
            service: "local".into(),
            ports: vec![8080],
        }],
    };

    // A newer bundle with another root alone: refused, with why.
    let other = Authority::new_root(&td, Duration::from_secs(3600)).unwrap();
    let cutting = TrustBundle::new(td.clone(), vec![other.cert().clone()]).with_sequence(5);
    // West's public port trusts east's root once its view has the peering's
    // bundle; until then the handshake itself fails.
    let deadline = Instant::now() + Duration::from_secs(10);
    let e = loop {
        let e = api
            .announce(announce(&cutting))
            .await
            .expect_err("the bundle does not verify the announcer");
        let handshake = matches!(
            e.code(),
            tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
        );
        if !handshake || Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains("does not verify the certificate it was announced with"),
        "{e:?}"
    );
    assert_eq!(show(&west, "east").await.bundle_sequence, 1);
    let m = testing::scrape(west.metrics.unwrap()).await;
    assert_eq!(
        testing::sample(
            &m,
            "causeway_controller_announcements_received_total{outcome=\"refused\",peer=\"east\"}"
        ),
        1.0,
        "{m}"
    );

    // The same with the announcer's root beside it: taken.
    let both = TrustBundle::new(td.clone(), vec![root_cert, other.cert().clone()]).with_sequence(5);
    let reply = api.announce(announce(&both)).await.unwrap().into_inner();
    assert_eq!(reply.held.unwrap().sequence, 5);
    assert_eq!(show(&west, "east").await.bundle_digest, both.digest());

    east.shutdown().await;
    west.shutdown().await;
}
