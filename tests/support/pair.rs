//! Two trust domains on loopback: east and west, each with its own CA made
//! by `causeway ca` (west's with an intermediate), gateway SVIDs and
//! exported bundles; a [`Pair`] of real `causeway gateway` processes that
//! serve the same services in cluster (east alone) and across trust
//! domains (east, then west over QUIC); and east's gateway credentials used
//! by hand, to play a peer gateway of west.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use causeway_trust::tls::{SvidSource, client_config};
use causeway_trust::{BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Svid};
use causeway_trust::{TrustBundle, TrustDomain};
use tempfile::TempDir;

use super::process::Gateway;
use super::{FRONTEND, ca_init, ca_issue, export};

pub(crate) const EAST_GW: &str = "spiffe://east.acme.example/gateway/east-1";
pub(crate) const WEST_GW: &str = "spiffe://west.globex.example/gateway/west-1";
pub(crate) const NORTH_GW: &str = "spiffe://north.initech.example/gateway/north-1";

/// The tunnel's ALPN protocol between gateways (docs/wire-format.md).
pub(crate) const ALPN: &[u8] = b"causeway/1";

/// Three CAs (west's with an intermediate; north is a domain nobody peers
/// with), the gateways' SVIDs, east's `frontend` and west's `west-frontend`
/// workload SVIDs, and every bundle, in `d`.
pub(crate) fn credentials(d: &Path) {
    ca_init(&d.join("east-ca"), "east.acme.example", &[]);
    ca_init(
        &d.join("west-ca"),
        "west.globex.example",
        &["--intermediate"],
    );
    ca_init(&d.join("north-ca"), "north.initech.example", &[]);
    ca_issue(&d.join("east-ca"), EAST_GW, &d.join("east-gw"), &[]);
    ca_issue(&d.join("west-ca"), WEST_GW, &d.join("west-gw"), &[]);
    ca_issue(&d.join("north-ca"), NORTH_GW, &d.join("north-gw"), &[]);
    ca_issue(&d.join("east-ca"), FRONTEND, &d.join("frontend"), &[]);
    ca_issue(
        &d.join("west-ca"),
        "spiffe://west.globex.example/ns/shop/sa/frontend",
        &d.join("west-frontend"),
        &[],
    );
    export(&d.join("east-ca"), "json", &d.join("east.bundle.json"));
    export(&d.join("west-ca"), "json", &d.join("west.bundle.json"));
    export(&d.join("north-ca"), "json", &d.join("north.bundle.json"));
}

/// A service both gateways serve: east in cluster as `name`, west as
/// `name`, which east imports as `name.west`.
#[derive(Debug, Clone)]
pub(crate) struct Service {
    pub(crate) name: &'static str,
    pub(crate) port: u16,
    pub(crate) endpoint: SocketAddr,
    /// The `protocol` field of the gateway file's `services` entry (`http`,
    /// `http2` or `tcp`); `None` leaves it out (the default, `http`).
    pub(crate) protocol: Option<&'static str>,
}

impl Service {
    /// A service with the default protocol.
    pub(crate) fn new(name: &'static str, port: u16, endpoint: SocketAddr) -> Self {
        Self {
            name,
            port,
            endpoint,
            protocol: None,
        }
    }

    /// The same, declared with `protocol: <protocol>`.
    pub(crate) fn protocol(self, protocol: &'static str) -> Self {
        Self {
            protocol: Some(protocol),
            ..self
        }
    }

    fn entry(&self) -> String {
        let protocol = self
            .protocol
            .map_or(String::new(), |p| format!(", protocol: {p}"));
        format!(
            "  - {{name: {}, port: {}, endpoints: [\"{}\"]{protocol}}}\n",
            self.name, self.port, self.endpoint
        )
    }
}

/// East and west as real processes. East has one HTTP listener, `web`,
/// whose callers are [`FRONTEND`]; both gateways allow [`FRONTEND`] to
/// every service. Both processes are killed by their pids when the pair is
/// dropped, then the directory with their files is removed.
pub(crate) struct Pair {
    pub(crate) east: Gateway,
    pub(crate) west: Gateway,
    dir: TempDir,
}

