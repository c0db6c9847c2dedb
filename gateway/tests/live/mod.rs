//! Shared by the admin and reload tests: a whole gateway started in process
//! by `runtime::start_with` from real files in a temp dir, on loopback port
//! 0; a small HTTP/1.1 client for its admin listener; and a QUIC probe that
//! connects to its peer listener as a west gateway and reports the serial of
//! the certificate the gateway presented.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    reason = "test support"
)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use causeway_gateway::config::{GatewayConfig, Limits};
use causeway_gateway::runtime::{Running, StartOptions, start_with};
use causeway_gateway::service::ServiceName;
use causeway_gateway::transport::header::{Protocol, StreamHeader};
use causeway_gateway::transport::quic::quic_client_config;
use causeway_trust::pem;
use causeway_trust::testing::TestDomain;
use causeway_trust::tls::SvidSource;
use causeway_trust::{
    BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Svid, TrustBundle,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const EAST_GW: &str = "/gateway/east-1";
pub const WEST_GW: &str = "/gateway/west-1";
pub const WEST_CALLER: &str = "/ns/payments/sa/api";

/// The PEM texts of an SVID: chain, key.
pub fn svid_pem(svid: &Svid) -> (String, String) {
    let label = match svid.key() {
        PrivateKeyDer::Pkcs8(_) => "PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "RSA PRIVATE KEY",
    };
    (
        pem::encode_certificates(svid.chain()),
        pem::encode(label, svid.key().secret_der()),
    )
}

/// Writes `bytes` to a temp file next to `path`, then renames it over
/// `path`: what a rotation tool does.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp-new");
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A gateway of east.acme.example running in this process from files.
pub struct Gateway {
    pub dir: TempDir,
    pub running: Option<Running>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub east_bundle: PathBuf,
    pub west_bundle: PathBuf,
    pub admin: SocketAddr,
    pub peer: SocketAddr,
}

impl Gateway {
    /// Writes east's credentials and bundles (east's and west's) and starts
    /// the gateway; its only local service, inventory, answers
    /// "payments|" and echoes, and west's callers may reach it.
    pub async fn start(
        east: &TestDomain,
        west: &TestDomain,
        svid: &Svid,
        reload_interval: Duration,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (cert, key) = svid_pem(svid);
        fs::write(d.join("east-gw.pem"), cert).unwrap();
        fs::write(d.join("east-gw.key"), key).unwrap();
        fs::write(d.join("east.bundle.json"), east.bundle().to_json()).unwrap();
        fs::write(d.join("west.bundle.json"), west.bundle().to_json()).unwrap();
        let upstream = crate::support::payments_upstream().await;
        let config = d.join("east.yaml");
        fs::write(
            &config,
            format!(
                r#"
trust_domain: east.acme.example
id: spiffe://east.acme.example/gateway/east-1
svid: {{cert: east-gw.pem, key: east-gw.key}}
bundles:
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
admin: {{listen: "127.0.0.1:0"}}
peer_listener: {{listen: "127.0.0.1:0"}}
listeners:
  - {{name: frontend, listen: "127.0.0.1:0", protocol: tcp, service: payments.west, port: 80, caller: {{identity: "spiffe://east.acme.example/ns/shop/sa/frontend"}}}}
services:
  - {{name: inventory, port: 8080, endpoints: ["{upstream}"]}}
imports:
  - {{name: payments.west, port: 80, peer: west, remote_service: payments, remote_port: 8080}}
peers:
  - name: west
    trust_domain: west.globex.example
    gateways:
      - {{address: "127.0.0.1:9", id: "spiffe://west.globex.example/gateway/west-1"}}
authorization:
  - service: inventory
    allow:
      - trust_domain: west.globex.example
limits: {{handshake_timeout: 2s}}
"#
            ),
        )
        .unwrap();
        let running = start_with(
            GatewayConfig::load(&config).unwrap(),
            StartOptions {
                registry: prometheus::Registry::new(),
                reload_interval,
                ..StartOptions::default()
            },
        )
        .await
        .unwrap();
        Self {
            cert: d.join("east-gw.pem"),
            key: d.join("east-gw.key"),
            east_bundle: d.join("east.bundle.json"),
            west_bundle: d.join("west.bundle.json"),
            admin: running.admin.unwrap(),
            peer: running.peer_listener.unwrap(),
            running: Some(running),
            dir,
        }
    }

    /// Replaces the SVID files, certificate first, each by rename.
    pub fn rotate(&self, svid: &Svid) {
        let (cert, key) = svid_pem(svid);
        replace_file(&self.cert, cert.as_bytes());
        replace_file(&self.key, key.as_bytes());
    }

    pub fn write_west_bundle(&self, bundle: &TrustBundle) {
        replace_file(&self.west_bundle, bundle.to_json().as_bytes());
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    /// The value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_owned())
        })
    }
}

