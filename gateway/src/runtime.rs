//! A running gateway: credentials loaded from the config's files, the peer
//! listener and the local listeners bound, every task started; and its
//! drain on shutdown.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use causeway_trust::SharedBundles;
use causeway_trust::tls::SvidSource;
use causeway_trust::verify::RefusalObserver;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{AdminServer, AdminState};
use crate::apply::{Applied, ApplyError, ConfigApplier, PeerTls};
use crate::config::{CallerMode, GatewayConfig};
use crate::creds::{
    Credentials, DEFAULT_RELOAD_INTERVAL, LoadError, ReloadTask, load_bundles, load_svid,
};
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::proxy::inbound::accept::{Inbound, bind_peer_endpoint};
use crate::proxy::outbound::Outbound;
use crate::proxy::outbound::accept::{self as listener, tls_acceptor};
use crate::state::{Live, Origin, Snapshot};
use crate::transport::dial::{PeerDialer, PeerSlots};
use crate::transport::quic::{TunnelError, codes};

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Credentials(#[from] LoadError),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tunnel(#[from] TunnelError),
}

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// Where peer gateways connect (QUIC), if configured.
    pub peer_listener: Option<SocketAddr>,
    /// Each local listener's bound address, by name.
    pub listeners: BTreeMap<String, SocketAddr>,
    /// Where the admin listener answers, if configured.
    pub admin: Option<SocketAddr>,
    endpoint: Option<quinn::Endpoint>,
    tasks: Vec<JoinHandle<()>>,
    drain: Drain,
    control: Control,
    applier: ConfigApplier,
}

/// The admin listener, the credential reload task and what they share.
/// Dropping it stops both.
#[derive(Debug)]
struct Control {
    metrics: Arc<Metrics>,
    credentials: Arc<Credentials>,
    admin_state: Arc<AdminState>,
    _admin: Option<AdminServer>,
    _reload: ReloadTask,
}

/// How a gateway runs, beyond its config.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Where the gateway's metrics are registered (no global registry).
    pub registry: prometheus::Registry,
    /// How often the credential files are read for changes.
    pub reload_interval: Duration,
    /// Where the start config came from (shown in /config_dump).
    pub origin: Origin,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            registry: prometheus::Registry::new(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
            origin: Origin::default(),
        }
    }
}

/// Logs and counts every handshake refusal with its reason and what it
/// refused.
fn log_refusals(metrics: &Arc<Metrics>) -> RefusalObserver {
    let metrics = metrics.clone();
    Arc::new(move |e, role| {
        metrics.handshake_failure(e.reason(), role);
        warn!(reason = e.reason(), peer_role = ?role, "handshake refused: {e}");
    })
}

/// Loads credentials, binds every listener and starts serving, with the
/// default [`StartOptions`].
pub async fn start(config: GatewayConfig) -> Result<Running, StartError> {
    start_with(config, StartOptions::default()).await
}

