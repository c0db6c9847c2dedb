//! The admin listener of a whole gateway started in process on loopback:
//! every endpoint answers as specified, /metrics has the gateway's
//! families, /config_dump shows the config in effect and the live
//! credentials, bad requests get errors (never a crash), and /readyz turns
//! 503 while the gateway drains. The phases before ready are checked on the
//! handler directly, since a start on loopback is too quick to catch.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod live;
mod support;

use std::sync::Arc;
use std::time::Duration;

use causeway_gateway::admin::{AdminState, PROMETHEUS_CONTENT_TYPE, handle};
use causeway_gateway::config::GatewayConfig;
use causeway_gateway::creds::Credentials;
use causeway_gateway::metrics::Metrics;
use causeway_trust::testing::TestDomain;
use causeway_trust::tls::SvidSource;
use causeway_trust::{BundleSet, SharedBundles};
use http_body_util::BodyExt;
use live::{EAST_GW, Gateway, WEST_GW, get, probe, raw, request, sample, west_view};

#[tokio::test]
async fn admin_endpoints_answer_as_specified() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::with_intermediate("west.globex.example");
    let svid = east.svid(EAST_GW);
    let gw = Gateway::start(&east, &west, &svid, Duration::from_secs(1)).await;
    let a = gw.admin;

    let r = get(a, "/healthz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{r:?}");
    let r = get(a, "/readyz").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ready\n"), "{r:?}");

    // A refused handshake (a stranger's certificate) and an accepted one,
    // so that the handshake family has a sample.
    let stranger = TestDomain::new("west.globex.example");
    let refused = probe(
        gw.peer,
        &east,
        stranger.svid(WEST_GW),
        west_view(&east, &west),
    )
    .await;
    assert!(refused.is_err(), "a stranger's SVID must be refused");
    probe(gw.peer, &east, west.svid(WEST_GW), west_view(&east, &west))
        .await
        .unwrap();

    let r = get(a, "/metrics").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some(PROMETHEUS_CONTENT_TYPE)
    );
    for family in [
        "# TYPE causeway_gateway_svid_expiry_seconds gauge",
        "# TYPE causeway_gateway_bundle_sequence gauge",
        "# TYPE causeway_gateway_handshake_failures_total counter",
        "# TYPE causeway_gateway_credential_reloads_total counter",
    ] {
        assert!(
            r.body.contains(family),
            "/metrics lacks {family}:\n{}",
            r.body
        );
    }
    let expiry = sample(&r.body, "causeway_gateway_svid_expiry_seconds ").unwrap();
    assert!(
        (3500.0..=3600.0).contains(&expiry),
        "a one-hour SVID: {expiry}"
    );
    assert_eq!(
        sample(
            &r.body,
            "causeway_gateway_bundle_sequence{trust_domain=\"west.globex.example\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &r.body,
            "causeway_gateway_handshake_failures_total{reason=\"untrusted_chain\",role=\"client\"}"
        ),
        Some(1.0),
        "{}",
        r.body
    );

    // The config dump: the config, bound addresses, live credentials.
    let r = get(a, "/config_dump").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    let d: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let running = gw.running();
    assert_eq!(d["state"], "ready");
    assert_eq!(d["id"], "spiffe://east.acme.example/gateway/east-1");
    assert_eq!(d["trust_domain"], "east.acme.example");
    assert_eq!(d["admin"]["bound"], a.to_string());
    assert_eq!(d["peer_listener"]["bound"], gw.peer.to_string());
    assert_eq!(d["peer_listener"]["listen"], "127.0.0.1:0");
    assert_eq!(d["listeners"][0]["name"], "frontend");
    assert_eq!(
        d["listeners"][0]["bound"],
        running.listeners["frontend"].to_string()
    );
    assert_eq!(d["listeners"][0]["service"], "payments.west");
    assert_eq!(
        d["listeners"][0]["caller"]["identity"],
        "spiffe://east.acme.example/ns/shop/sa/frontend"
    );
    assert_eq!(d["services"][0]["name"], "inventory");
    assert_eq!(d["services"][0]["port"], 8080);
    assert_eq!(d["imports"][0]["remote_service"], "payments");
    assert_eq!(d["imports"][0]["peer"], "west");
    assert_eq!(
        d["peers"][0]["gateways"][0]["id"],
        "spiffe://west.globex.example/gateway/west-1"
    );
    assert_eq!(
        d["rules"][0]["allow"][0]["trust_domain"],
        "west.globex.example"
    );
    assert_eq!(d["limits"]["handshake_timeout"], "2s");
    let c = &d["credentials"];
    assert_eq!(c["svid"]["serial"], svid.info().serial.as_str());
    assert_eq!(c["svid"]["spiffe_id"], svid.spiffe_id().as_str());
    assert_eq!(c["svid"]["issuer"], svid.info().issuer.as_str());
    assert_eq!(c["svid"]["expiry"], "valid");
    assert!(c["svid"]["not_after"].as_str().unwrap().ends_with('Z'));
    for (td, bundle) in [
        ("east.acme.example", east.bundle()),
        ("west.globex.example", west.bundle()),
    ] {
        assert_eq!(c["bundles"][td]["digest"], bundle.digest(), "{td}");
        assert_eq!(c["bundles"][td]["sequence"], 1, "{td}");
    }
    assert!(
        !r.body.contains("PRIVATE KEY"),
        "the dump never carries a key"
    );

    // Wrong methods, unknown paths, garbage: answered, never a crash.
    let r = request(a, "POST", "/metrics").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow").as_deref(), Some("GET"));
    assert_eq!(request(a, "DELETE", "/config_dump").await.status, 405);
    assert_eq!(get(a, "/nope").await.status, 404);
    assert_eq!(get(a, "/metrics/extra").await.status, 404);
    assert_eq!(get(a, "/healthz?verbose=1").await.status, 200);
    assert_eq!(
        raw(a, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").await.status,
        400
    );
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let status = raw(a, huge.as_bytes()).await.status;
    assert!(status == 431 || status == 0, "oversized headers: {status}");
    assert_eq!(get(a, "/healthz").await.status, 200);

    // Draining: /readyz says so while the gateway waits for an open call
    // (a stream from west to inventory, mid-conversation) to finish.
    let mut gw = gw;
    let running = gw.running.take().unwrap();
    let hold = probe_connection(&gw, &east, &west).await;
    let (mut send, mut recv) = hold.open_bi().await.unwrap();
    let header = causeway_gateway::transport::header::StreamHeader {
        service: causeway_gateway::service::ServiceName::new("inventory").unwrap(),
        port: 8080,
        caller: west.id(live::WEST_CALLER),
        traceparent: None,
        tracestate: None,
        deadline: None,
        request_id: "held".into(),
        protocol: causeway_gateway::transport::header::Protocol::Tcp,
        request: None,
    };
    send.write_all(&header.encode()).await.unwrap();
    send.write_all(b"hi").await.unwrap();
    let mut first = [0u8; 11];
    recv.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"payments|hi");
    let shutdown = tokio::spawn(running.shutdown(Duration::from_secs(5)));
    let r = wait_readyz(a, 503).await;
    assert_eq!(r.body, "draining: shutting down\n");
    assert_eq!(get(a, "/healthz").await.status, 200);
    // The drain waits for the open call, which still works; its end ends
    // the drain, well before the grace period.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!shutdown.is_finished(), "the drain waits for the open call");
    send.write_all(b"!").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(64).await.unwrap(), b"!");
    tokio::time::timeout(Duration::from_secs(4), shutdown)
        .await
        .expect("the drain ends when the last call does, before the grace period")
        .unwrap();
    drop(hold);
}

