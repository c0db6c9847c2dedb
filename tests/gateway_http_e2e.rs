//! End to end with real processes and real upstreams: two `causeway gateway`
//! processes (east and west, separate CAs, every file made by `causeway ca`
//! and `causeway bundle export`), an HTTP upstream, a gRPC upstream and a
//! TCP echo upstream, all on loopback. In-cluster calls go through east
//! alone; cross-cluster calls through east and west over QUIC. Every process
//! is killed by this test, by its pid, even when an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use causeway_trust::tls::{SvidSource, client_config};
use causeway_trust::{
    BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Svid, TrustBundle,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::FRONTEND;
use support::client::{request, send, send_on};
use support::pair::{EAST_GW, NORTH_GW, WEST_GW, connect_as_east, credentials};
use support::process::Gateway;
use support::upstreams::{grpc_upstream, http_upstream, nothing, silent, tcp_echo};

const BATCH: &str = "spiffe://east.acme.example/ns/batch/sa/job";

/// Credentials in a temporary directory, and every upstream running.
async fn setup() -> (tempfile::TempDir, Upstreams) {
    let t = support::tmp();
    credentials(t.path());
    let u = Upstreams {
        west_http: http_upstream("west-payments").await,
        west_grpc: grpc_upstream().await,
        west_tcp: tcp_echo("ledger").await,
        east_http: http_upstream("east-inventory").await,
        silent: silent().await,
        nothing: nothing(),
    };
    (t, u)
}

struct Upstreams {
    west_http: SocketAddr,
    west_grpc: SocketAddr,
    west_tcp: SocketAddr,
    east_http: SocketAddr,
    silent: SocketAddr,
    nothing: SocketAddr,
}

fn west_config(d: &Path, u: &Upstreams) -> std::path::PathBuf {
    let path = d.join("west.yaml");
    fs::write(
        &path,
        format!(
            r#"
trust_domain: west.globex.example
id: {WEST_GW}
svid: {{cert: west-gw.pem, key: west-gw.key}}
bundles:
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
peer_listener: {{listen: "127.0.0.1:0"}}
admin: {{listen: "127.0.0.1:0"}}
services:
  - {{name: payments, port: 8080, endpoints: ["{}"]}}
  - {{name: payments, port: 8081, protocol: http2, endpoints: ["{0}"]}}
  - {{name: health, port: 50051, protocol: http2, endpoints: ["{}"]}}
  - {{name: ledger, port: 5432, endpoints: ["{}"]}}
peers:
  - name: east
    trust_domain: east.acme.example
    gateways:
      - {{address: "127.0.0.1:9", id: {EAST_GW}}}
authorization:
  - service: payments
    allow: [{{id: "{FRONTEND}"}}]
  - service: health
    allow: [{{trust_domain: east.acme.example}}]
  - service: ledger
    allow: [{{id: "{FRONTEND}"}}]
"#,
            u.west_http, u.west_grpc, u.west_tcp
        ),
    )
    .unwrap();
    path
}

fn east_config(d: &Path, u: &Upstreams, west: SocketAddr) -> std::path::PathBuf {
    let path = d.join("east.yaml");
    fs::write(
        &path,
        format!(
            r#"
trust_domain: east.acme.example
id: {EAST_GW}
svid: {{cert: east-gw.pem, key: east-gw.key}}
bundles:
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
admin: {{listen: "127.0.0.1:0"}}
listeners:
  - {{name: web, listen: "127.0.0.1:0", protocol: http, caller: {{identity: "{FRONTEND}"}}}}
  - {{name: batch, listen: "127.0.0.1:0", protocol: http, caller: {{identity: "{BATCH}"}}}}
  - {{name: mtls, listen: "127.0.0.1:0", protocol: http, caller: {{mtls: true}}}}
  - {{name: ledger, listen: "127.0.0.1:0", protocol: tcp, service: ledger.west, port: 5432, caller: {{identity: "{FRONTEND}"}}}}
services:
  - {{name: inventory, port: 8080, endpoints: ["{}"]}}
  - {{name: slow, port: 8080, endpoints: ["{}"]}}
  - {{name: gone, port: 8080, endpoints: ["{}"]}}
imports:
  - {{name: payments.west, port: 80, peer: west, remote_service: payments, remote_port: 8080}}
  - {{name: payments-h2.west, port: 80, peer: west, remote_service: payments, remote_port: 8081}}
  - {{name: health.west, port: 50051, peer: west, remote_service: health}}
  - {{name: ledger.west, port: 5432, peer: west, remote_service: ledger}}
peers:
  - name: west
    trust_domain: west.globex.example
    gateways:
      - {{address: "{west}", id: {WEST_GW}}}
authorization:
  - service: "*"
    allow: [{{id: "{FRONTEND}"}}]
limits: {{handshake_timeout: 2s, request_timeout: 1s, connect_timeout: 1s}}
"#,
            u.east_http, u.silent, u.nothing
        ),
    )
    .unwrap();
    path
}

/// A third trust domain's gateway, which west has never heard of, dialling
/// west as if it were a peer.
fn north_config(d: &Path, west: SocketAddr) -> std::path::PathBuf {
    let path = d.join("north.yaml");
    fs::write(
        &path,
        format!(
            r#"
trust_domain: north.initech.example
id: {NORTH_GW}
svid: {{cert: north-gw.pem, key: north-gw.key}}
bundles:
  - {{trust_domain: north.initech.example, file: north.bundle.json}}
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
admin: {{listen: "127.0.0.1:0"}}
listeners:
  - {{name: web, listen: "127.0.0.1:0", protocol: http, caller: {{identity: "spiffe://north.initech.example/ns/x/sa/y"}}}}
imports:
  - {{name: payments.west, port: 80, peer: west, remote_service: payments, remote_port: 8080}}
peers:
  - name: west
    trust_domain: west.globex.example
    gateways:
      - {{address: "{west}", id: {WEST_GW}}}
limits: {{handshake_timeout: 2s}}
"#
        ),
    )
    .unwrap();
    path
}

fn xfcc(by: &str, uri: &str) -> String {
    format!("By={by};URI={uri}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_grpc_and_tcp_calls_in_cluster_and_across_trust_domains() {
    let (t, u) = setup().await;
    let d = t.path();
    let west = Gateway::start(&west_config(d, &u), d.join("west.log"));
    let east = Gateway::start(
        &east_config(d, &u, west.addr("/peer_listener")),
        d.join("east.log"),
    );
    let web = east.addr("/listeners/web");
    let logs = || {
        format!(
            "east log:\n{}\nwest log:\n{}",
            east.log_text(),
            west.log_text()
        )
    };

    // In-cluster, HTTP/1.1: the upstream sees the caller in XFCC, set by east;
    // the XFCC the caller forged is gone; its traceparent is kept.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut req = request("inventory", "/items?id=7", b"");
    req.headers_mut().insert(
        "x-forwarded-client-cert",
        "URI=spiffe://east.acme.example/ns/admin/sa/root"
            .parse()
            .unwrap(),
    );
    req.headers_mut().insert("traceparent", tp.parse().unwrap());
    let a = send(web, req, false).await;
    assert_eq!(a.status, 200, "{a:?}\n{}", logs());
    assert_eq!(a.header("x-seen-by"), "east-inventory");
    assert_eq!(a.header("x-seen-xfcc"), xfcc(EAST_GW, FRONTEND));
    assert_eq!(a.header("x-seen-traceparent"), tp);
    assert_eq!(a.header("x-seen-path"), "/items?id=7");

    // Cross-cluster, HTTP/1.1, with a 1 MiB body: west sets XFCC; the request
    // id and trace survive both hops; a trace is started when none is sent.
    let big = vec![b'x'; 1 << 20];
    let mut req = request("payments.west", "/pay", &big);
    req.headers_mut()
        .insert("x-request-id", "order-42".parse().unwrap());
    req.headers_mut().insert("traceparent", tp.parse().unwrap());
    let a = send(web, req, false).await;
    assert_eq!(a.status, 200, "{a:?}\n{}", logs());
    assert_eq!(a.header("x-seen-by"), "west-payments");
    assert_eq!(a.header("x-seen-xfcc"), xfcc(WEST_GW, FRONTEND));
    assert_eq!(a.header("x-seen-request-id"), "order-42");
    assert_eq!(a.header("x-seen-traceparent"), tp);
    assert_eq!(a.header("x-seen-version"), "HTTP/1.1");
    assert_eq!(a.header("x-seen-method"), "POST");
    assert_eq!(a.body.len(), big.len());
    let a = send(web, request("payments.west", "/", b""), false).await;
    let started = a.header("x-seen-traceparent");
    assert!(
        started.starts_with("00-") && started.len() == 55,
        "{started:?}"
    );

    // Cross-cluster, h2c, to the port west declares HTTP/2: the upstream
    // gets HTTP/2, and trailers come back. (To the port declared HTTP/1.1,
    // the same h2c caller's request reaches the upstream as HTTP/1.1.)
    let a = send(web, request("payments.west:80", "/", b""), true).await;
    assert_eq!(a.status, 200, "{a:?}\n{}", logs());
    assert_eq!(a.header("x-seen-version"), "HTTP/1.1");
    let mut req = request("payments-h2.west", "/t", b"abc");
    req.headers_mut()
        .insert("x-want-trailers", "1".parse().unwrap());
    let a = send(web, req, true).await;
    assert_eq!(a.status, 200, "{a:?}\n{}", logs());
    assert_eq!(a.header("x-seen-version"), "HTTP/2.0");
    assert_eq!(a.body.as_ref(), b"abc");
    assert_eq!(
        a.trailers
            .as_ref()
            .and_then(|t| t.get("x-body-len"))
            .unwrap(),
        "3"
    );

    // gRPC through both gateways: a unary call (status in trailers) and a
    // server stream.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{web}"))
        .unwrap()
        .origin("http://health.west:50051".parse().unwrap())
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let check = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "causeway.test".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", logs()));
    assert_eq!(
        check.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        unknown.code(),
        tonic::Code::NotFound,
        "grpc-status from the upstream's trailers"
    );
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "causeway.test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(
        first.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // TCP through both gateways.
    let mut tcp = TcpStream::connect(east.addr("/listeners/ledger"))
        .await
        .unwrap();
    tcp.write_all(b"entry").await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut got = Vec::new();
    tcp.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ledger|entry");

    // Refusals: each with its status and reason.
    let batch = east.addr("/listeners/batch");
    let a = send(batch, request("payments.west", "/", b""), false).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-causeway-refusal")),
        (403, "denied"),
        "west's rules: {a:?}"
    );
    let a = send(batch, request("inventory", "/", b""), false).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-causeway-refusal")),
        (403, "denied"),
        "east's rules: {a:?}"
    );
    let a = send(web, request("nowhere", "/", b""), false).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-causeway-refusal")),
        (404, "no_route")
    );
    let a = send(web, request("gone", "/", b""), false).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-causeway-refusal")),
        (503, "unavailable")
    );
    let t0 = std::time::Instant::now();
    let a = send(web, request("slow", "/", b""), false).await;
    assert_eq!(
        (a.status.as_u16(), a.header("x-causeway-refusal")),
        (504, "timeout")
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    let west_log = west.log_text();
    assert!(
        west_log.contains("reason=\"denied\""),
        "west logs the refusal:\n{west_log}"
    );
    // ... and both gateways count it, each from its side.
    let sample = |direction: &str, td: &str, result: &str, service: &str| {
        format!(
            "causeway_gateway_requests_total{{direction=\"{direction}\",peer_trust_domain=\"{td}\",result=\"{result}\",service=\"{service}\"}}"
        )
    };
    let (east_td, west_td) = ("east.acme.example", "west.globex.example");
    assert_eq!(
        west.metric(&sample("inbound", east_td, "denied", "payments")),
        1.0,
        "{}",
        west.admin_get("/metrics").1
    );
    assert_eq!(
        east.metric(&sample("outbound", west_td, "peer_denied", "payments.west")),
        1.0,
        "{}",
        east.admin_get("/metrics").1
    );
    assert_eq!(
        east.metric(&sample("outbound", east_td, "denied", "inventory")),
        1.0
    );
    assert!(east.metric(&sample("outbound", west_td, "ok", "payments.west")) >= 3.0);
    assert!(west.metric(&sample("inbound", east_td, "ok", "payments")) >= 3.0);

    // The mTLS listener takes the caller's identity from its SVID; XFCC
    // carries the certificate's hash. A west workload is refused.
    let mtls = east.addr("/listeners/mtls");
    let a = mtls_call(d, "frontend", mtls, request("inventory", "/", b""))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{a:?}\n{}", logs());
    let seen = a.header("x-seen-xfcc");
    assert!(
        seen.starts_with(&format!("By={EAST_GW};Hash="))
            && seen.ends_with(&format!(";URI={FRONTEND}")),
        "{seen}"
    );
    assert!(
        mtls_call(d, "west-frontend", mtls, request("inventory", "/", b""))
            .await
            .is_none()
    );
    assert!(
        east.log_text().contains("unknown_trust_domain")
            || east.log_text().contains("unexpected_id"),
        "{}",
        logs()
    );

    // A third trust domain's gateway is refused by west in the handshake;
    // its caller gets a 503.
    let north = Gateway::start(
        &north_config(d, west.addr("/peer_listener")),
        d.join("north.log"),
    );
    let a = send(
        north.addr("/listeners/web"),
        request("payments.west", "/", b""),
        false,
    )
    .await;
    assert_eq!(a.status, 503, "{a:?}\nnorth log:\n{}", north.log_text());
    let west_log = west.log_text();
    assert!(
        west_log.contains("reason=\"unknown_trust_domain\"")
            && west_log.contains("north.initech.example"),
        "{west_log}"
    );
    let (_, metrics) = west.admin_get("/metrics");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("causeway_gateway_handshake_failures_total")
                && l.contains("unknown_trust_domain")
                && !l.ends_with(" 0")
        ),
        "west counts the refused handshake:\n{metrics}"
    );
}

