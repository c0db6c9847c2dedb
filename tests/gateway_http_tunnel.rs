//! End to end, with real processes on loopback, for the HTTP path between
//! gateways. Each test starts its own pair of `causeway gateway` processes,
//! east and west, with separate CAs made by `causeway ca`
//! ([`support::pair::Pair`]), real upstreams and real clients (tonic, hyper,
//! tokio-tungstenite, quinn). Host `<service>` goes through east alone (in
//! cluster); Host `<service>.west` through east, then west over QUIC. Every
//! process is killed by its pid when its test ends, pass or fail, and every
//! wait is bounded.
//!
//! What the tests hold the gateway to: a service's `protocol` in the
//! gateway file decides what its upstream gets (`http`, the default:
//! HTTP/1.1; `http2`: h2c), whatever the caller spoke; trailers, streaming
//! both ways, deadlines and Upgrade survive the tunnel; a peer's stream with
//! a header the receiver cannot take is reset with a documented code
//! (docs/wire-format.md) and the connection carries on.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use causeway_proto::testing::v1::echo_client::EchoClient;
use causeway_proto::testing::v1::{EchoReply, EchoRequest, Failure};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use support::FRONTEND;
use support::bulk::{Checksum, Pattern, bulk_upstream, checksum};
use support::client::{Answer, collect, h2c, request, send};
use support::echo::{Event, H2Transport, echo_upstream, metadata_text};
use support::pair::{EAST_GW, Pair, Service, WEST_GW, connect_as_east};
use support::upstreams::{Versions, http_upstream, http_upstream_speaking, tcp_echo, ws_echo};

/// A generous bound for one call on loopback.
const CALL: Duration = Duration::from_secs(10);

/// The XFCC the upstream gets: set by the last gateway, naming the caller.
fn xfcc(by: &str) -> String {
    format!("By={by};URI={FRONTEND}")
}

/// A tonic channel to east's listener, for `origin` (the `:authority` that
/// routes the calls).
async fn grpc_channel(pair: &Pair, origin: &str) -> tonic::transport::Channel {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", pair.web()))
        .unwrap()
        .origin(origin.parse().unwrap())
        .timeout(CALL);
    pair.within(CALL, "gRPC channel to east", endpoint.connect())
        .await
        .unwrap()
}

/// Panics with a failed call's status and both gateways' logs.
fn failed<T>(pair: &Pair, origin: &str, kind: &str, status: tonic::Status) -> T {
    panic!("{origin}: {kind}: {status:?}\n{}", pair.logs())
}

fn echo_request(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.into(),
        ..Default::default()
    }
}