impl Pair {
    /// Credentials in a new temporary directory, then west, then east.
    pub(crate) fn start(services: &[Service]) -> Self {
        assert!(!services.is_empty(), "a pair serves at least one service");
        let dir = super::tmp();
        let d = dir.path();
        credentials(d);
        let west = Gateway::start(&west_config(d, services), d.join("west.log"));
        let east = Gateway::start(
            &east_config(d, services, west.addr("/peer_listener")),
            d.join("east.log"),
        );
        Self { east, west, dir }
    }

    /// East's HTTP listener for local callers.
    pub(crate) fn web(&self) -> SocketAddr {
        self.east.addr("/listeners/web")
    }

    /// West's QUIC listener for peer gateways.
    pub(crate) fn west_peer_listener(&self) -> SocketAddr {
        self.west.addr("/peer_listener")
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `f`'s outcome, or a panic naming `what` with both logs after
    /// `limit`.
    pub(crate) async fn within<T>(
        &self,
        limit: Duration,
        what: &str,
        f: impl std::future::Future<Output = T>,
    ) -> T {
        match tokio::time::timeout(limit, f).await {
            Ok(t) => t,
            Err(_) => panic!("{what}: no outcome within {limit:?}\n{}", self.logs()),
        }
    }

    /// Both gateways' logs, for assertion messages.
    pub(crate) fn logs(&self) -> String {
        format!(
            "--- east log ---\n{}\n--- west log ---\n{}",
            self.east.log_text(),
            self.west.log_text()
        )
    }
}

fn west_config(d: &Path, services: &[Service]) -> PathBuf {
    let path = d.join("west.yaml");
    let entries: String = services.iter().map(Service::entry).collect();
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
{entries}peers:
  - name: east
    trust_domain: east.acme.example
    gateways:
      - {{address: "127.0.0.1:9", id: {EAST_GW}}}
authorization:
  - service: "*"
    allow: [{{id: "{FRONTEND}"}}]
"#
        ),
    )
    .unwrap();
    path
}

fn east_config(d: &Path, services: &[Service], west: SocketAddr) -> PathBuf {
    let path = d.join("east.yaml");
    let entries: String = services.iter().map(Service::entry).collect();
    let imports: String = services
        .iter()
        .map(|s| {
            format!(
                "  - {{name: {0}.west, port: {1}, peer: west, remote_service: {0}}}\n",
                s.name, s.port
            )
        })
        .collect();
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
services:
{entries}imports:
{imports}peers:
  - name: west
    trust_domain: west.globex.example
    gateways:
      - {{address: "{west}", id: {WEST_GW}}}
authorization:
  - service: "*"
    allow: [{{id: "{FRONTEND}"}}]
"#
        ),
    )
    .unwrap();
    path
}

/// A QUIC connection to west's peer listener as east's gateway: east's
/// gateway SVID from `d/east-gw.{pem,key}`, west's gateway checked against
/// `d/west.bundle.json`, ALPN `causeway/1`. The endpoint must outlive the
/// connection.
pub(crate) async fn connect_as_east(
    d: &Path,
    west: SocketAddr,
) -> (quinn::Endpoint, quinn::Connection) {
    let svid = Svid::from_pem(
        &fs::read(d.join("east-gw.pem")).unwrap(),
        &fs::read(d.join("east-gw.key")).unwrap(),
    )
    .unwrap();
    let west_bundle = TrustBundle::parse(
        TrustDomain::new("west.globex.example").unwrap(),
        &fs::read(d.join("west.bundle.json")).unwrap(),
    )
    .unwrap();
    let verifier = SpiffeVerifier::new(
        SharedBundles::new(BundleSet::from_bundles([west_bundle]).unwrap()),
        Expected::ids([SpiffeId::workload(WEST_GW).unwrap()]),
    );
    let tls = client_config(&SvidSource::new(svid).unwrap(), Arc::new(verifier), &[ALPN]).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls)).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let connecting = endpoint
        .connect_with(quinn::ClientConfig::new(Arc::new(crypto)), west, "west")
        .unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .expect("QUIC handshake with west within 10 s")
        .expect("west accepts east's gateway SVID");
    (endpoint, conn)
}