/// One HTTP/1.1 request over mTLS with the SVID at `d/<svid>.pem`; None if
/// the handshake or the request fails.
async fn mtls_call(
    d: &Path,
    svid: &str,
    addr: SocketAddr,
    req: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Option<support::client::Answer> {
    let svid = Svid::from_pem(
        &fs::read(d.join(format!("{svid}.pem"))).unwrap(),
        &fs::read(d.join(format!("{svid}.key"))).unwrap(),
    )
    .unwrap();
    let td = svid.spiffe_id().trust_domain();
    let own = TrustBundle::parse(
        td.clone(),
        &fs::read(d.join(format!(
            "{}.bundle.json",
            td.as_str().split('.').next().unwrap()
        )))
        .unwrap(),
    )
    .unwrap();
    let east = TrustBundle::parse(
        causeway_trust::TrustDomain::new("east.acme.example").unwrap(),
        &fs::read(d.join("east.bundle.json")).unwrap(),
    )
    .unwrap();
    let mut set = BundleSet::new();
    set.insert(east).unwrap();
    let _ = set.insert(own);
    let verifier = SpiffeVerifier::new(
        SharedBundles::new(set),
        Expected::ids([SpiffeId::workload(EAST_GW).unwrap()]),
    );
    let config = client_config(
        &SvidSource::new(svid).unwrap(),
        Arc::new(verifier),
        &[b"http/1.1"],
    )
    .unwrap();
    let tcp = TcpStream::connect(addr).await.ok()?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            ServerName::try_from("gateway.causeway.invalid").unwrap(),
            tcp,
        )
        .await
        .ok()?;
    let answer = tokio::spawn(send_on(tls, req, false)).await.ok()?;
    Some(answer)
}