/// Unary, server streaming, client streaming and bidirectional streaming
/// calls from a tonic client to a tonic server, through east alone and
/// through east and west: every message arrives, in order, and the
/// upstream sees the caller's identity set by the gateway in front of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_every_call_kind_in_cluster_and_through_two_gateways() {
    let up = echo_upstream().await;
    let pair = Pair::start(&[Service::new("echo", 50051, up.addr).protocol("http2")]);
    for (origin, by) in [
        ("http://echo:50051", EAST_GW),
        ("http://echo.west:50051", WEST_GW),
    ] {
        let mut client = EchoClient::new(grpc_channel(&pair, origin).await);

        // Unary.
        let reply = pair
            .within(CALL, "unary", client.unary(echo_request("hello")))
            .await
            .unwrap_or_else(|e| failed(&pair, origin, "unary", e))
            .into_inner();
        assert_eq!(
            reply,
            EchoReply {
                message: "hello".into(),
                index: 0,
                xfcc: xfcc(by),
            },
            "{origin}"
        );

        // Server streaming: 50 replies, in order.
        let req = EchoRequest {
            message: "tick".into(),
            count: 50,
            ..Default::default()
        };
        let replies = pair
            .within(CALL, "server streaming", async {
                let mut stream = client.server_stream(req).await?.into_inner();
                let mut got = Vec::new();
                while let Some(r) = stream.message().await? {
                    got.push((r.index, r.message));
                }
                Ok(got)
            })
            .await
            .unwrap_or_else(|e| failed(&pair, origin, "server streaming", e));
        let want: Vec<_> = (0..50).map(|i| (i, format!("tick {i}"))).collect();
        assert_eq!(replies, want, "{origin}");

        // Client streaming: 20 messages, one reply once the stream ends.
        let messages = (0..20).map(|i| echo_request(&format!("m{i}")));
        let reply = pair
            .within(
                CALL,
                "client streaming",
                client.client_stream(tokio_stream::iter(messages)),
            )
            .await
            .unwrap_or_else(|e| failed(&pair, origin, "client streaming", e))
            .into_inner();
        let joined: Vec<_> = (0..20).map(|i| format!("m{i}")).collect();
        assert_eq!(
            (reply.index, reply.message.as_str()),
            (20, joined.join(",").as_str()),
            "{origin}"
        );

        // Bidirectional: each reply comes back before the next message is
        // sent, so neither direction may wait for the other to end.
        let (tx, rx) = mpsc::channel(1);
        let mut replies = pair
            .within(CALL, "bidi open", client.bidi(ReceiverStream::new(rx)))
            .await
            .unwrap_or_else(|e| failed(&pair, origin, "bidi", e))
            .into_inner();
        for i in 0..10u32 {
            tx.send(echo_request(&format!("ping {i}"))).await.unwrap();
            let r = pair
                .within(CALL, "bidi reply", replies.message())
                .await
                .unwrap_or_else(|e| failed(&pair, origin, "bidi", e))
                .expect("a reply per message");
            assert_eq!(
                (r.index, r.message.as_str(), r.xfcc.as_str()),
                (i, format!("ping {i}").as_str(), xfcc(by).as_str()),
                "{origin}"
            );
        }
        drop(tx);
        let end = pair.within(CALL, "bidi end", replies.message()).await;
        assert!(
            matches!(end, Ok(None)),
            "{origin}: the call ends OK: {end:?}"
        );
    }
}

/// A non-OK status, with a message (not ASCII, so percent-encoded on the
/// wire) and custom metadata, arrives at the client as the upstream sent
/// it: from a trailers-only answer (unary) and from the trailers after
/// streamed replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_message_and_trailer_metadata_arrive_intact() {
    let up = echo_upstream().await;
    let pair = Pair::start(&[Service::new("echo", 50051, up.addr).protocol("http2")]);
    let message = "quota of 3 calls used; résumé after 5 s ✓";
    let fail = Failure {
        code: Code::ResourceExhausted as i32,
        message: message.into(),
        metadata: [
            ("x-quota-left".to_owned(), "0".to_owned()),
            ("x-retry-after-ms".to_owned(), "5000".to_owned()),
        ]
        .into(),
    };
    let check = |origin: &str, kind: &str, status: &tonic::Status| {
        assert_eq!(
            (status.code(), status.message()),
            (Code::ResourceExhausted, message),
            "{origin} {kind}: {status:?}\n{}",
            pair.logs()
        );
        let md = metadata_text(status.metadata());
        for (k, v) in &fail.metadata {
            assert_eq!(
                md.get(k),
                Some(v),
                "{origin} {kind}: custom metadata {k}: {md:?}"
            );
        }
    };
    for origin in ["http://echo:50051", "http://echo.west:50051"] {
        let mut client = EchoClient::new(grpc_channel(&pair, origin).await);
        let req = EchoRequest {
            message: "over quota".into(),
            fail: Some(fail.clone()),
            ..Default::default()
        };
        let status = pair
            .within(CALL, "unary", client.unary(req))
            .await
            .expect_err("the status the upstream answered");
        check(origin, "unary", &status);

        // Three replies, then the status in the trailers.
        let req = EchoRequest {
            message: "over quota".into(),
            count: 3,
            fail: Some(fail.clone()),
        };
        let (replies, status) = pair
            .within(CALL, "server streaming", async {
                let mut stream = client.server_stream(req).await.unwrap().into_inner();
                let mut replies = 0;
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => replies += 1,
                        Ok(None) => panic!("{origin}: the stream ended OK"),
                        Err(status) => break (replies, status),
                    }
                }
            })
            .await;
        assert_eq!(replies, 3, "{origin}: the replies before the trailers");
        check(origin, "server streaming", &status);
    }
}

