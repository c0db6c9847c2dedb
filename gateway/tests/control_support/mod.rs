//! A small GatewayApi server for the control client's tests: real TLS
//! (rustls, the controller's SVID chain with its root, client certificates
//! optional so that Join works without one), real gRPC (tonic), a real CA
//! that signs the client's CSRs. The real controller replaces it in the
//! end-to-end tests that come with its merge.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    reason = "test support"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use causeway_gateway::config::GatewayConfig;
use causeway_gateway::control::backoff::Backoff;
use causeway_gateway::control::tls::sha256_hex;
use causeway_gateway::control::{
    ApplyConfig, ApplyFuture, ControlClient, ControlOptions, authorities_digest,
};
use causeway_gateway::runtime::{Running, StartOptions, start_with};
use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::gateway_api_server::{GatewayApi, GatewayApiServer};
use causeway_proto::controller::v1::gateway_message::Message as FromGateway;
use causeway_trust::testing::TestDomain;
use causeway_trust::tls::{OptionalClientAuth, provider};
use causeway_trust::verify::peer_id;
use causeway_trust::{BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Validity};
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

pub const GATEWAY_ID: &str = "spiffe://east.example/causeway/gateway/edge-1";

#[derive(Debug, Clone)]
pub struct Setup {
    /// Lifetime of the SVIDs issued.
    pub ttl: Duration,
    /// The path of the ID the server presents.
    pub server_path: String,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3600),
            server_path: "/causeway/controller".into(),
        }
    }
}

/// What the server saw and how it behaves.
pub struct State {
    pub domain: TestDomain,
    pub ttl: Duration,
    pub token: String,
    pub joins: AtomicUsize,
    pub renews: AtomicUsize,
    pub fail_renewals: AtomicBool,
    initial: Mutex<Option<pb::ConfigSnapshot>>,
    push: Mutex<Option<mpsc::UnboundedSender<Result<pb::ConfigSnapshot, Status>>>>,
    events: mpsc::UnboundedSender<FromGateway>,
}

pub struct TestController {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    events: tokio::sync::Mutex<(mpsc::UnboundedReceiver<FromGateway>, Vec<FromGateway>)>,
    tasks: Vec<JoinHandle<()>>,
}

impl TestController {
    pub async fn start(setup: Setup) -> Self {
        causeway_trust::tls::install_default_provider();
        let domain = TestDomain::new("east.example");
        let server = domain.svid(&setup.server_path);
        let mut chain = server.chain().to_vec();
        chain.push(domain.ca.roots()[0].clone());
        let bundles = BundleSet::from_bundles([domain.bundle()]).unwrap();
        let verifier = SpiffeVerifier::new(SharedBundles::new(bundles), Expected::AnyKnownDomain);
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(Arc::new(OptionalClientAuth(Arc::new(verifier))))
            .with_single_cert(chain, server.key().clone_key())
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let pin = sha256_hex(domain.ca.roots()[0].as_ref());
        let state = Arc::new(State {
            domain,
            ttl: setup.ttl,
            token: format!("cw1.tok1.s3cret.{pin}"),
            joins: AtomicUsize::new(0),
            renews: AtomicUsize::new(0),
            fail_renewals: AtomicBool::new(false),
            initial: Mutex::new(None),
            push: Mutex::new(None),
            events: events_tx,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conn_tx, conn_rx) = mpsc::channel::<Result<Conn, std::io::Error>>(16);
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let conn_tx = conn_tx.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = conn_tx.send(Ok(Conn(tls))).await;
                    }
                });
            }
        });
        let service = GatewayApiServer::new(Api(state.clone()));
        let serve = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(ReceiverStream::new(conn_rx))
                .await;
        });
        Self {
            addr,
            state,
            events: tokio::sync::Mutex::new((events_rx, Vec::new())),
            tasks: vec![accept, serve],
        }
    }

    /// The pin of this server's root.
    pub fn pin(&self) -> String {
        sha256_hex(self.state.domain.ca.roots()[0].as_ref())
    }

    /// The snapshot sent at once on every new stream.
    pub fn set_initial(&self, s: pb::ConfigSnapshot) {
        *self.state.initial.lock().unwrap() = Some(s);
    }

    /// Sends a snapshot on the current stream.
    pub fn push(&self, s: pb::ConfigSnapshot) {
        let push = self.state.push.lock().unwrap();
        push.as_ref().expect("a stream").send(Ok(s)).unwrap();
    }

    /// Stops accepting and serving: the controller is down.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
        *self.state.push.lock().unwrap() = None;
    }

    /// The first message from the gateway (seen so far or to come) that
    /// matches, within 10 s.
    pub async fn wait_for(&self, pred: impl Fn(&FromGateway) -> bool) -> FromGateway {
        let mut guard = self.events.lock().await;
        let (rx, seen) = &mut *guard;
        if let Some(m) = seen.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let m = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no such message; saw {seen:?}"))
                .expect("events");
            seen.push(m.clone());
            if pred(&m) {
                return m;
            }
        }
    }
}