/// West, as a real process, refuses what a genuine east gateway asserts
/// about a caller outside east's trust domain: an HTTP stream gets a 403
/// naming the reason, a TCP stream is reset with the REFUSED code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_outside_the_peer_gateways_domain_is_refused() {
    use causeway_gateway::transport::frame::FrameReader;
    use causeway_gateway::transport::header::{Protocol, RequestHead, StreamHeader};
    use causeway_gateway::transport::quic::codes;

    let (t, u) = setup().await;
    let d = t.path();
    let west = Gateway::start(&west_config(d, &u), d.join("west.log"));

    // East's real gateway credentials, used by hand.
    let (endpoint, conn) = connect_as_east(d, west.addr("/peer_listener")).await;
    let header = |caller: &str, protocol| StreamHeader {
        service: causeway_gateway::service::ServiceName::new(if protocol == Protocol::Tcp {
            "ledger"
        } else {
            "payments"
        })
        .unwrap(),
        port: if protocol == Protocol::Tcp {
            5432
        } else {
            8080
        },
        caller: SpiffeId::workload(caller).unwrap(),
        traceparent: None,
        tracestate: None,
        deadline: None,
        request_id: "forged".into(),
        protocol,
        request: (protocol == Protocol::Http).then(|| RequestHead {
            method: http::Method::GET,
            path: http::uri::PathAndQuery::from_static("/"),
            headers: http::HeaderMap::new(),
            end_stream: true,
            upgrade: false,
        }),
    };
    let foreign = "spiffe://north.initech.example/ns/x/sa/y";

    // HTTP: a 403 naming the reason.
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&header(foreign, Protocol::Http).encode())
        .await
        .unwrap();
    send.finish().unwrap();
    let mut reader = FrameReader::new(recv, 64 * 1024);
    let resp = reader.response_head().await.unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(resp.headers["x-causeway-refusal"], "foreign_caller");

    // TCP: the stream is reset with REFUSED; the connection carries on.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&header(foreign, Protocol::Tcp).encode())
        .await
        .unwrap();
    send.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    match recv.read(&mut buf).await {
        Err(quinn::ReadError::Reset(code)) => assert_eq!(code, codes::REFUSED),
        other => panic!("expected a reset, got {other:?}"),
    }
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&header(FRONTEND, Protocol::Tcp).encode())
        .await
        .unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    let got = recv.read_to_end(1024).await.unwrap();
    assert_eq!(
        got, b"ledger|hello",
        "an allowed caller on the same connection"
    );
    let log = west.log_text();
    assert!(
        log.contains("reason=\"foreign_caller\"") && log.contains(foreign),
        "{log}"
    );
    endpoint.close(0u32.into(), b"done");
}

/// Load, bounded: 32 callers, each on its own keep-alive connection, call
/// west's payments through both gateway processes for 10 s. Every call must
/// come back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_callers_for_ten_seconds_through_two_gateways_without_an_error() {
    let (t, u) = setup().await;
    let d = t.path();
    let west = Gateway::start(&west_config(d, &u), d.join("west.log"));
    let east = Gateway::start(
        &east_config(d, &u, west.addr("/peer_listener")),
        d.join("east.log"),
    );
    let calls = support::load::keep_alive_callers(
        east.addr("/listeners/web"),
        "payments.west",
        32,
        Duration::from_secs(10),
    )
    .await;
    let total = calls.total();
    assert!(
        calls.failures.is_empty(),
        "{} failed calls after {total} good ones, first: {:?}\neast log tail:\n{}",
        calls.failures.len(),
        calls.failures.first(),
        east.log_text()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        calls.ok.iter().all(|ok| *ok > 0),
        "every caller got through: {:?}",
        calls.ok
    );
    #[allow(
        clippy::print_stderr,
        reason = "the figure a reader of the test output wants"
    )]
    {
        eprintln!("32 callers, 10 s, two gateways: {total} calls, 0 errors");
    }
}
