//! A TCP call crossing two gateways over QUIC, in process on loopback:
//! caller → east TCP listener → east outbound → QUIC + mTLS → west inbound
//! checks → west's TCP upstream, and back. The east side fails over from a
//! dead gateway address to a live one; a caller west's rules do not allow
//! gets nothing through.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use causeway_gateway::config::GatewayConfig;
use causeway_gateway::proxy::inbound::accept::{Inbound, bind_peer_endpoint};
use causeway_gateway::proxy::outbound::Outbound;
use causeway_gateway::proxy::outbound::accept as listener;
use causeway_gateway::transport::dial::PeerDialer;
use causeway_trust::testing::TestDomain;
use causeway_trust::tls::SvidSource;
use causeway_trust::{BundleSet, SharedBundles};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Starts west's peer listener; returns its address.
async fn start_west(east: &TestDomain, west: &TestDomain) -> SocketAddr {
    let upstream = support::payments_upstream().await;
    let text = format!(
        r#"
trust_domain: west.globex.example
id: spiffe://west.globex.example/gateway/west-1
svid: {{cert: unused.pem, key: unused.key}}
bundles:
  - {{trust_domain: west.globex.example, file: unused}}
  - {{trust_domain: east.acme.example, file: unused}}
services:
  - {{name: payments, port: 8080, endpoints: ["{upstream}"]}}
peers:
  - name: east
    trust_domain: east.acme.example
    gateways:
      - {{address: "127.0.0.1:9", id: spiffe://east.acme.example/gateway/east-1}}
authorization:
  - service: payments
    allow:
      - id: spiffe://east.acme.example/ns/shop/sa/frontend
"#
    );
    let config = Arc::new(GatewayConfig::from_yaml("west.yaml", &text, Path::new("/")).unwrap());
    let bundles =
        SharedBundles::new(BundleSet::from_bundles([west.bundle(), east.bundle()]).unwrap());
    let svid = SvidSource::new(west.svid("/gateway/west-1")).unwrap();
    let loopback = "127.0.0.1:0".parse().unwrap();
    let endpoint = bind_peer_endpoint(&config, &svid, &bundles, None, loopback).unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(Arc::new(Inbound::new(config)).serve_endpoint(endpoint));
    addr
}

/// Starts east's two TCP listeners (frontend and batch callers) for the
/// imported payments.west; returns their addresses.
async fn start_east(
    east: &TestDomain,
    west: &TestDomain,
    west_addrs: &[SocketAddr],
) -> (SocketAddr, SocketAddr) {
    let gateways: String = west_addrs
        .iter()
        .map(|a| {
            format!(
                "      - {{address: \"{a}\", id: spiffe://west.globex.example/gateway/west-1}}\n"
            )
        })
        .collect();
    let text = format!(
        r#"
trust_domain: east.acme.example
id: spiffe://east.acme.example/gateway/east-1
svid: {{cert: unused.pem, key: unused.key}}
bundles:
  - {{trust_domain: east.acme.example, file: unused}}
  - {{trust_domain: west.globex.example, file: unused}}
listeners:
  - name: frontend
    listen: 127.0.0.1:1
    protocol: tcp
    service: payments.west
    port: 80
    caller: {{identity: spiffe://east.acme.example/ns/shop/sa/frontend}}
  - name: batch
    listen: 127.0.0.1:2
    protocol: tcp
    service: payments.west
    port: 80
    caller: {{identity: spiffe://east.acme.example/ns/batch/sa/job}}
imports:
  - {{name: payments.west, port: 80, peer: west, remote_service: payments, remote_port: 8080}}
peers:
  - name: west
    trust_domain: west.globex.example
    gateways:
{gateways}
limits:
  handshake_timeout: 1s
"#
    );
    let config = Arc::new(GatewayConfig::from_yaml("east.yaml", &text, Path::new("/")).unwrap());
    let bundles =
        SharedBundles::new(BundleSet::from_bundles([east.bundle(), west.bundle()]).unwrap());
    let svid = SvidSource::new(east.svid("/gateway/east-1")).unwrap();
    let dialer = PeerDialer::new(&svid, &bundles, None, "127.0.0.1:0".parse().unwrap()).unwrap();
    let outbound = Arc::new(Outbound::new(config.clone(), dialer).unwrap());
    let mut addrs = Vec::new();
    for l in &config.listeners {
        // The config names fixed ports; tests take theirs from the OS.
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(socket.local_addr().unwrap());
        tokio::spawn(listener::serve(socket, l.clone(), None, outbound.clone()));
    }
    (addrs[0], addrs[1])
}

async fn round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(payload).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    out
}

/// A loopback UDP port with nothing behind it.
fn dead_udp_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

#[tokio::test]
async fn tcp_call_crosses_two_gateways_with_failover_and_policy() {
    causeway_trust::tls::install_default_provider();
    let east = TestDomain::new("east.acme.example");
    let west = TestDomain::with_intermediate("west.globex.example");
    let west_addr = start_west(&east, &west).await;
    // The first west address is dead: east must fail over to the second.
    let (frontend, batch) = start_east(&east, &west, &[dead_udp_addr(), west_addr]).await;

    assert_eq!(round_trip(frontend, b"hello").await, b"payments|hello");
    // Later calls reuse the connection.
    for i in 0..20 {
        let msg = format!("call {i}");
        assert_eq!(
            round_trip(frontend, msg.as_bytes()).await,
            format!("payments|{msg}").as_bytes()
        );
    }
    // Large payloads stream through whole.
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let back = round_trip(frontend, &big).await;
    assert_eq!(back.len(), big.len() + b"payments|".len());
    assert_eq!(&back[9..], &big[..]);

    // The batch job is not allowed at west: nothing comes back.
    assert_eq!(round_trip(batch, b"hello").await, b"");
}