impl Drop for TestController {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TLS connection that tells tonic the client's SPIFFE ID.
struct Conn(tokio_rustls::server::TlsStream<TcpStream>);

#[derive(Debug, Clone)]
struct PeerId(Option<SpiffeId>);

impl Connected for Conn {
    type ConnectInfo = PeerId;
    fn connect_info(&self) -> PeerId {
        PeerId(peer_id(self.0.get_ref().1.peer_certificates()))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

struct Api(Arc<State>);

impl Api {
    fn issue(&self, csr: &[u8]) -> Result<pb::SvidResponse, Status> {
        let d = &self.0.domain;
        let issued =
            d.ca.sign_csr(csr, Validity::starting_now(self.0.ttl), |id| {
                id.as_str() == GATEWAY_ID
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let bundle = d.bundle();
        Ok(pb::SvidResponse {
            spiffe_id: issued.info.spiffe_id.to_string(),
            chain_der: issued.chain.iter().map(|c| c.to_vec()).collect(),
            expires_unix: issued.info.not_after,
            own_bundle: Some(pb::Bundle {
                trust_domain: "east.example".into(),
                document: bundle.to_json(),
                sequence: 1,
                digest: String::new(),
            }),
        })
    }
}

fn caller<T>(r: &Request<T>) -> Result<(), Status> {
    match r.extensions().get::<PeerId>() {
        Some(PeerId(Some(id))) if id.as_str() == GATEWAY_ID => Ok(()),
        other => Err(Status::permission_denied(format!("{other:?}"))),
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::ConfigSnapshot, Status>> + Send>>;

#[tonic::codegen::async_trait]
impl GatewayApi for Api {
    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::SvidResponse>, Status> {
        self.0.joins.fetch_add(1, Ordering::SeqCst);
        let r = request.into_inner();
        if r.token != self.0.token {
            return Err(Status::permission_denied("unknown token"));
        }
        self.issue(&r.csr_der).map(Response::new)
    }

    async fn renew(
        &self,
        request: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::SvidResponse>, Status> {
        self.0.renews.fetch_add(1, Ordering::SeqCst);
        caller(&request)?;
        if self.0.fail_renewals.load(Ordering::SeqCst) {
            return Err(Status::unavailable("the store is down"));
        }
        self.issue(&request.into_inner().csr_der).map(Response::new)
    }

    type StreamConfigStream = SnapshotStream;

    async fn stream_config(
        &self,
        request: Request<tonic::Streaming<pb::GatewayMessage>>,
    ) -> Result<Response<SnapshotStream>, Status> {
        caller(&request)?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        if let Some(s) = self.0.initial.lock().unwrap().clone() {
            let _ = tx.send(Ok(s));
        }
        *self.0.push.lock().unwrap() = Some(tx);
        let events = self.0.events.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if let Some(m) = m.message {
                    let _ = events.send(m);
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}

/// A gateway's directory: its local file, token and data dir.
pub struct GatewayDir {
    pub dir: TempDir,
}

impl GatewayDir {
    pub fn new(ctl: &TestController, pin: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), format!("cw1.tok1.s3cret.{pin}\n")).unwrap();
        let yaml = format!(
            "trust_domain: east.example
controller:
  address: {addr}
  token_file: token
  data_dir: data
  name: edge-1
listeners:
  - name: payments
    listen: 127.0.0.1:0
    protocol: tcp
    service: payments
    port: 8080
    caller:
      identity: spiffe://east.example/ns/default/sa/frontend
",
            addr = ctl.addr
        );
        std::fs::write(dir.path().join("gateway.yaml"), yaml).unwrap();
        Self { dir }
    }

    pub fn client(&self) -> Arc<ControlClient> {
        ControlClient::load(
            &self.dir.path().join("gateway.yaml"),
            test_options(),
            &prometheus::Registry::new(),
        )
        .unwrap()
    }
}

pub fn test_options() -> ControlOptions {
    ControlOptions {
        timeout: Duration::from_secs(3),
        renew_backoff: Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(400),
        },
        reconnect_backoff: Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
        },
        holdings_interval: Duration::from_millis(100),
    }
}

/// A snapshot with a local service, a peer (with its bundle), an import
/// from it and a rule.
pub fn good_snapshot(version: u64, west: &TestDomain) -> pb::ConfigSnapshot {
    pb::ConfigSnapshot {
        version,
        bundles: vec![pb::Bundle {
            trust_domain: "west.example".into(),
            document: west.bundle().to_json(),
            sequence: 1,
            digest: authorities_digest(&west.bundle()),
        }],
        services: vec![pb::Service {
            name: "payments".into(),
            port: 8080,
            protocol: "tcp".into(),
            endpoints: vec!["127.0.0.1:9".into()],
        }],
        imports: vec![pb::Import {
            name: "ledger".into(),
            port: 80,
            peer: "west".into(),
            remote_service: String::new(),
            remote_port: 0,
        }],
        peers: vec![pb::Peer {
            name: "west".into(),
            trust_domain: "west.example".into(),
            gateways: vec![pb::PeerGateway {
                address: "127.0.0.1:4999".into(),
                id: "spiffe://west.example/causeway/gateway/w1".into(),
            }],
        }],
        authorization: vec![pb::Rule {
            service: "payments".into(),
            ports: vec![],
            allow: vec![pb::Principal {
                r#match: Some(pb::principal::Match::TrustDomain("west.example".into())),
            }],
        }],
        identity_map: vec![],
        svid_root: String::new(),
    }
}

/// Records every config; refuses with a set reason.
#[derive(Default)]
pub struct Recorder {
    configs: Mutex<Vec<GatewayConfig>>,
    refuse: Mutex<Option<String>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn configs(&self) -> Vec<GatewayConfig> {
        self.configs.lock().unwrap().clone()
    }
    pub fn refuse(&self, reason: &str) {
        *self.refuse.lock().unwrap() = Some(reason.into());
    }
}

impl ApplyConfig for Recorder {
    fn apply(&self, config: GatewayConfig) -> ApplyFuture<'_> {
        Box::pin(async move {
            if let Some(r) = self.refuse.lock().unwrap().clone() {
                return Err(r);
            }
            self.configs.lock().unwrap().push(config);
            Ok(())
        })
    }
}

/// Starts a real gateway at the first config (what the binary will do).
pub struct Starter {
    client: Arc<ControlClient>,
    running: tokio::sync::Mutex<Option<Running>>,
    ready: tokio::sync::Notify,
}

impl Starter {
    pub fn new(client: Arc<ControlClient>) -> Arc<Self> {
        Arc::new(Self {
            client,
            running: tokio::sync::Mutex::new(None),
            ready: tokio::sync::Notify::new(),
        })
    }

    /// The listeners of the started gateway, within 10 s.
    pub async fn wait_running(&self) -> BTreeMap<String, SocketAddr> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.ready.notified();
                if let Some(r) = self.running.lock().await.as_ref() {
                    return r.listeners.clone();
                }
                notified.await;
            }
        })
        .await
        .expect("the gateway never started")
    }
}

impl ApplyConfig for Starter {
    fn apply(&self, config: GatewayConfig) -> ApplyFuture<'_> {
        Box::pin(async move {
            let mut running = self.running.lock().await;
            if running.is_some() {
                // Swapping a running gateway's config is the live-config work.
                return Ok(());
            }
            let r = start_with(config, StartOptions::default())
                .await
                .map_err(|e| e.to_string())?;
            self.client
                .attach(r.credentials().clone(), r.metrics().clone());
            *running = Some(r);
            self.ready.notify_waiters();
            Ok(())
        })
    }
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