/// A deadline the caller sets (`grpc-timeout`, 500 ms) is carried to the
/// far side and ends the call there: the upstream's request stream is
/// reset a little after the deadline, though the caller keeps its request
/// stream open and its own limit is 10 s.
///
/// The client runs on [`H2Transport`] (a bare h2c connection) because
/// tonic's `Channel` would enforce `grpc-timeout` locally and end the call
/// itself; the upstream is not `tonic::transport::Server` for the same
/// reason (see support::echo). So only the gateways can end this call in
/// time.
///
/// What the gRPC caller sees, soon after the deadline: DEADLINE_EXCEEDED
/// if the gateway answers in gRPC's terms (`grpc-status: 4`); otherwise the
/// gateway's 504 with `x-causeway-refusal: timeout` in the status metadata,
/// which tonic reports as UNAVAILABLE (gRPC's HTTP-to-status mapping) when
/// the 504 has no body, and as INTERNAL ("invalid compression flag ...
/// status: 504 Gateway Timeout") when it has a text body, as the gateway's
/// 504 has today.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_deadline_ends_the_call_at_the_far_side() {
    let deadline = Duration::from_millis(500);
    let mut up = echo_upstream().await;
    let pair = Pair::start(&[Service::new("echo", 50051, up.addr).protocol("http2")]);
    let transport = pair
        .within(CALL, "h2c to east", H2Transport::connect(pair.web()))
        .await;
    let mut client = EchoClient::with_origin(transport, "http://echo.west:50051".parse().unwrap());

    let (tx, rx) = mpsc::channel(1);
    tx.send(echo_request("first")).await.unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.set_timeout(deadline);
    let started = Instant::now();
    let call = tokio::spawn(async move {
        let r = client.client_stream(req).await;
        (r, Instant::now())
    });

    let began = pair.within(CALL, "the call reaching the upstream", up.events.recv());
    assert!(
        matches!(began.await, Some(Event::ClientStreamBegan)),
        "{}",
        pair.logs()
    );
    let ended = pair
        .within(CALL, "the upstream seeing the call end", up.events.recv())
        .await;
    let Some(Event::ClientStreamEnded { at, how }) = ended else {
        panic!("{ended:?}\n{}", pair.logs());
    };
    let after = at - started;
    assert!(
        how.is_err(),
        "the request stream is reset, not ended as if the caller had finished: {how:?} after {after:?}\n{}",
        pair.logs()
    );
    assert!(
        after >= deadline - Duration::from_millis(50) && after <= deadline + Duration::from_secs(1),
        "the upstream saw the call end {after:?} after it started; the deadline was {deadline:?}\n{}",
        pair.logs()
    );

    let (result, answered) = pair
        .within(CALL, "the caller's answer", call)
        .await
        .unwrap();
    let status = result.expect_err("the call ends with a status");
    let refusal = status
        .metadata()
        .get("x-causeway-refusal")
        .and_then(|v| v.to_str().ok());
    assert!(
        status.code() == Code::DeadlineExceeded || refusal == Some("timeout"),
        "DEADLINE_EXCEEDED, or the gateway's 504 with x-causeway-refusal: timeout: {status:?}"
    );
    assert!(
        answered - started <= deadline + Duration::from_secs(1),
        "the caller had its answer {:?} after it started",
        answered - started
    );
    // The caller's request stream was open all along.
    drop(tx);
}

