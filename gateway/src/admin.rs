//! The admin listener: a small HTTP/1.1 server for operators and probes.
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text exposition (`text/plain; version=0.0.4`) |
//! | `GET /healthz` | 200 `ok` while the process runs |
//! | `GET /readyz` | 200 once every listener is bound and the credentials are loaded; 503 with the reason while starting or draining |
//! | `GET /config_dump` | JSON: the validated config in effect (with where it came from: source, version, generation, when applied), the bound addresses, and the live credentials (SVID serial and validity, each bundle's sequence and digest, the last reload outcome per file) |
//!
//! A known path with another method gets 405 (with `Allow: GET`), any other
//! path 404. Nothing a client sends can panic the server: requests are
//! parsed by hyper, with a header timeout and a cap on open connections.
//! It is meant for a trusted address (loopback or the pod network); it
//! serves no secrets (never a private key).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::{CallerMode, GatewayConfig, ListenerKind, Principal};
use crate::creds::{Credentials, Expiry, rfc3339, unix_now};
use crate::metrics::Metrics;
use crate::state::Live;

/// The content type of the Prometheus text format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// Admin connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the gateway is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Binding listeners and loading credentials.
    Starting,
    /// Every listener bound, credentials loaded.
    Ready,
    /// Shutting down: no new work should be sent here.
    Draining,
}

/// Bound addresses, known once the listeners are bound.
#[derive(Debug, Clone, Default)]
struct Bound {
    admin: Option<SocketAddr>,
    peer_listener: Option<SocketAddr>,
    listeners: BTreeMap<String, SocketAddr>,
}

/// What the admin endpoints read: shared with the runtime, which moves the
/// phase on.
#[derive(Debug)]
pub struct AdminState {
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    credentials: Arc<Credentials>,
    phase: AtomicU8,
    bound: ArcSwap<Bound>,
}

impl AdminState {
    /// For a config that never changes (tests, tools).
    pub fn new(
        config: Arc<GatewayConfig>,
        metrics: Arc<Metrics>,
        credentials: Arc<Credentials>,
    ) -> Arc<Self> {
        Self::with_live(Live::without_dialer(config), metrics, credentials)
    }

    /// For a running gateway: the dump shows the config in effect.
    pub fn with_live(
        live: Arc<Live>,
        metrics: Arc<Metrics>,
        credentials: Arc<Credentials>,
    ) -> Arc<Self> {
        Arc::new(Self {
            live,
            metrics,
            credentials,
            phase: AtomicU8::new(Phase::Starting as u8),
            bound: ArcSwap::from_pointee(Bound::default()),
        })
    }

    /// Every listener is bound: record where, and answer ready.
    pub fn set_ready(
        &self,
        peer_listener: Option<SocketAddr>,
        listeners: &BTreeMap<String, SocketAddr>,
    ) {
        self.bound.rcu(|b| Bound {
            admin: b.admin,
            peer_listener,
            listeners: listeners.clone(),
        });
        self.phase.store(Phase::Ready as u8, Ordering::SeqCst);
        info!(config = %self.config_dump(), "effective config");
    }

