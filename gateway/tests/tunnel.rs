//! Real QUIC with mTLS on loopback between an east gateway and a west
//! gateway: the inbound checks in order, refusals that reset one stream and
//! leave the connection alone, garbage datagrams, and handshake refusals
//! that reach the observer with their typed reason.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::{Arc, Mutex};

use causeway_gateway::config::{GatewayConfig, Limits};
use causeway_gateway::proxy::inbound::accept::{Inbound, bind_peer_endpoint};
use causeway_gateway::proxy::inbound::check;
use causeway_gateway::service::ServiceName;
use causeway_gateway::transport::header::{Protocol, StreamHeader};
use causeway_gateway::transport::quic::{codes, quic_client_config};
use causeway_trust::testing::TestDomain;
use causeway_trust::tls::SvidSource;
use causeway_trust::{BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Svid};

fn west_config(payments: &str) -> String {
    r#"
trust_domain: west.globex.example
id: spiffe://west.globex.example/gateway/west-1
svid: {cert: unused.pem, key: unused.key}
bundles:
  - {trust_domain: west.globex.example, file: unused}
  - {trust_domain: east.acme.example, file: unused}
services:
  - {name: payments, port: 8080, endpoints: ["PAYMENTS"]}
  - {name: inventory, port: 9000, endpoints: ["127.0.0.1:1"]}
  - {name: ledger, port: 5432, endpoints: ["127.0.0.1:9"]}
peers:
  - name: east
    trust_domain: east.acme.example
    gateways:
      - {address: "127.0.0.1:9", id: spiffe://east.acme.example/gateway/east-1}
authorization:
  - service: payments
    ports: [8080]
    allow:
      - id: spiffe://east.acme.example/ns/shop/sa/frontend
  - service: inventory
    allow:
      - trust_domain: east.acme.example
"#
    .replace("PAYMENTS", payments)
}

struct West {
    addr: SocketAddr,
    refusals: Arc<Mutex<Vec<String>>>,
    _endpoint: quinn::Endpoint,
}

/// The west gateway's peer listener, served by the product's inbound path.
async fn start_west(east: &TestDomain, west: &TestDomain) -> West {
    start_west_with(east, west, "").await
}

/// The same, with more config (such as limits) appended.
async fn start_west_with(east: &TestDomain, west: &TestDomain, extra: &str) -> West {
    let upstream = support::payments_upstream().await;
    let text = west_config(&upstream.to_string()) + extra;
    let config = Arc::new(GatewayConfig::from_yaml("west.yaml", &text, Path::new("/")).unwrap());
    let refusals = Arc::new(Mutex::new(Vec::new()));
    let seen = refusals.clone();
    let bundles =
        SharedBundles::new(BundleSet::from_bundles([west.bundle(), east.bundle()]).unwrap());
    let observer: causeway_trust::verify::RefusalObserver =
        Arc::new(move |e, _| seen.lock().unwrap().push(e.reason().to_owned()));
    let svid = SvidSource::new(west.svid("/gateway/west-1")).unwrap();
    let loopback = "127.0.0.1:0".parse().unwrap();
    let endpoint = bind_peer_endpoint(&config, &svid, &bundles, Some(observer), loopback).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(Arc::new(Inbound::new(config)).serve_endpoint(endpoint.clone()));
    West {
        addr,
        refusals,
        _endpoint: endpoint,
    }
}

/// A client endpoint presenting `svid`, expecting west's gateway.
async fn dial(
    svid: Svid,
    bundles: BundleSet,
    west: &TestDomain,
    addr: SocketAddr,
) -> Result<quinn::Connection, String> {
    let verifier = SpiffeVerifier::new(
        SharedBundles::new(bundles),
        Expected::ids([west.id("/gateway/west-1")]),
    );
    let client = quic_client_config(
        &SvidSource::new(svid).unwrap(),
        Arc::new(verifier),
        &Limits::default(),
    )
    .unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(client);
    let connecting = ep
        .connect(addr, "west.gateway.causeway.invalid")
        .map_err(|e| e.to_string())?;
    let conn = connecting.await.map_err(|e| e.to_string())?;
    // With TLS 1.3 the server may refuse our certificate after the client
    // considers the handshake done: a first stream tells.
    Ok(conn)
}

fn header(caller: &str, service: &str, port: u16) -> StreamHeader {
    StreamHeader {
        service: ServiceName::new(service).unwrap(),
        port,
        caller: SpiffeId::new(caller).unwrap(),
        traceparent: None,
        tracestate: None,
        deadline: None,
        request_id: "t".into(),
        protocol: Protocol::Tcp,
        request: None,
    }
}

/// Opens a stream with raw bytes; returns the reply, or the code the peer
/// reset or stopped the stream with (None for any other failure).
async fn call(conn: &quinn::Connection, bytes: &[u8]) -> Result<Vec<u8>, Option<quinn::VarInt>> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|_| None)?;
    match send.write_all(bytes).await {
        Ok(()) => {}
        Err(quinn::WriteError::Stopped(code)) => return Err(Some(code)),
        Err(_) => return Err(None),
    }
    let _ = send.finish();
    match recv.read_to_end(1 << 16).await {
        Ok(v) => Ok(v),
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => Err(Some(code)),
        Err(_) => Err(None),
    }
}