/// 100 requests at once on one h2c connection through `host`: each
/// answered 200 by `upstream` with its own body, the upstream having
/// spoken `version`.
async fn hundred_streams(pair: &Pair, host: &str, upstream: &str, version: &str) {
    let tx = pair.within(CALL, "h2c to east", h2c(pair.web())).await;
    let calls: Vec<_> = (0..100)
        .map(|i| {
            let mut tx = tx.clone();
            let mut req = request(host, &format!("/s/{i}"), format!("stream {i}").as_bytes());
            // HTTP/2 names the service in :authority.
            req.headers_mut().remove("host");
            tokio::spawn(async move {
                tx.ready().await?;
                let resp = tx.send_request(req).await?;
                Ok::<_, hyper::Error>(collect(resp).await)
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let a: Answer = pair
            .within(CALL * 3, "one of 100 streams", call)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{host} stream {i}: {e}\n{}", pair.logs()));
        assert_eq!(a.status, 200, "{host} stream {i}: {a:?}\n{}", pair.logs());
        assert_eq!(
            (
                a.body.as_ref(),
                a.header("x-seen-path"),
                a.header("x-seen-by"),
                a.header("x-seen-version")
            ),
            (
                format!("stream {i}").as_bytes(),
                format!("/s/{i}").as_str(),
                upstream,
                version
            ),
            "{host} stream {i}"
        );
    }
}

/// A service with the default protocol gets HTTP/1.1, even from an h2c
/// caller: 100 concurrent streams on one connection reach an upstream that
/// refuses HTTP/2, through one gateway and through two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_caller_with_a_hundred_streams_reaches_an_http1_only_upstream() {
    let up = http_upstream_speaking("legacy", Versions::Http1Only).await;
    let pair = Pair::start(&[Service::new("legacy", 8080, up)]);
    hundred_streams(&pair, "legacy", "legacy", "HTTP/1.1").await;
    hundred_streams(&pair, "legacy.west", "legacy", "HTTP/1.1").await;
}

/// A service declared `protocol: http2` gets h2c whatever the caller
/// spoke: 100 concurrent h2c streams on one connection, and HTTP/1.1
/// callers, reach an upstream that refuses HTTP/1.1, through one gateway
/// and through two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_only_upstream_gets_h2c_whatever_the_caller_spoke() {
    let up = http_upstream_speaking("modern", Versions::Http2Only).await;
    let pair = Pair::start(&[Service::new("modern", 8080, up).protocol("http2")]);
    for host in ["modern", "modern.west"] {
        hundred_streams(&pair, host, "modern", "HTTP/2.0").await;
        let a = pair
            .within(
                CALL,
                "HTTP/1.1 call",
                send(pair.web(), request(host, "/h1", b"from HTTP/1.1"), false),
            )
            .await;
        assert_eq!(a.status, 200, "{host}: {a:?}\n{}", pair.logs());
        assert_eq!(
            (
                a.body.as_ref(),
                a.header("x-seen-version"),
                a.header("x-seen-method")
            ),
            (b"from HTTP/1.1".as_ref(), "HTTP/2.0", "POST"),
            "{host}"
        );
    }
}

/// A WebSocket session (HTTP/1.1 Upgrade) through two gateways: text and
/// binary messages echoed one by one, and the close handshake completed on
/// both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_two_gateways() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let (up, mut ends) = ws_echo().await;
    let pair = Pair::start(&[Service::new("chat", 8080, up)]);
    let tcp = TcpStream::connect(pair.web()).await.unwrap();
    let (mut ws, resp) = pair
        .within(
            CALL,
            "WebSocket handshake",
            tokio_tungstenite::client_async("ws://chat.west/room", tcp),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", pair.logs()));
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers()
            .get("x-seen-xfcc")
            .and_then(|v| v.to_str().ok()),
        Some(xfcc(WEST_GW).as_str()),
        "west set the caller's identity on the upgrade request"
    );

    let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let messages = [
        Message::text("hello"),
        Message::binary(vec![0u8, 1, 2, 0xff]),
        Message::text("ünïcödé ✓"),
        Message::binary(big),
        Message::text("last"),
    ];
    for m in messages {
        pair.within(CALL, "WebSocket send", ws.send(m.clone()))
            .await
            .unwrap();
        let got = pair.within(CALL, "WebSocket echo", ws.next()).await;
        assert_eq!(got.unwrap().unwrap(), m);
    }

    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    pair.within(CALL, "WebSocket close", ws.close(Some(close)))
        .await
        .unwrap();
    let reply = pair.within(CALL, "the server's close", ws.next()).await;
    assert!(
        matches!(&reply, Some(Ok(Message::Close(Some(f)))) if f.code == CloseCode::Normal),
        "the server answers the close: {reply:?}"
    );
    let after = pair.within(CALL, "the end of the session", ws.next()).await;
    assert!(
        after.is_none(),
        "the session ends after the close: {after:?}"
    );
    let end = pair
        .within(CALL, "the server's report", ends.recv())
        .await
        .unwrap();
    let seen = end.map(|f| f.map(|f| (f.code, f.reason.to_string())));
    assert_eq!(
        seen,
        Ok(Some((CloseCode::Normal, "done".to_owned()))),
        "the server got the client's close frame and completed the handshake"
    );
}