    /// Shutdown has begun: answer not ready from now on.
    pub fn set_draining(&self) {
        self.phase.store(Phase::Draining as u8, Ordering::SeqCst);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::SeqCst) {
            x if x == Phase::Ready as u8 => Phase::Ready,
            x if x == Phase::Draining as u8 => Phase::Draining,
            _ => Phase::Starting,
        }
    }

    fn set_admin_addr(&self, addr: SocketAddr) {
        self.bound.rcu(|b| Bound {
            admin: Some(addr),
            ..(**b).clone()
        });
    }

    /// The config in effect, the bound addresses and the live credentials.
    pub fn config_dump(&self) -> Value {
        let snap = self.live.load();
        let c = &snap.config;
        let bound = self.bound.load();
        let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string());
        let listeners: Vec<Value> = c
            .listeners
            .iter()
            .map(|l| {
                let mut v = json!({
                    "name": l.name,
                    "listen": l.addr.to_string(),
                    "bound": addr(bound.listeners.get(&l.name).copied()),
                    "caller": match &l.caller {
                        CallerMode::Assigned(id) => json!({"identity": id.as_str()}),
                        CallerMode::Mtls => json!({"mtls": true}),
                    },
                });
                match &l.kind {
                    ListenerKind::Http => v["protocol"] = json!("http"),
                    ListenerKind::Tcp { destination } => {
                        v["protocol"] = json!("tcp");
                        v["service"] = json!(destination.service.as_str());
                        v["port"] = json!(destination.port);
                    }
                }
                v
            })
            .collect();
        let services: Vec<Value> = c
            .services
            .iter()
            .map(|(d, s)| {
                json!({
                    "name": d.service.as_str(),
                    "port": d.port,
                    "endpoints": s.endpoints.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        let imports: Vec<Value> = c
            .imports
            .iter()
            .map(|(d, i)| {
                json!({
                    "name": d.service.as_str(),
                    "port": d.port,
                    "peer": i.peer,
                    "remote_service": i.remote.service.as_str(),
                    "remote_port": i.remote.port,
                })
            })
            .collect();
        let peers: Vec<Value> = c
            .peers
            .iter()
            .map(|(name, p)| {
                json!({
                    "name": name,
                    "trust_domain": p.trust_domain.as_str(),
                    "gateways": p.gateways.iter()
                        .map(|g| json!({"address": g.addr.to_string(), "id": g.id.as_str()}))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        let rules: Vec<Value> = c
            .rules
            .iter()
            .map(|r| {
                json!({
                    "service": r.service.as_ref().map_or("*", |s| s.as_str()),
                    "ports": r.ports,
                    "allow": r.allow.iter().map(|p| match p {
                        Principal::Id(id) => json!({"id": id.as_str()}),
                        Principal::TrustDomain(td) => json!({"trust_domain": td.as_str()}),
                        Principal::Pattern(p) => json!({"pattern": p.as_str()}),
                        Principal::Local(p) => json!({"principal": p.as_str()}),
                    }).collect::<Vec<_>>(),
                })
            })
            .collect();
        let identity_map: Vec<Value> = (c.identity_map.rules().iter())
            .map(|r| {
                json!({
                    "peer_trust_domain": r.peer_trust_domain.as_str(),
                    "pattern": r.pattern.as_str(),
                    "principal": r.principal.as_str(),
                })
            })
            .collect();
        let l = &c.limits;
        let duration = |d: Duration| humantime::format_duration(d).to_string();
        json!({
            "state": phase_label(self.phase()),
            "config": {
                "source": snap.origin.source,
                "version": snap.origin.version,
                "generation": snap.generation,
                "applied_at": rfc3339(snap.applied_unix),
            },
            "trust_domain": c.trust_domain.as_str(),
            "id": c.id.as_str(),
            "admin": {"listen": addr(c.admin), "bound": addr(bound.admin)},
            "peer_listener": {"listen": addr(c.peer_listener), "bound": addr(bound.peer_listener)},
            "listeners": listeners,
            "services": services,
            "imports": imports,
            "peers": peers,
            "rules": rules,
            "identity_map": identity_map,
            "limits": {
                "max_header_bytes": l.max_header_bytes,
                "max_streams_per_connection": l.max_streams_per_connection,
                "max_streams_per_peer": l.max_streams_per_peer,
                "request_timeout": duration(l.request_timeout),
                "connect_timeout": duration(l.connect_timeout),
                "idle_timeout": duration(l.idle_timeout),
                "handshake_timeout": duration(l.handshake_timeout),
            },
            "credentials": self.credentials_dump(c),
        })
    }

    fn credentials_dump(&self, config: &GatewayConfig) -> Value {
        let files = &config.credentials;
        let status = self.credentials.status();
        let reload = |source: &str| {
            status.get(source).map(|s| {
                json!({
                    "last_result": s.last_result,
                    "last_error": s.last_error,
                    "last_swap": s.last_swap_unix.map(rfc3339),
                })
            })
        };
        let svid = self.credentials.svid();
        let i = svid.info();
        let now = unix_now();
        let bundles: serde_json::Map<String, Value> = self
            .credentials
            .bundles()
            .bundles()
            .map(|b| {
                let td = b.trust_domain().as_str();
                let v = json!({
                    "file": files.bundles.get(b.trust_domain()).map(|p| p.display().to_string()),
                    "sequence": b.sequence(),
                    "digest": b.digest(),
                    "x509_authorities": b.x509_authorities().len(),
                    "jwt_authorities": b.jwt_authorities().len(),
                    "refresh_hint_seconds": b.refresh_hint().map(|d| d.as_secs()),
                    "reload": reload(td),
                });
                (td.to_owned(), v)
            })
            .collect();
        json!({
            "svid": {
                "cert_file": files.svid_cert.display().to_string(),
                "key_file": files.svid_key.display().to_string(),
                "spiffe_id": i.spiffe_id.as_str(),
                "serial": i.serial,
                "issuer": i.issuer,
                "subject": i.subject,
                "chain_length": svid.chain().len(),
                "not_before": rfc3339(i.not_before),
                "not_after": rfc3339(i.not_after),
                "expires_in_seconds": i.not_after.saturating_sub(now),
                "expiry": Expiry::at(i.not_before, i.not_after, now).label(),
                "reload": reload(crate::creds::SVID_SOURCE),
            },
            "bundles": bundles,
        })
    }
}

fn phase_label(p: Phase) -> &'static str {
    match p {
        Phase::Starting => "starting",
        Phase::Ready => "ready",
        Phase::Draining => "draining",
    }
}

/// The running admin listener; stops serving when dropped.
#[derive(Debug)]
pub struct AdminServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AdminServer {
    /// Binds `addr` and serves the admin endpoints from `state`.
    pub async fn start(addr: SocketAddr, state: Arc<AdminState>) -> std::io::Result<Self> {
        let socket = TcpListener::bind(addr).await?;
        let addr = socket.local_addr()?;
        state.set_admin_addr(addr);
        let task = tokio::spawn(serve(socket, state));
        Ok(Self { addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn serve(socket: TcpListener, state: Arc<AdminState>) {
    let open = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, from) = match socket.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                warn!("admin accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            debug!(%from, "admin connection refused: {MAX_CONNECTIONS} already open");
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                debug!(%from, "admin connection ended: {e}");
            }
        });
    }
}

/// Answers one admin request.
pub fn handle<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz" | "/config_dump") {
        return text(StatusCode::NOT_FOUND, "not found\n".into());
    }
    if req.method() != Method::GET {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n".into());
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    match path {
        "/metrics" => {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(PROMETHEUS_CONTENT_TYPE),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => match state.phase() {
            Phase::Ready => text(StatusCode::OK, "ready\n".into()),
            Phase::Starting => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting: binding listeners and loading credentials\n".into(),
            ),
            Phase::Draining => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining: shutting down\n".into(),
            ),
        },
        _ => {
            let body = serde_json::to_string_pretty(&state.config_dump()).unwrap_or_default();
            let mut r = text(StatusCode::OK, body + "\n");
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