/// Sends raw bytes and reads until the server closes; parses the reply
/// (status 0 when the server closed without one). A server that stops
/// reading early (an oversized request) may reset the connection: what
/// arrived before counts.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no end of the admin reply within 10s"),
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `METHOD path` with `Connection: close`.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    raw(addr, req.as_bytes()).await
}

pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).await
}

/// GET /config_dump, parsed.
pub async fn dump(addr: SocketAddr) -> Value {
    let r = get(addr, "/config_dump").await;
    assert_eq!(r.status, 200, "{r:?}");
    serde_json::from_str(&r.body).unwrap()
}

/// Polls /config_dump until `ok` holds (at most 10 s).
pub async fn wait_for(addr: SocketAddr, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let d = dump(addr).await;
        if ok(&d) {
            return d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "config_dump never showed {what}:\n{d:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one sample line of /metrics (`name{labels} value`).
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A new QUIC connection to the gateway's peer listener presenting
/// `client`, trusting `bundles`; a call to its inventory service as a west
/// caller must come back. Returns the serial of the certificate the gateway
/// presented in this handshake.
pub async fn probe(
    addr: SocketAddr,
    east: &TestDomain,
    client: Svid,
    bundles: BundleSet,
) -> Result<String, String> {
    let verifier = SpiffeVerifier::new(
        SharedBundles::new(bundles),
        Expected::ids([east.id(EAST_GW)]),
    );
    let config = quic_client_config(
        &SvidSource::new(client).unwrap(),
        Arc::new(verifier),
        &Limits::default(),
    )
    .unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(config);
    let conn = ep
        .connect(addr, "east.gateway.causeway.invalid")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let certs = conn
        .peer_identity()
        .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or("no peer certificate")?;
    let serial = causeway_trust::svid::summarize(&certs[0]).unwrap().serial;
    // With TLS 1.3 the server checks the client's certificate after the
    // client is done: a call that comes back proves it was accepted.
    let header = StreamHeader {
        service: ServiceName::new("inventory").unwrap(),
        port: 8080,
        caller: SpiffeId::new(&format!("spiffe://west.globex.example{WEST_CALLER}")).unwrap(),
        traceparent: None,
        tracestate: None,
        deadline: None,
        request_id: "probe".into(),
        protocol: Protocol::Tcp,
        request: None,
    };
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let mut bytes = header.encode();
    bytes.extend_from_slice(b"hi");
    send.write_all(&bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish();
    let back = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16))
        .await
        .map_err(|_| "no reply within 5s".to_owned())?
        .map_err(|e| e.to_string())?;
    conn.close(0u32.into(), b"done");
    if back == b"payments|hi" {
        Ok(serial)
    } else {
        Err(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&back)
        ))
    }
}

/// East's and west's bundles as west holds them.
pub fn west_view(east: &TestDomain, west: &TestDomain) -> BundleSet {
    BundleSet::from_bundles([east.bundle(), west.bundle()]).unwrap()
}