type BulkBody = BoxBody<Bytes, std::convert::Infallible>;

/// One request to `bulk.west` on a keep-alive HTTP/1.1 connection.
async fn bulk_call(
    tx: &mut hyper::client::conn::http1::SendRequest<BulkBody>,
    method: &str,
    path: String,
    body: BulkBody,
) -> http::Response<hyper::body::Incoming> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "bulk.west")
        .body(body)
        .unwrap();
    tx.ready().await.unwrap();
    tx.send_request(req).await.unwrap()
}

/// A 64 MiB request body streamed by the client (chunked, made as it is
/// sent) and a 64 MiB response body, through two gateways, arrive whole
/// (count and checksum), and neither gateway's peak resident memory grows
/// by 32 MiB or more: bodies stream, they are not buffered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_through_two_gateways_in_bounded_memory() {
    const SIZE: u64 = 64 << 20;
    const GROWTH_KIB: u64 = 32 << 10;
    let up = bulk_upstream().await;
    let pair = Pair::start(&[Service::new("bulk", 8080, up)]);

    let tcp = TcpStream::connect(pair.web()).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);

    // A small call each way first, so that both gateways have their
    // connections and pools before the baseline.
    let small = http_body_util::Full::new(Bytes::from_static(b"warm")).boxed();
    let resp = pair
        .within(
            CALL,
            "warm-up",
            bulk_call(&mut tx, "POST", "/upload".into(), small),
        )
        .await;
    assert_eq!(resp.status(), 200, "{}", pair.logs());
    pair.within(CALL, "warm-up body", resp.into_body().collect())
        .await
        .unwrap();
    let baseline = (pair.east.peak_rss_kib(), pair.west.peak_rss_kib());

    let expected = Checksum::of_pattern(SIZE);
    let upload = Pattern::new(SIZE, false).boxed();
    let resp = pair
        .within(
            CALL * 12,
            "64 MiB upload",
            bulk_call(&mut tx, "POST", "/upload".into(), upload),
        )
        .await;
    assert_eq!(resp.status(), 200, "{resp:?}\n{}", pair.logs());
    assert_eq!(
        resp.headers()
            .get("x-received")
            .and_then(|v| v.to_str().ok()),
        Some(expected.header().as_str()),
        "what the upstream received"
    );
    pair.within(CALL, "upload answer body", resp.into_body().collect())
        .await
        .unwrap();

    let empty = http_body_util::Empty::new().boxed();
    let resp = pair
        .within(
            CALL,
            "64 MiB download head",
            bulk_call(&mut tx, "GET", format!("/produce/{SIZE}"), empty),
        )
        .await;
    assert_eq!(resp.status(), 200, "{resp:?}\n{}", pair.logs());
    let got = pair
        .within(CALL * 12, "64 MiB download", checksum(resp.into_body()))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", pair.logs()));
    assert_eq!(got, expected, "what the client received");

    for (name, gw, before) in [
        ("east", &pair.east, baseline.0),
        ("west", &pair.west, baseline.1),
    ] {
        let after = gw.peak_rss_kib();
        assert!(
            after.saturating_sub(before) < GROWTH_KIB,
            "{name}'s peak RSS grew from {before} KiB to {after} KiB while 2 x 64 MiB went through"
        );
    }
}