fn with_payload(h: &StreamHeader, payload: &[u8]) -> Vec<u8> {
    let mut v = h.encode();
    v.extend_from_slice(payload);
    v
}

const FRONTEND: &str = "spiffe://east.acme.example/ns/shop/sa/frontend";

#[tokio::test]
async fn a_stream_passes_the_checks_and_refusals_reset_only_their_stream() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::with_intermediate("west.globex.example");
    let w = start_west(&east, &west).await;
    let bundles = BundleSet::from_bundles([east.bundle(), west.bundle()]).unwrap();
    let conn = dial(east.svid("/gateway/east-1"), bundles, &west, w.addr)
        .await
        .unwrap();

    let ok = call(
        &conn,
        &with_payload(&header(FRONTEND, "payments", 8080), b"hello"),
    )
    .await;
    assert_eq!(ok.unwrap(), b"payments|hello");

    let reset = Some;
    // Policy: the batch job is not allowed to reach payments.
    let denied = call(
        &conn,
        &with_payload(
            &header(
                "spiffe://east.acme.example/ns/batch/sa/job",
                "payments",
                8080,
            ),
            b"x",
        ),
    )
    .await;
    assert_eq!(denied.unwrap_err(), reset(codes::REFUSED));
    // An east gateway speaking for a third domain.
    let foreign = call(
        &conn,
        &with_payload(
            &header("spiffe://third.example/ns/a/sa/b", "payments", 8080),
            b"x",
        ),
    )
    .await;
    assert_eq!(foreign.unwrap_err(), reset(codes::REFUSED));
    // No such local service.
    let unknown = call(&conn, &with_payload(&header(FRONTEND, "nothing", 80), b"x")).await;
    assert_eq!(unknown.unwrap_err(), reset(codes::REFUSED));
    // An allowed service whose only endpoint does not answer.
    let dead = call(
        &conn,
        &with_payload(&header(FRONTEND, "inventory", 9000), b"x"),
    )
    .await;
    assert_eq!(dead.unwrap_err(), Some(codes::UNAVAILABLE));
    // A malformed header.
    let garbage = call(&conn, b"GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(garbage.unwrap_err(), reset(codes::HEADER_INVALID));
    let oversized = {
        let mut v = vec![0xCA, 0x57, 1, 0xFF, 0xFF];
        v.extend(std::iter::repeat_n(0u8, 100));
        v
    };
    assert_eq!(
        call(&conn, &oversized).await.unwrap_err(),
        reset(codes::HEADER_INVALID)
    );

    // Garbage datagrams at the server's port disturb nothing.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..(i % 1400) as usize)
            .map(|j| (j as u32 * 31 + i) as u8)
            .collect();
        udp.send_to(&junk, w.addr).unwrap();
    }

    // The same connection still carries calls.
    let again = call(
        &conn,
        &with_payload(&header(FRONTEND, "payments", 8080), b"again"),
    )
    .await;
    assert_eq!(again.unwrap(), b"payments|again");
    assert!(
        w.refusals.lock().unwrap().is_empty(),
        "no handshake was refused"
    );
}

