//! Credential reload on a whole gateway started in process from files:
//! a new SVID and a new bundle written over the files are swapped in and
//! reach real handshakes on the peer listener (a new QUIC connection sees
//! the new serial; a caller under a new root gets in), while garbage,
//! a mismatched key, a foreign identity and an expired certificate are
//! refused, named in /config_dump and counted, and the last good
//! credentials stay in use.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod live;
mod support;

use std::fs;
use std::time::Duration;

use causeway_gateway::creds::Expiry;
use causeway_gateway::runtime::{StartError, StartOptions, start_with};
use causeway_trust::testing::TestDomain;
use causeway_trust::{BundleSet, TrustBundle};
use live::{EAST_GW, Gateway, WEST_GW, dump, get, probe, sample, svid_pem, wait_for, west_view};

fn serial(d: &serde_json::Value) -> &str {
    d["credentials"]["svid"]["serial"].as_str().unwrap()
}

fn svid_result(d: &serde_json::Value) -> &str {
    d["credentials"]["svid"]["reload"]["last_result"]
        .as_str()
        .unwrap_or("")
}

#[tokio::test]
async fn reload_swaps_good_credentials_and_keeps_the_last_good_on_bad_files() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::with_intermediate("west.globex.example");
    let first = east.svid(EAST_GW);
    let gw = Gateway::start(&east, &west, &first, Duration::from_millis(50)).await;
    let (a, peer) = (gw.admin, gw.peer);
    let probe_west = || probe(peer, &east, west.svid(WEST_GW), west_view(&east, &west));
    assert_eq!(probe_west().await.unwrap(), first.info().serial);

    // A new SVID, written by rename: swapped in, and the next handshake
    // presents it.
    let second = east.svid(EAST_GW);
    gw.rotate(&second);
    let d = wait_for(a, "the second serial", |d| {
        serial(d) == second.info().serial
    })
    .await;
    assert_eq!(svid_result(&d), "ok");
    assert_eq!(probe_west().await.unwrap(), second.info().serial);

    // Garbage written in place: refused, named, the second SVID stays.
    fs::write(&gw.cert, b"-----BEGIN CERTIFICATE-----\nnot base64 at all").unwrap();
    let d = wait_for(a, "the garbage refused", |d| svid_result(d) == "invalid").await;
    assert_eq!(serial(&d), second.info().serial);
    let error = d["credentials"]["svid"]["reload"]["last_error"]
        .as_str()
        .unwrap();
    assert!(
        error.contains(gw.cert.to_str().unwrap()),
        "names the file: {error}"
    );
    assert_eq!(probe_west().await.unwrap(), second.info().serial);

    // A certificate with someone else's key (the rotation tool has written
    // the certificate, not yet the key): refused until the key comes.
    let third = east.svid(EAST_GW);
    let (cert3, key3) = svid_pem(&third);
    live::replace_file(&gw.cert, cert3.as_bytes());
    let d = wait_for(a, "the mismatched pair refused", |d| {
        svid_result(d) == "key_mismatch"
    })
    .await;
    assert_eq!(serial(&d), second.info().serial);
    assert_eq!(probe_west().await.unwrap(), second.info().serial);
    live::replace_file(&gw.key, key3.as_bytes());
    wait_for(a, "the third serial", |d| serial(d) == third.info().serial).await;
    assert_eq!(probe_west().await.unwrap(), third.info().serial);

    // Another workload's SVID, and an expired one: refused.
    gw.rotate(&east.svid("/ns/shop/sa/frontend"));
    let d = wait_for(a, "the wrong identity refused", |d| {
        svid_result(d) == "wrong_identity"
    })
    .await;
    assert_eq!(serial(&d), third.info().serial);
    gw.rotate(&east.expired_svid(EAST_GW));
    let d = wait_for(a, "the expired SVID refused", |d| {
        svid_result(d) == "expired"
    })
    .await;
    assert_eq!(serial(&d), third.info().serial);
    assert_eq!(probe_west().await.unwrap(), third.info().serial);

    // West rotates its root: a caller under the new root is refused until
    // the new bundle (old and new roots, sequence 2) is swapped in.
    let west2 = TestDomain::with_intermediate("west.globex.example");
    let west2_view = || {
        let mut roots = west.ca.roots().to_vec();
        roots.extend(west2.ca.roots().iter().cloned());
        BundleSet::from_bundles([
            east.bundle(),
            TrustBundle::new(west.trust_domain.clone(), roots).with_sequence(2),
        ])
        .unwrap()
    };
    let probe_west2 = || probe(peer, &east, west2.svid(WEST_GW), west2_view());
    assert!(probe_west2().await.is_err(), "new root not trusted yet");
    let both = west2_view().get(&west.trust_domain).unwrap().clone();
    gw.write_west_bundle(&both);
    let d = wait_for(a, "the new west bundle", |d| {
        d["credentials"]["bundles"]["west.globex.example"]["digest"] == both.digest()
    })
    .await;
    assert_eq!(
        d["credentials"]["bundles"]["west.globex.example"]["sequence"],
        2
    );
    assert_eq!(probe_west2().await.unwrap(), third.info().serial);
    assert_eq!(probe_west().await.unwrap(), third.info().serial);

    // A broken bundle file: refused, the held bundle stays.
    fs::write(&gw.west_bundle, b"{\"keys\": [").unwrap();
    let d = wait_for(a, "the broken bundle refused", |d| {
        d["credentials"]["bundles"]["west.globex.example"]["reload"]["last_result"] == "invalid"
    })
    .await;
    assert_eq!(
        d["credentials"]["bundles"]["west.globex.example"]["digest"],
        both.digest()
    );
    assert_eq!(probe_west2().await.unwrap(), third.info().serial);

    // Every outcome was counted once, and the gauges follow the swaps.
    let m = get(a, "/metrics").await.body;
    for (labels, n) in [
        ("kind=\"svid\",result=\"ok\"", 2.0),
        ("kind=\"svid\",result=\"invalid\"", 1.0),
        ("kind=\"svid\",result=\"key_mismatch\"", 1.0),
        ("kind=\"svid\",result=\"wrong_identity\"", 1.0),
        ("kind=\"svid\",result=\"expired\"", 1.0),
        ("kind=\"bundle\",result=\"ok\"", 1.0),
        ("kind=\"bundle\",result=\"invalid\"", 1.0),
    ] {
        let name = format!("causeway_gateway_credential_reloads_total{{{labels}}}");
        assert_eq!(sample(&m, &name), Some(n), "{name}:\n{m}");
    }
    assert_eq!(
        sample(
            &m,
            "causeway_gateway_bundle_sequence{trust_domain=\"west.globex.example\"}"
        ),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_chain_cut_after_the_leaf_is_refused_until_it_is_whole() {
    causeway_trust::tls::install_default_provider();
    // East signs with an intermediate: its SVID files hold leaf + intermediate.
    let east = TestDomain::with_intermediate("east.acme.example");
    let west = TestDomain::new("west.globex.example");
    let first = east.svid(EAST_GW);
    let gw = Gateway::start(&east, &west, &first, Duration::from_millis(50)).await;
    let probe_west = || probe(gw.peer, &east, west.svid(WEST_GW), west_view(&east, &west));

    // The new key, and a certificate file holding only the leaf (a writer
    // stopped after the first PEM block): it parses and matches the key,
    // but peers could not build its chain.
    let next = east.svid(EAST_GW);
    let (cert, key) = svid_pem(&next);
    let leaf_only = causeway_trust::pem::encode_certificates(&next.chain()[..1]);
    live::replace_file(&gw.key, key.as_bytes());
    live::replace_file(&gw.cert, leaf_only.as_bytes());
    let d = wait_for(gw.admin, "the leaf-only chain refused", |d| {
        svid_result(d) == "untrusted_chain"
    })
    .await;
    assert_eq!(serial(&d), first.info().serial);
    assert_eq!(probe_west().await.unwrap(), first.info().serial);

    // The whole chain: taken, and presented.
    live::replace_file(&gw.cert, cert.as_bytes());
    wait_for(gw.admin, "the new serial", |d| {
        serial(d) == next.info().serial
    })
    .await;
    assert_eq!(probe_west().await.unwrap(), next.info().serial);
}

#[tokio::test]
async fn reload_now_reads_the_files_without_waiting_for_the_interval() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::new("west.globex.example");
    let first = east.svid(EAST_GW);
    let gw = Gateway::start(&east, &west, &first, Duration::from_secs(3600)).await;
    let second = east.svid(EAST_GW);
    gw.rotate(&second);
    // Nothing reads the files for an hour.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(serial(&dump(gw.admin).await), first.info().serial);
    gw.running().reload_now();
    wait_for(gw.admin, "the second serial", |d| {
        serial(d) == second.info().serial
    })
    .await;
}

