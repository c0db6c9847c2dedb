//! A small GatewayApi server for the control client's tests: real TLS
//! (rustls, the controller's SVID chain with its root, client certificates
//! optional so that Join works without one), real gRPC (tonic), a real CA
//! that signs the client's CSRs. It can rotate its root as the controller
//! does: [`TestController::begin_rotation`] adds a new root to the own
//! bundle and issues from it, [`TestController::finish_rotation`] drops the
//! old one. The real controller replaces it in the end-to-end tests that
//! come with its merge.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    reason = "test support"
)]

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
    ApplyConfig, ApplyFuture, ControlClient, ControlOptions, ControlTasks, authorities_digest,
};
use causeway_gateway::runtime::{Running, StartOptions};
use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::gateway_api_server::{GatewayApi, GatewayApiServer};
use causeway_proto::controller::v1::gateway_message::Message as FromGateway;
use causeway_trust::testing::TestDomain;
use causeway_trust::tls::{OptionalClientAuth, provider};
use causeway_trust::verify::peer_id;
use causeway_trust::{
    BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, TrustBundle, Validity,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
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
    /// The first root: the token's pin, what SVIDs are issued from until a
    /// rotation begins.
    pub domain: TestDomain,
    pub ttl: Duration,
    pub token: String,
    pub joins: AtomicUsize,
    pub renews: AtomicUsize,
    pub fail_renewals: AtomicBool,
    /// Renewals still answered from the first root, with the first own
    /// bundle, after a rotation began (a replica that has not caught up).
    pub stale_renewals: AtomicUsize,
    /// The new root, once a rotation began: SVIDs are issued from it.
    next: Mutex<Option<TestDomain>>,
    /// The own bundle sent with every SVID.
    own_bundle: Mutex<TrustBundle>,
    /// What client certificates are verified with.
    client_bundles: SharedBundles,
    server_cert: Arc<ServerCert>,
    server_path: String,
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
        let server_cert = Arc::new(ServerCert(Mutex::new(server_key(
            &domain,
            &setup.server_path,
        ))));
        let client_bundles =
            SharedBundles::new(BundleSet::from_bundles([domain.bundle()]).unwrap());
        let verifier = SpiffeVerifier::new(client_bundles.clone(), Expected::AnyKnownDomain);
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(Arc::new(OptionalClientAuth(Arc::new(verifier))))
            .with_cert_resolver(server_cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let pin = sha256_hex(domain.ca.roots()[0].as_ref());
        let state = Arc::new(State {
            own_bundle: Mutex::new(domain.bundle()),
            domain,
            stale_renewals: AtomicUsize::new(0),
            next: Mutex::new(None),
            client_bundles,
            server_cert,
            server_path: setup.server_path.clone(),
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

    /// The pin of the root SVIDs are issued from now.
    pub fn issuing_pin(&self) -> String {
        match self.state.next.lock().unwrap().as_ref() {
            Some(next) => sha256_hex(next.ca.roots()[0].as_ref()),
            None => self.pin(),
        }
    }

    /// The own bundle, as sent with every SVID.
    pub fn own_bundle(&self) -> TrustBundle {
        self.state.own_bundle.lock().unwrap().clone()
    }

    /// Root rotation, first step: a new root, added to the own bundle
    /// (sequence 2) and to what client certificates are verified with;
    /// SVIDs are issued from it from now on (after `stale_renewals` more
    /// from the first root). Returns the new root's pin.
    pub fn begin_rotation(&self) -> String {
        let next = TestDomain::new("east.example");
        let roots = [self.state.domain.ca.roots(), next.ca.roots()].concat();
        self.set_own_bundle(TrustBundle::new(next.trust_domain.clone(), roots).with_sequence(2));
        let pin = sha256_hex(next.ca.roots()[0].as_ref());
        *self.state.next.lock().unwrap() = Some(next);
        pin
    }

    /// Root rotation, last step: the own bundle holds the new root only
    /// (sequence 3), and the server presents an SVID from it.
    pub fn finish_rotation(&self) {
        let next = self.state.next.lock().unwrap();
        let next = next.as_ref().expect("a rotation begun");
        self.set_own_bundle(next.bundle().with_sequence(3));
        *self.state.server_cert.0.lock().unwrap() = server_key(next, &self.state.server_path);
    }

    fn set_own_bundle(&self, bundle: TrustBundle) {
        self.state
            .client_bundles
            .store(BundleSet::from_bundles([bundle.clone()]).unwrap());
        *self.state.own_bundle.lock().unwrap() = bundle;
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

    /// Every message from the gateway so far, in order.
    pub async fn seen(&self) -> Vec<FromGateway> {
        let mut guard = self.events.lock().await;
        let (rx, seen) = &mut *guard;
        while let Ok(m) = rx.try_recv() {
            seen.push(m);
        }
        seen.clone()
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

/// The server's certificate, replaced when a rotation finishes.
#[derive(Debug)]
struct ServerCert(Mutex<Arc<CertifiedKey>>);

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.lock().unwrap().clone())
    }
}

/// An SVID for the server from `domain`, with its root in the chain.
fn server_key(domain: &TestDomain, path: &str) -> Arc<CertifiedKey> {
    let server = domain.svid(path);
    let mut chain = server.chain().to_vec();
    chain.push(domain.ca.roots()[0].clone());
    Arc::new(CertifiedKey::from_der(chain, server.key().clone_key(), &provider()).unwrap())
}

/// The own bundle as a snapshot carries it.
pub fn bundle_entry(b: &TrustBundle) -> pb::Bundle {
    pb::Bundle {
        trust_domain: b.trust_domain().to_string(),
        document: b.to_json(),
        sequence: b.sequence().unwrap_or(0),
        digest: authorities_digest(b),
    }
}

struct Api(Arc<State>);

impl Api {
    /// Signs from the new root once a rotation began, unless `stale`.
    fn issue(&self, csr: &[u8], stale: bool) -> Result<pb::SvidResponse, Status> {
        let next = self.0.next.lock().unwrap();
        let d = match next.as_ref() {
            Some(n) if !stale => n,
            _ => &self.0.domain,
        };
        let issued =
            d.ca.sign_csr(csr, Validity::starting_now(self.0.ttl), |id| {
                id.as_str() == GATEWAY_ID
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let bundle = match stale {
            true => self.0.domain.bundle(),
            false => self.0.own_bundle.lock().unwrap().clone(),
        };
        Ok(pb::SvidResponse {
            spiffe_id: issued.info.spiffe_id.to_string(),
            chain_der: issued.chain.iter().map(|c| c.to_vec()).collect(),
            expires_unix: issued.info.not_after,
            own_bundle: Some(pb::Bundle {
                digest: String::new(),
                ..bundle_entry(&bundle)
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
        self.issue(&r.csr_der, false).map(Response::new)
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
        let stale = self
            .0
            .stale_renewals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        self.issue(&request.into_inner().csr_der, stale)
            .map(Response::new)
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

/// Starts a real gateway at the first config and applies the later ones,
/// as the binary does (`causeway_gateway::controlled`); within 10 s.
pub async fn start_controlled(client: &Arc<ControlClient>) -> (Running, ControlTasks) {
    let (rx, tasks) = causeway_gateway::controlled::spawn(client, StartOptions::default());
    let running = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the gateway never started")
        .expect("the control client stopped before the gateway started");
    (running, tasks)
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
