//! Live config, in process with real QUIC and mTLS on loopback: an east and
//! a west gateway started by `runtime::start_with` from files, HTTP and TCP
//! upstreams behind west. Under continuous traffic through both gateways,
//! new configs add a service, move an endpoint, remove an import and change
//! rules: no call fails, new calls see the new config, a TCP stream opened
//! before stays up. A config changing a field that cannot change live is
//! refused and the old config keeps serving. West maps east's shop callers
//! to the principal `shoppers`, which its rules name; the upstream sees it
//! in `x-causeway-principal`, whatever the caller sent.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod live;
mod support;

use std::convert::Infallible;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use causeway_gateway::config::GatewayConfig;
use causeway_gateway::runtime::{Running, StartOptions, start_with};
use causeway_gateway::state::Origin;
use causeway_trust::TrustDomain;
use causeway_trust::testing::TestDomain;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use live::{Reply, dump, raw, svid_pem};

/// An HTTP upstream answering `NAME|<x-causeway-principal or ->`.
async fn http_upstream(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| async move {
                    let p = req
                        .headers()
                        .get_all("x-causeway-principal")
                        .iter()
                        .map(|v| v.to_str().unwrap_or("?").to_owned())
                        .collect::<Vec<_>>()
                        .join(",");
                    let p = if p.is_empty() { "-".to_owned() } else { p };
                    let body = Bytes::from(format!("{name}|{p}"));
                    Ok::<_, Infallible>(Response::new(Full::new(body)))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

struct Upstreams {
    a: SocketAddr,
    b: SocketAddr,
    ledger: SocketAddr,
    billing: SocketAddr,
    echo: SocketAddr,
}

/// West's config. `v2` moves payments from A to B, adds billing (for
/// shoppers) and drops the rule that let east reach ledger.
fn west_yaml(u: &Upstreams, v2: bool, extra: &str) -> String {
    let payments = if v2 { u.b } else { u.a };
    let (billing, ledger_rule) = if v2 {
        (
            format!(
                "  - {{name: billing, port: 8080, endpoints: [\"{}\"]}}\n",
                u.billing
            ),
            "  - {service: billing, allow: [{principal: shoppers}]}\n",
        )
    } else {
        (
            String::new(),
            "  - {service: ledger, allow: [{trust_domain: east.acme.example}]}\n",
        )
    };
    format!(
        r#"
trust_domain: west.globex.example
id: spiffe://west.globex.example/gateway/west-1
svid: {{cert: west-gw.pem, key: west-gw.key}}
bundles:
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
admin: {{listen: "127.0.0.1:0"}}
peer_listener: {{listen: "127.0.0.1:0"}}
services:
  - {{name: payments, port: 8080, endpoints: ["{payments}"]}}
  - {{name: ledger, port: 8080, endpoints: ["{ledger}"]}}
  - {{name: echo, port: 7000, endpoints: ["{echo}"]}}
{billing}peers:
  - name: east
    trust_domain: east.acme.example
    gateways: [{{address: "127.0.0.1:9", id: "spiffe://east.acme.example/gateway/east-1"}}]
identity_map:
  - {{peer_trust_domain: east.acme.example, pattern: "spiffe://east.acme.example/ns/shop/sa/*", principal: shoppers}}
authorization:
  - service: payments
    allow: [{{principal: shoppers}}]
  - service: echo
    allow: [{{pattern: "spiffe://east.acme.example/ns/*/sa/*"}}]
{ledger_rule}{extra}"#,
        ledger = u.ledger,
        echo = u.echo,
    )
}

/// East's config. `v2` removes the import payments-old and adds billing.
fn east_yaml(west: SocketAddr, v2: bool, west_id: &str) -> String {
    let imports = if v2 {
        "  - {name: billing, port: 80, peer: west, remote_port: 8080}\n"
    } else {
        "  - {name: payments-old, port: 80, peer: west, remote_service: payments, remote_port: 8080}\n"
    };
    format!(
        r#"
trust_domain: east.acme.example
id: spiffe://east.acme.example/gateway/east-1
svid: {{cert: east-gw.pem, key: east-gw.key}}
bundles:
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
admin: {{listen: "127.0.0.1:0"}}
listeners:
  - {{name: front, listen: "127.0.0.1:0", protocol: http, caller: {{identity: "spiffe://east.acme.example/ns/shop/sa/frontend"}}}}
  - {{name: batch, listen: "127.0.0.1:0", protocol: http, caller: {{identity: "spiffe://east.acme.example/ns/batch/sa/job"}}}}
  - {{name: echo, listen: "127.0.0.1:0", protocol: tcp, service: echo, port: 7000, caller: {{identity: "spiffe://east.acme.example/ns/batch/sa/job"}}}}
imports:
  - {{name: payments, port: 80, peer: west, remote_port: 8080}}
  - {{name: ledger, port: 80, peer: west, remote_port: 8080}}
  - {{name: echo, port: 7000, peer: west}}
{imports}peers:
  - name: west
    trust_domain: west.globex.example
    gateways: [{{address: "{west}", id: "{west_id}"}}]
limits: {{handshake_timeout: 2s}}
"#
    )
}

const WEST_ID: &str = "spiffe://west.globex.example/gateway/west-1";

/// East on its own: its bundle and the front listener; with `west`
/// (address, bundle file) also west's bundle, west as a peer and payments
/// imported from it.
fn east_alone_yaml(own_bundle: &str, west: Option<(SocketAddr, &str)>) -> String {
    let mut s = format!(
        "trust_domain: east.acme.example\nid: spiffe://east.acme.example/gateway/east-1\n\
         svid: {{cert: east-gw.pem, key: east-gw.key}}\nbundles:\n  \
         - {{trust_domain: east.acme.example, file: {own_bundle}}}\n"
    );
    if let Some((_, file)) = west {
        s += &format!("  - {{trust_domain: west.globex.example, file: {file}}}\n");
    }
    s += "admin: {listen: \"127.0.0.1:0\"}\nlisteners:\n  - {name: front, listen: \"127.0.0.1:0\", protocol: http, \
          caller: {identity: \"spiffe://east.acme.example/ns/shop/sa/frontend\"}}\n";
    if let Some((addr, _)) = west {
        s += &format!(
            "imports:\n  - {{name: payments, port: 80, peer: west, remote_port: 8080}}\n\
             peers:\n  - name: west\n    trust_domain: west.globex.example\n    \
             gateways: [{{address: \"{addr}\", id: \"{WEST_ID}\"}}]\n"
        );
    }
    s
}

struct Pair {
    dir: TempDir,
    up: Upstreams,
    west: Running,
    east: Running,
}

impl Pair {
    async fn start() -> Self {
        causeway_trust::tls::install_default_provider();
        let east_td = TestDomain::new("east.acme.example");
        let west_td = TestDomain::new("west.globex.example");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for (name, svid) in [
            ("east-gw", east_td.svid("/gateway/east-1")),
            ("west-gw", west_td.svid("/gateway/west-1")),
        ] {
            let (cert, key) = svid_pem(&svid);
            fs::write(d.join(format!("{name}.pem")), cert).unwrap();
            fs::write(d.join(format!("{name}.key")), key).unwrap();
        }
        fs::write(d.join("east.bundle.json"), east_td.bundle().to_json()).unwrap();
        fs::write(d.join("west.bundle.json"), west_td.bundle().to_json()).unwrap();
        let up = Upstreams {
            a: http_upstream("A").await,
            b: http_upstream("B").await,
            ledger: http_upstream("ledger").await,
            billing: http_upstream("billing").await,
            echo: support::payments_upstream().await,
        };
        let west = start(d, "west.yaml", &west_yaml(&up, false, "")).await;
        let west_addr = west.peer_listener.unwrap();
        let east = start(d, "east.yaml", &east_yaml(west_addr, false, WEST_ID)).await;
        Self {
            dir,
            up,
            west,
            east,
        }
    }

    fn config(&self, name: &str, text: &str) -> GatewayConfig {
        GatewayConfig::from_yaml(name, text, self.dir.path()).unwrap()
    }

    fn listener(&self, name: &str) -> SocketAddr {
        self.east.listeners[name]
    }
}

async fn start(dir: &Path, name: &str, text: &str) -> Running {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    let options = StartOptions {
        origin: Origin::new(name, Some("1".into())),
        ..StartOptions::default()
    };
    start_with(GatewayConfig::load(&path).unwrap(), options)
        .await
        .unwrap()
}

/// GET / with `Host: host` and extra header lines, on a new connection.
async fn get(addr: SocketAddr, host: &str, extra: &str) -> Reply {
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    raw(addr, req.as_bytes()).await
}

/// A TCP connection through east's echo listener, greeted by the upstream.
async fn echo_stream(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut greet = [0u8; 9];
    s.read_exact(&mut greet).await.unwrap();
    assert_eq!(&greet, b"payments|");
    s
}

async fn ping(s: &mut TcpStream, text: &[u8]) {
    s.write_all(text).await.unwrap();
    let mut back = vec![0u8; text.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("echo within 5s")
        .unwrap();
    assert_eq!(back, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_config_applies_under_traffic_without_failing_a_call() {
    let pair = Pair::start().await;
    let front = pair.listener("front");
    assert_eq!(get(front, "ledger", "").await.body, "ledger|shoppers");
    assert_eq!(get(front, "payments-old", "").await.body, "A|shoppers");
    let mut stream = echo_stream(pair.listener("echo")).await;
    ping(&mut stream, b"before").await;

    // Callers without a pause, each call a new connection and a new stream.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, seen_b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (stop, ok, seen_b) = (stop.clone(), ok.clone(), seen_b.clone());
        callers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = get(front, "payments", "").await;
                match (r.status, r.body.as_str()) {
                    (200, "A|shoppers") => {}
                    (200, "B|shoppers") => {
                        seen_b.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => failures.push(format!("{} {}", r.status, r.body)),
                }
                ok.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    while ok.load(Ordering::Relaxed) < 40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let applied = pair
        .west
        .apply_config(
            pair.config("west-v2", &west_yaml(&pair.up, true, "")),
            Origin::new("controller", Some("2".into())),
        )
        .unwrap();
    assert_eq!(applied.generation, 2);
    assert_eq!(applied.changes.services.added, ["billing:8080"]);
    assert_eq!(applied.changes.services.changed, ["payments:8080"]);
    assert!(applied.changes.rules && !applied.changes.identity_map);
    let west_addr = pair.west.peer_listener.unwrap();
    let applied = pair
        .east
        .apply_config(
            pair.config("east-v2", &east_yaml(west_addr, true, WEST_ID)),
            Origin::new("controller", Some("2".into())),
        )
        .unwrap();
    assert_eq!(applied.changes.imports.added, ["billing:80"]);
    assert_eq!(applied.changes.imports.removed, ["payments-old:80"]);
    assert!(applied.changes.peers.is_empty());

    // New calls see the new configs at once.
    assert_eq!(get(front, "payments", "").await.body, "B|shoppers");
    assert_eq!(get(front, "billing", "").await.body, "billing|shoppers");
    let ledger = get(front, "ledger", "").await;
    assert_eq!(ledger.status, 403, "{ledger:?}");
    assert_eq!(ledger.header("x-causeway-refusal").unwrap(), "denied");
    assert_eq!(get(front, "payments-old", "").await.status, 404);
    let before = ok.load(Ordering::Relaxed);
    while ok.load(Ordering::Relaxed) < before + 40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        let failures = c.await.unwrap();
        assert!(failures.is_empty(), "calls failed: {failures:?}");
    }
    assert!(seen_b.load(Ordering::Relaxed) > 0);
    // The stream opened before both applies is still carried.
    ping(&mut stream, b"after").await;

    let d = dump(pair.west.admin.unwrap()).await;
    assert_eq!(d["config"]["generation"], 2, "{d:#}");
    assert_eq!(d["config"]["source"], "controller");
    assert_eq!(d["config"]["version"], "2");
    assert_eq!(d["identity_map"][0]["principal"], "shoppers");
    assert_eq!(d["rules"][0]["allow"][0]["principal"], "shoppers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_changing_a_fixed_field_is_refused_and_the_old_one_keeps_serving() {
    let pair = Pair::start().await;
    let front = pair.listener("front");
    let moved = west_yaml(&pair.up, true, "").replace(
        "admin: {listen: \"127.0.0.1:0\"}",
        "admin: {listen: \"127.0.0.1:1\"}",
    );
    let e = pair
        .west
        .apply_config(pair.config("west-moved", &moved), Origin::default())
        .unwrap_err();
    assert_eq!(e.reason(), "not_live");
    assert!(e.to_string().contains("admin.listen"), "{e}");
    let west_addr = pair.west.peer_listener.unwrap();
    let text = east_yaml(west_addr, true, WEST_ID).replace(
        "spiffe://east.acme.example/gateway/east-1",
        "spiffe://east.acme.example/gateway/east-2",
    );
    let e = pair
        .east
        .apply_config(pair.config("east-renamed", &text), Origin::default())
        .unwrap_err();
    assert_eq!(e.problems()[0].field, "id", "{e}");
    // Neither took anything of the refused configs.
    assert_eq!(get(front, "payments", "").await.body, "A|shoppers");
    assert_eq!(get(front, "payments-old", "").await.status, 200);
    assert_eq!(pair.west.current().generation, 1);
    assert_eq!(pair.east.current().generation, 1);

    // A peer gateway ID east no longer accepts: new calls need a new
    // connection, whose handshake refuses west's certificate.
    let other = "spiffe://west.globex.example/gateway/west-9";
    let applied = pair
        .east
        .apply_config(
            pair.config("east-v3", &east_yaml(west_addr, false, other)),
            Origin::default(),
        )
        .unwrap();
    assert_eq!(applied.changes.peers.changed, ["west"]);
    assert_eq!(get(front, "payments", "").await.status, 503);
    pair.east
        .apply_config(
            pair.config("east-v4", &east_yaml(west_addr, false, WEST_ID)),
            Origin::default(),
        )
        .unwrap();
    assert_eq!(get(front, "payments", "").await.body, "A|shoppers");

    // West no longer accepts east's gateway: the QUIC connection east
    // holds serves no new stream.
    let text = west_yaml(&pair.up, false, "").replace(
        "spiffe://east.acme.example/gateway/east-1",
        "spiffe://east.acme.example/gateway/east-9",
    );
    pair.west
        .apply_config(pair.config("west-v3", &text), Origin::default())
        .unwrap();
    let r = get(front, "payments", "").await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        r.header("x-causeway-refusal").unwrap(),
        "not_a_peer_gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_callers_are_mapped_to_local_principals_on_inbound() {
    let pair = Pair::start().await;
    // A shop caller maps to shoppers; what the caller claims is dropped.
    let r = get(
        pair.listener("front"),
        "payments",
        "x-causeway-principal: admins\r\nx-causeway-principal: root\r\n",
    )
    .await;
    assert_eq!((r.status, r.body.as_str()), (200, "A|shoppers"), "{r:?}");
    // A batch caller matches no identity map entry: no rule names it.
    let r = get(pair.listener("batch"), "payments", "").await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("x-causeway-refusal").unwrap(), "denied");
    // A rule by pattern lets it reach echo, unmapped.
    let mut s = echo_stream(pair.listener("echo")).await;
    ping(&mut s, b"hello").await;
    // Ledger allows east's whole domain: an unmapped caller gets there,
    // and the upstream gets no principal.
    let r = get(pair.listener("batch"), "ledger", "").await;
    assert_eq!(r.body, "ledger|-");
    let m = live::get(pair.west.admin.unwrap(), "/metrics").await.body;
    let denied = m
        .lines()
        .find(|l| {
            l.starts_with("causeway_gateway_requests_total")
                && l.contains("direction=\"inbound\"")
                && l.contains("result=\"denied\"")
        })
        .unwrap_or_else(|| panic!("no inbound denied sample:\n{m}"));
    assert!(denied.ends_with(" 1"), "{denied}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_peer_comes_with_its_bundle_live_and_leaves_with_it() {
    let pair = Pair::start().await;
    let d = pair.dir.path();
    let west_addr = pair.west.peer_listener.unwrap();
    let west_td = TrustDomain::new("west.globex.example").unwrap();
    let own = "east.bundle.json";
    let east = start(d, "east-alone.yaml", &east_alone_yaml(own, None)).await;
    let front = east.listeners["front"];
    assert_eq!(get(front, "payments", "").await.status, 404);

    // A peer's bundle file that holds no bundle refuses the config whole.
    fs::write(d.join("bad.bundle.json"), "not a bundle").unwrap();
    let bad = east_alone_yaml(own, Some((west_addr, "bad.bundle.json")));
    let e = east
        .apply_config(pair.config("bad", &bad), Origin::default())
        .unwrap_err();
    assert_eq!(e.reason(), "bundle", "{e}");
    assert!(e.to_string().contains("bad.bundle.json"), "{e}");
    assert_eq!(east.current().generation, 1);
    assert!(east.credentials().bundles().get(&west_td).is_none());

    // The own trust domain's bundle file stays where it is.
    fs::copy(d.join(own), d.join("east-2.bundle.json")).unwrap();
    let moved = east_alone_yaml("east-2.bundle.json", None);
    let e = east
        .apply_config(pair.config("moved", &moved), Origin::default())
        .unwrap_err();
    assert_eq!(e.problems()[0].field, "bundles[east.acme.example]", "{e}");

    // West and its bundle, in one config: the first call gets through.
    let with_west = east_alone_yaml(own, Some((west_addr, "west.bundle.json")));
    let applied = east
        .apply_config(pair.config("with-west", &with_west), Origin::default())
        .unwrap();
    assert_eq!(applied.changes.bundles.added, ["west.globex.example"]);
    assert_eq!(get(front, "payments", "").await.body, "A|shoppers");
    let d = dump(east.admin.unwrap()).await;
    let file = d["credentials"]["bundles"]["west.globex.example"]["file"].as_str();
    assert!(file.unwrap().ends_with("west.bundle.json"), "{d}");

    // West leaves, and its bundle with it.
    let applied = east
        .apply_config(
            pair.config("alone", &east_alone_yaml(own, None)),
            Origin::default(),
        )
        .unwrap();
    assert_eq!(applied.changes.bundles.removed, ["west.globex.example"]);
    assert!(east.credentials().bundles().get(&west_td).is_none());
    assert_eq!(get(front, "payments", "").await.status, 404);
}