/// Loads credentials, binds every listener and starts serving.
pub async fn start_with(
    config: GatewayConfig,
    options: StartOptions,
) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let drain = Drain::new();
    let svid = SvidSource::new(load_svid(&config)?).map_err(|e| LoadError::File {
        path: config.credentials.svid_key.clone(),
        detail: e.to_string(),
    })?;
    let bundles = SharedBundles::new(load_bundles(&config)?);
    let metrics = Arc::new(Metrics::new(options.registry));
    let observer = log_refusals(&metrics);
    let family = config
        .peers
        .values()
        .flat_map(|p| p.gateways.first())
        .map(|g| g.addr.ip())
        .next();
    let bind_ip = match family {
        Some(IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let dialer = PeerDialer::new(
        &svid,
        &bundles,
        Some(observer.clone()),
        SocketAddr::new(bind_ip, 0),
    )?;
    // From here the config in effect has one owner: `live`.
    let slots = dialer.slots(&config, &PeerSlots::new())?;
    let live = Live::new(Snapshot::first(config.clone(), slots, options.origin));
    // And the credentials have one owner: the reload task.
    let credentials = Credentials::new(
        config.clone(),
        svid.clone(),
        bundles.clone(),
        metrics.clone(),
    );
    let admin_state = AdminState::with_live(live.clone(), metrics.clone(), credentials.clone());
    let admin = match config.admin {
        Some(addr) => Some(
            AdminServer::start(addr, admin_state.clone())
                .await
                .map_err(|source| StartError::Bind {
                    what: "the admin listener".into(),
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let mut tasks = Vec::new();

    let mut endpoint = None;
    let mut peer_listener = None;
    let mut peer_tls = None;
    if let Some(addr) = config.peer_listener {
        let ep = bind_peer_endpoint(&config, &svid, &bundles, Some(observer.clone()), addr)?;
        peer_listener = ep.local_addr().ok();
        let inbound = Inbound::with_parts(live.clone(), metrics.clone(), drain.clone());
        tasks.push(tokio::spawn(Arc::new(inbound).serve_endpoint(ep.clone())));
        peer_tls = Some(PeerTls {
            endpoint: ep.clone(),
            svid: svid.clone(),
            bundles: bundles.clone(),
            observer: Some(observer.clone()),
        });
        endpoint = Some(ep);
    }

    let outbound = Arc::new(Outbound::with_parts(
        live.clone(),
        dialer,
        metrics.clone(),
        drain.clone(),
    ));
    let applier = ConfigApplier::new(
        live,
        outbound.clone(),
        credentials.clone(),
        peer_tls,
        drain.clone(),
    );

    let mut listeners = BTreeMap::new();
    for l in &config.listeners {
        let tls = match l.caller {
            CallerMode::Mtls => Some(
                tls_acceptor(
                    l,
                    &config.trust_domain,
                    &svid,
                    &bundles,
                    Some(observer.clone()),
                )
                .map_err(TunnelError::from)?,
            ),
            CallerMode::Assigned(_) => None,
        };
        let socket = TcpListener::bind(l.addr)
            .await
            .map_err(|source| StartError::Bind {
                what: format!("listener {:?}", l.name),
                addr: l.addr,
                source,
            })?;
        listeners.insert(l.name.clone(), socket.local_addr().unwrap_or(l.addr));
        tasks.push(tokio::spawn(listener::serve(
            socket,
            l.clone(),
            tls,
            outbound.clone(),
        )));
    }
    let reload = credentials.spawn(options.reload_interval);
    admin_state.set_ready(peer_listener, &listeners);
    let admin_addr = admin.as_ref().map(AdminServer::local_addr);
    info!(id = %config.id, peer_listener = ?peer_listener, listeners = ?listeners,
        admin = ?admin_addr, "gateway started");
    Ok(Running {
        peer_listener,
        listeners,
        admin: admin_addr,
        endpoint,
        tasks,
        drain,
        control: Control {
            metrics,
            credentials,
            admin_state,
            _admin: admin,
            _reload: reload,
        },
        applier,
    })
}

impl Running {
    /// The gateway's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.control.metrics
    }

    /// The live credentials (the SVID and bundles in use).
    pub fn credentials(&self) -> &Arc<Credentials> {
        &self.control.credentials
    }

    /// Reads the credential files now instead of at the next tick (SIGHUP).
    pub fn reload_now(&self) {
        self.control.credentials.reload_now();
    }

    /// The snapshot of the config in effect.
    pub fn current(&self) -> Arc<Snapshot> {
        self.applier.current()
    }

    /// Puts a new config in effect without dropping anything open (see
    /// [`ConfigApplier::apply`]); `origin` says where it came from.
    pub fn apply_config(&self, new: GatewayConfig, origin: Origin) -> Result<Applied, ApplyError> {
        self.applier.apply(new, origin)
    }

    /// Re-reads a config file and applies it (SIGHUP).
    pub fn apply_file(&self, path: &Path) -> Result<Applied, ApplyError> {
        self.applier.apply_file(path)
    }

    /// A handle that applies configs, to move into a task.
    pub fn applier(&self) -> ConfigApplier {
        self.applier.clone()
    }

    /// Answers not ready on /readyz; stops accepting connections, streams
    /// and requests; lets open calls finish for up to `grace`; then closes
    /// the peer connections with DRAINING. The admin listener answers until
    /// the end.
    pub async fn shutdown(self, grace: Duration) {
        self.control.admin_state.set_draining();
        {
            // No apply may set a server config again behind the drain.
            let _applies = self.applier.lock();
            self.drain.start();
            if let Some(ep) = &self.endpoint {
                ep.set_server_config(None);
            }
        }
        let open = self.drain.wait(grace).await;
        if open > 0 {
            warn!(open, "drain grace period over; closing open calls");
        }
        for t in &self.tasks {
            t.abort();
        }
        if let Some(ep) = self.endpoint {
            ep.close(codes::DRAINING, b"draining");
        }
        info!("gateway stopped");
    }
}