/// Polls `check` every 50 ms until it holds (a counter has no event to
/// wait on); false after `limit`.
async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The application code a peer's stream was refused with: its receive
/// half reset, or its send half stopped.
async fn refusal_code(
    pair: &Pair,
    conn: &quinn::Connection,
    bytes: &[u8],
) -> Result<quinn::VarInt, String> {
    let (mut send, mut recv) = pair
        .within(CALL, "a new stream", conn.open_bi())
        .await
        .unwrap();
    let written = pair.within(CALL, "writing", send.write_all(bytes)).await;
    if let Err(quinn::WriteError::Stopped(code)) = written {
        return Ok(code);
    }
    match pair.within(CALL, "a refusal", recv.read_to_end(4096)).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => Ok(code),
        other => match pair.within(CALL, "a refusal", send.stopped()).await {
            Ok(Some(code)) => Ok(code),
            stopped => Err(format!("read: {other:?}, send half: {stopped:?}")),
        },
    }
}

/// West, as a real process, resets a stream of an unknown wire version
/// and a stream that opens with garbage, each with its documented code
/// (docs/wire-format.md, "Stream error codes"), and the same QUIC
/// connection then carries a good call. West counts both refusals under a
/// closed-set reason, and nothing the peer sent becomes a label.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stream_with_an_unknown_version_or_garbage_is_reset_and_the_connection_carries_on() {
    use causeway_gateway::service::ServiceName;
    use causeway_gateway::transport::header::{Protocol, StreamHeader};
    use causeway_trust::SpiffeId;
    use prost::Message;

    // The documented stream error codes (docs/wire-format.md, "Stream
    // error codes"): HEADER_INVALID for a header that fails a check, and
    // VERSION_UNSUPPORTED, which the new wire format documents for a
    // version the receiver does not speak.
    const HEADER_INVALID: u32 = 0x10;
    const VERSION_UNSUPPORTED: u32 = 0x14;
    const SNEAKY: &str = "sneaky-request-9f2e";
    const GARBAGE: &[u8] = b"GET /evil-7d1c HTTP/1.1\r\nHost: evil-7d1c\r\n\r\n";

    let ledger = tcp_echo("ledger").await;
    let pair = Pair::start(&[Service::new("ledger", 5432, ledger).protocol("tcp")]);
    let (endpoint, conn) = connect_as_east(pair.dir(), pair.west_peer_listener()).await;
    let header = |request_id: &str| StreamHeader {
        service: ServiceName::new("ledger").unwrap(),
        port: 5432,
        caller: SpiffeId::workload(FRONTEND).unwrap(),
        traceparent: None,
        tracestate: None,
        deadline: None,
        request_id: request_id.into(),
        protocol: Protocol::Tcp,
        request: None,
    };

    // A good header under a version byte no gateway speaks.
    let mut unknown_version = header(SNEAKY).encode();
    unknown_version[2] = 0xEE;
    unknown_version.extend_from_slice(b"hello");
    let code = refusal_code(&pair, &conn, &unknown_version).await;
    assert_eq!(
        code,
        Ok(quinn::VarInt::from_u32(VERSION_UNSUPPORTED)),
        "an unknown version\n{}",
        pair.logs()
    );
    // An HTTP request where the header should be.
    let code = refusal_code(&pair, &conn, GARBAGE).await;
    assert_eq!(
        code,
        Ok(quinn::VarInt::from_u32(HEADER_INVALID)),
        "garbage\n{}",
        pair.logs()
    );

    // A well-formed header whose HTTP request head is not: a method with a
    // space in it, and a target that is not in origin form.
    for (method, path) in [("G ET", "/"), ("GET", "http://evil-7d1c/")] {
        let mut msg = header(SNEAKY).to_proto();
        msg.protocol = causeway_proto::tunnel::v1::Protocol::Http as i32;
        msg.request = Some(causeway_proto::tunnel::v1::HttpRequestHead {
            method: method.into(),
            path: path.into(),
            headers: vec![],
            end_stream: true,
            upgrade: false,
        });
        let body = msg.encode_to_vec();
        let mut wire = vec![0xCA, 0x57, 2];
        wire.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        wire.extend_from_slice(&body);
        let code = refusal_code(&pair, &conn, &wire).await;
        assert_eq!(
            code,
            Ok(quinn::VarInt::from_u32(HEADER_INVALID)),
            "a malformed request head ({method} {path})\n{}",
            pair.logs()
        );
    }

    // The same connection carries a good call.
    assert_eq!(conn.close_reason(), None, "{}", pair.logs());
    let got = pair
        .within(CALL, "the good call", async {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.write_all(&header("good-call").encode()).await.unwrap();
            send.write_all(b"hello").await.unwrap();
            send.finish().unwrap();
            recv.read_to_end(1024).await
        })
        .await;
    assert_eq!(
        got.as_deref().ok(),
        Some(b"ledger|hello".as_ref()),
        "{got:?}\n{}",
        pair.logs()
    );
    endpoint.close(0u32.into(), b"done");

    // Counted, each under its reason from the documented closed set.
    let metrics = || pair.west.admin_get("/metrics").1;
    let counted = |text: &str, reason: &str| {
        text.lines().filter(|l| !l.starts_with('#')).any(|l| {
            l.contains(&format!("=\"{reason}\""))
                && l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .is_some_and(|v| v >= 1.0)
        })
    };
    let both = eventually(CALL, || {
        let text = metrics();
        counted(&text, "unsupported_version")
            && counted(&text, "bad_magic")
            && counted(&text, "invalid_field")
    });
    assert!(
        both.await,
        "west counts both refusals with their reasons:\n{}",
        metrics()
    );
    let text = metrics();
    for sent in ["evil-7d1c", SNEAKY, "GET /", "\u{fffd}"] {
        assert!(
            !text.contains(sent),
            "{sent:?}, sent by the peer, is in west's metrics:\n{text}"
        );
    }
}

/// 32 HTTP/1.1 callers, each on its own keep-alive connection, call
/// through two gateways for 10 s: no error and no status but 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_keep_alive_callers_for_ten_seconds_through_two_gateways() {
    let up = http_upstream("payments").await;
    let pair = Pair::start(&[Service::new("payments", 8080, up)]);
    let calls = pair
        .within(
            Duration::from_secs(30),
            "the load",
            support::load::keep_alive_callers(
                pair.web(),
                "payments.west",
                32,
                Duration::from_secs(10),
            ),
        )
        .await;
    let total = calls.total();
    assert!(
        calls.failures.is_empty(),
        "{} failed calls and {total} good ones in 10 s; the first failures: {:?}\n{}",
        calls.failures.len(),
        &calls.failures[..calls.failures.len().min(5)],
        pair.logs()
    );
    assert!(
        calls.ok.iter().all(|ok| *ok > 0),
        "every caller got through ({total} calls): {:?}",
        calls.ok
    );
    #[allow(
        clippy::print_stderr,
        reason = "the figure a reader of the test output wants"
    )]
    {
        eprintln!("32 keep-alive callers, 10 s, two gateways: {total} calls, 0 errors");
    }
}