/// A QUIC connection to the peer listener, held open so that a shutdown
/// waits for it.
async fn probe_connection(gw: &Gateway, east: &TestDomain, west: &TestDomain) -> quinn::Connection {
    use causeway_gateway::config::Limits;
    use causeway_gateway::transport::quic::quic_client_config;
    use causeway_trust::{Expected, SpiffeVerifier};
    let verifier = SpiffeVerifier::new(
        SharedBundles::new(west_view(east, west)),
        Expected::ids([east.id(EAST_GW)]),
    );
    let config = quic_client_config(
        &SvidSource::new(west.svid(WEST_GW)).unwrap(),
        Arc::new(verifier),
        &Limits::default(),
    )
    .unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(config);
    ep.connect(gw.peer, "east").unwrap().await.unwrap()
}

async fn wait_readyz(addr: std::net::SocketAddr, status: u16) -> live::Reply {
    for _ in 0..200 {
        let r = get(addr, "/readyz").await;
        if r.status == status {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("/readyz never answered {status}");
}

#[tokio::test]
async fn readyz_follows_the_phases_starting_ready_draining() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let text = r#"
trust_domain: east.acme.example
id: spiffe://east.acme.example/gateway/east-1
svid: {cert: unused.pem, key: unused.key}
bundles:
  - {trust_domain: east.acme.example, file: unused}
"#;
    let config =
        Arc::new(GatewayConfig::from_yaml("east.yaml", text, std::path::Path::new("/")).unwrap());
    let metrics = Arc::new(Metrics::default());
    let creds = Credentials::new(
        config.clone(),
        SvidSource::new(east.svid(EAST_GW)).unwrap(),
        SharedBundles::new(BundleSet::from_bundles([east.bundle()]).unwrap()),
        metrics.clone(),
    );
    let state = AdminState::new(config, metrics, creds);
    let call = |path: &str| {
        let req = http::Request::get(path).body(()).unwrap();
        handle(&state, &req)
    };
    let body = |r: http::Response<http_body_util::Full<bytes::Bytes>>| async move {
        let status = r.status().as_u16();
        let b = r.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(b.to_vec()).unwrap())
    };

    let (status, text) = body(call("/readyz")).await;
    assert_eq!(status, 503);
    assert!(text.starts_with("starting"), "{text}");
    assert_eq!(body(call("/healthz")).await, (200, "ok\n".to_owned()));
    let (_, dump) = body(call("/config_dump")).await;
    assert!(dump.contains("\"state\": \"starting\""), "{dump}");

    state.set_ready(None, &Default::default());
    assert_eq!(body(call("/readyz")).await, (200, "ready\n".to_owned()));

    state.set_draining();
    let (status, text) = body(call("/readyz")).await;
    assert_eq!((status, text.as_str()), (503, "draining: shutting down\n"));
}