#[tokio::test]
async fn an_svid_from_a_new_root_and_the_bundle_adding_it_are_taken_in_one_pass() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::new("west.globex.example");
    let first = east.svid(EAST_GW);
    // Nothing reads the files but `reload_now`: one pass must take both.
    let gw = Gateway::start(&east, &west, &first, Duration::from_secs(3600)).await;
    let rotated = TestDomain::new("east.acme.example");
    let roots = [east.ca.roots(), rotated.ca.roots()].concat();
    let both = TrustBundle::new(east.trust_domain.clone(), roots).with_sequence(2);
    // As the control client writes them after a renewal: bundle, then SVID.
    live::replace_file(&gw.east_bundle, both.to_json().as_bytes());
    let next = rotated.svid(EAST_GW);
    gw.rotate(&next);
    gw.running().reload_now();
    let d = wait_for(gw.admin, "the SVID from the new root", |d| {
        serial(d) == next.info().serial
    })
    .await;
    assert_eq!(svid_result(&d), "ok");
    let metrics = gw.running().metrics();
    let refused = metrics
        .credential_reloads
        .with_label_values(&["svid", "untrusted_chain"])
        .get();
    assert_eq!(refused, 0);

    // The old root goes: the SVID in use still chains.
    let only_new = rotated.bundle().with_sequence(3);
    live::replace_file(&gw.east_bundle, only_new.to_json().as_bytes());
    gw.running().reload_now();
    let own = || {
        let held = gw.running().credentials().bundles();
        held.get(&east.trust_domain).map(TrustBundle::digest)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while own() != Some(only_new.digest()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new bundle never came"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(serial(&dump(gw.admin).await), next.info().serial);
}

#[tokio::test]
async fn a_gateway_starts_with_an_expired_svid_and_says_so() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::new("west.globex.example");
    let expired = east.expired_svid(EAST_GW);
    let gw = Gateway::start(&east, &west, &expired, Duration::from_secs(1)).await;
    let d = dump(gw.admin).await;
    assert_eq!(d["credentials"]["svid"]["expiry"], "expired");
    assert!(
        d["credentials"]["svid"]["expires_in_seconds"]
            .as_i64()
            .unwrap()
            < 0
    );
    let m = get(gw.admin, "/metrics").await.body;
    assert!(sample(&m, "causeway_gateway_svid_expiry_seconds ").unwrap() < 0.0);
    // Peers refuse it; a renewal written to the files fixes it live.
    assert!(
        probe(gw.peer, &east, west.svid(WEST_GW), west_view(&east, &west))
            .await
            .is_err()
    );
    let renewed = east.svid(EAST_GW);
    gw.rotate(&renewed);
    wait_for(gw.admin, "the renewed SVID", |d| {
        d["credentials"]["svid"]["expiry"] == "valid"
    })
    .await;
    assert_eq!(
        probe(gw.peer, &east, west.svid(WEST_GW), west_view(&east, &west))
            .await
            .unwrap(),
        renewed.info().serial
    );
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_is_refused_at_start() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::new("west.globex.example");
    let gw = Gateway::start(&east, &west, &east.svid(EAST_GW), Duration::from_secs(1)).await;
    // Same files, but the key of another SVID.
    let (_, other_key) = svid_pem(&east.svid(EAST_GW));
    fs::write(&gw.key, other_key).unwrap();
    let config =
        causeway_gateway::config::GatewayConfig::load(&gw.dir.path().join("east.yaml")).unwrap();
    match start_with(config, StartOptions::default()).await {
        Err(e @ StartError::Credentials { .. }) => {
            let text = e.to_string();
            assert!(text.contains("east-gw.key"), "{text}");
        }
        other => panic!("expected a credentials error, got {other:?}"),
    }
}