#[test]
fn inbound_checks_refuse_with_their_own_reasons() {
    let config =
        GatewayConfig::from_yaml("west.yaml", &west_config("127.0.0.1:9"), Path::new("/")).unwrap();
    let east_gw = SpiffeId::new("spiffe://east.acme.example/gateway/east-1").unwrap();
    let cases = [
        (
            "spiffe://east.acme.example/gateway/rogue",
            FRONTEND,
            "payments",
            8080,
            "not_a_peer_gateway",
        ),
        (
            "spiffe://east.acme.example/gateway/east-1",
            "spiffe://third.example/x",
            "payments",
            8080,
            "foreign_caller",
        ),
        (
            "spiffe://east.acme.example/gateway/east-1",
            FRONTEND,
            "billing",
            8080,
            "unknown_service",
        ),
        (
            "spiffe://east.acme.example/gateway/east-1",
            FRONTEND,
            "ledger",
            5432,
            "denied",
        ),
        (
            "spiffe://east.acme.example/gateway/east-1",
            FRONTEND,
            "payments",
            9090,
            "unknown_service",
        ),
    ];
    for (gw, caller, service, port, want) in cases {
        let gw = SpiffeId::new(gw).unwrap();
        let got = check::check(&config, &gw, &header(caller, service, port)).unwrap_err();
        assert_eq!(got.reason().as_str(), want, "{got}");
    }
    let ok = check::check(&config, &east_gw, &header(FRONTEND, "payments", 8080)).unwrap();
    assert_eq!(ok.destination.service.as_str(), "payments");
    assert_eq!(ok.principal, None);
}

#[tokio::test]
async fn handshakes_from_strangers_are_refused_and_observed_with_their_reason() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::with_intermediate("west.globex.example");
    let w = start_west(&east, &west).await;

    let third = TestDomain::new("third.example");
    let east_and_west = || BundleSet::from_bundles([east.bundle(), west.bundle()]).unwrap();
    let strangers = [
        // A third domain west holds no bundle for.
        (
            third.svid("/gateway/x"),
            BundleSet::from_bundles([third.bundle(), west.bundle()]).unwrap(),
        ),
        // An east workload that is not a gateway, connecting directly.
        (east.svid("/ns/shop/sa/frontend"), east_and_west()),
        // An expired east gateway SVID.
        (east.expired_svid("/gateway/east-1"), east_and_west()),
    ];
    for (svid, bundles) in strangers {
        // The refusal shows at connect, or (TLS 1.3: the server checks the
        // client last) on the first stream.
        if let Ok(conn) = dial(svid, bundles, &west, w.addr).await {
            let attempt = with_payload(&header(FRONTEND, "payments", 8080), b"x");
            assert!(call(&conn, &attempt).await.is_err());
        }
    }
    let seen = w.refusals.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec!["unknown_trust_domain", "unexpected_id", "expired"]
    );
}

#[tokio::test]
async fn a_peer_over_its_stream_limit_gets_overloaded_on_new_streams_only() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::with_intermediate("west.globex.example");
    let w = start_west_with(&east, &west, "limits: {max_streams_per_peer: 2}\n").await;
    let bundles = BundleSet::from_bundles([east.bundle(), west.bundle()]).unwrap();
    let conn = dial(east.svid("/gateway/east-1"), bundles, &west, w.addr)
        .await
        .unwrap();
    // Two streams held open (the upstream echoes until we finish).
    let mut held = Vec::new();
    for i in 0..2 {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&with_payload(&header(FRONTEND, "payments", 8080), b"hi"))
            .await
            .unwrap();
        let mut buf = [0u8; 11];
        recv.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"payments|hi", "stream {i}");
        held.push((send, recv));
    }
    let third = call(
        &conn,
        &with_payload(&header(FRONTEND, "payments", 8080), b"x"),
    )
    .await;
    assert_eq!(third.unwrap_err(), Some(codes::OVERLOADED));
    // The held streams still work; once one ends, a new stream gets through.
    let (mut send, mut recv) = held.remove(0);
    send.write_all(b"!").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(64).await.unwrap(), b"!");
    let mut again = Err(None);
    for _ in 0..50 {
        again = call(
            &conn,
            &with_payload(&header(FRONTEND, "payments", 8080), b"y"),
        )
        .await;
        if again.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(again.unwrap(), b"payments|y");
}