#[test]
fn expiry_is_classified_against_a_third_of_the_lifetime_or_ten_minutes_within_the_half_life() {
    let hour = 3600;
    // A one-hour SVID: warned in its last 20 minutes.
    assert_eq!(Expiry::at(0, hour, 0), Expiry::Valid);
    assert_eq!(Expiry::at(0, hour, 2399), Expiry::Valid);
    assert_eq!(
        Expiry::at(0, hour, 2400),
        Expiry::Expiring {
            remaining_secs: 1200
        }
    );
    assert_eq!(
        Expiry::at(0, hour, hour),
        Expiry::Expiring { remaining_secs: 0 }
    );
    assert_eq!(Expiry::at(0, hour, hour + 1), Expiry::Expired);
    assert_eq!(Expiry::at(10, hour, 9), Expiry::NotYetValid);
    // A 25-minute SVID: the ten-minute floor applies (it is less than the
    // half-life, where a controller-run gateway renews).
    assert_eq!(Expiry::at(0, 1500, 899), Expiry::Valid);
    assert_eq!(
        Expiry::at(0, 1500, 900),
        Expiry::Expiring {
            remaining_secs: 600
        }
    );
    // A 15-minute SVID: ten minutes would reach back before its renewal at
    // 7.5 minutes, so only the last third warns.
    assert_eq!(Expiry::at(0, 900, 599), Expiry::Valid);
    assert_eq!(
        Expiry::at(0, 900, 600),
        Expiry::Expiring {
            remaining_secs: 300
        }
    );
    // A day-long SVID: warned in its last eight hours.
    assert_eq!(Expiry::at(0, 86400, 57599), Expiry::Valid);
    assert!(matches!(
        Expiry::at(0, 86400, 57600),
        Expiry::Expiring { .. }
    ));
}
