//! Starting and stopping a controller: open the store, campaign, load the
//! CA, issue the serving SVID, bind the listeners, serve.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use causeway_exchange::RefreshPolicy;
use causeway_proto::controller::v1::admin_api_server::AdminApiServer;
use causeway_proto::controller::v1::gateway_api_server::GatewayApiServer;
use causeway_store::{EmbeddedStore, EtcdConfig, EtcdStore, KeepAlive, Store};
use causeway_trust::tls::SvidSource;
use prometheus::Registry;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;

use crate::admin::Admin;
use crate::api::Api;
use crate::ca::{self, LiveCa, hex};
use crate::config::CaSource;
use crate::config::{ControllerConfig, StoreConfig};
use crate::error::{ControllerError, Result};
use crate::federate::Federate;
use crate::federation::FederationApi;
use crate::front;
use crate::health::{self, HealthState};
use crate::identity;
use crate::identity::ReplicaRecord;
use crate::issuance::Issuer;
use crate::leader::LeaderTask;
use crate::metrics::Metrics;
use crate::rotation::Rotations;
use crate::snapshot;
use crate::stream::Streams;
use crate::verify::Verifier;
use crate::view;

/// What the embedding process chooses.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// Where the controller's metrics are registered.
    pub registry: Registry,
    /// The TTL of the leader's lease and of this replica's stream statuses.
    pub lease_ttl: Duration,
    /// How the leader refreshes peers' bundles from their endpoints.
    pub refresh: RefreshPolicy,
    /// How often a root rotation's wait checks whether it is met.
    pub rotation_poll: Duration,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            registry: Registry::new(),
            lease_ttl: Duration::from_secs(5),
            refresh: RefreshPolicy::default(),
            rotation_poll: Duration::from_millis(200),
        }
    }
}

/// A running controller.
#[derive(Debug)]
pub struct Running {
    /// The gateway API (gRPC over TLS).
    pub api: SocketAddr,
    pub admin_socket: PathBuf,
    pub metrics: Option<SocketAddr>,
    /// The public port: bundle endpoint (`https://<addr>/`) and federation
    /// API.
    pub federation: Option<SocketAddr>,
    /// The pin join tokens carry (SHA-256 of the root) when it started;
    /// [`Running::ca`] has the one in use now.
    pub pin: String,
    /// The CA in use (a root rotation replaces it).
    pub ca: LiveCa,
    pub metrics_handle: Metrics,
    store: Arc<dyn Store>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
    keep_alive: Option<KeepAlive>,
}

/// Starts a controller; returns once every listener is bound and it serves.
pub async fn start(config: ControllerConfig, options: StartOptions) -> Result<Running> {
    let metrics =
        Metrics::new(&options.registry).map_err(|e| ControllerError::Tls(e.to_string()))?;
    let store = open_store(&config).await?;
    let node = node_id();
    tracing::info!(trust_domain = %config.trust_domain, %node, "controller starting");
    let mut tasks = Vec::new();
    let (federate_tx, federate_rx) = watch::channel(None);
    tasks.push(
        LeaderTask {
            store: store.clone(),
            trust_domain: config.trust_domain.clone(),
            ca: config.ca.clone(),
            node: node.clone(),
            metrics: metrics.clone(),
            lease_ttl: options.lease_ttl,
            federate: federate_rx,
            rotation_poll: options.rotation_poll,
        }
        .spawn(),
    );
    let lease = store.grant(options.lease_ttl).await?;
    let keep_alive = KeepAlive::spawn(store.clone(), lease.id, lease.ttl);

    let first = ca::load(&store, &config.trust_domain, &config.ca).await?;
    let initial_bundle = first.bundle();
    let live = LiveCa::new(first);
    if let CaSource::Store { .. } = config.ca {
        tasks.push(ca::follow(
            store.clone(),
            config.trust_domain.clone(),
            live.clone(),
        ));
    }
    let svid = SvidSource::new(identity::issue(&live.current(), config.svid_ttl)?)
        .map_err(|e| ControllerError::Tls(e.to_string()))?;
    metrics
        .svids_issued
        .with_label_values(&["controller"])
        .inc();
    tasks.push(identity::spawn_renewal(
        live.clone(),
        svid.clone(),
        config.svid_ttl,
        metrics.clone(),
        ReplicaRecord {
            store: store.clone(),
            node: node.clone(),
            lease: lease.id,
        },
    ));
    let (view, view_tasks) = view::spawn(&store, &config.trust_domain, initial_bundle);
    tasks.extend(view_tasks);
    federate_tx.send_replace(Some(Federate {
        store: store.clone(),
        svid: svid.clone(),
        view: view.clone(),
        metrics: metrics.clone(),
        policy: options.refresh.clone(),
    }));
    let tls = Arc::new(crate::tls::server_config(
        &svid,
        view.own.clone(),
        &config.trust_domain,
    )?);
    let (feed, feed_task) = snapshot::spawn_feed(store.clone(), metrics.clone());
    tasks.push(feed_task);

    let (shutdown, _) = watch::channel(false);
    let mut servers = Vec::new();

    let api_listener = TcpListener::bind(config.api_listen)
        .await
        .map_err(|e| ControllerError::io(format!("bind api.listen {}", config.api_listen), e))?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|e| ControllerError::io("api listener address", e))?;
    let api = Api {
        issuer: Issuer {
            store: store.clone(),
            ca: live.clone(),
            svid_ttl: config.svid_ttl,
            metrics: metrics.clone(),
        },
        streams: Streams {
            store: store.clone(),
            trust_domain: config.trust_domain.clone(),
            feed,
            metrics: metrics.clone(),
            lease: lease.id,
            node: node.clone(),
        },
    };
    let incoming = crate::tls::accept(api_listener, tls);
    let mut stop = shutdown.subscribe();
    servers.push(tokio::spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(GatewayApiServer::new(api))
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "gateway API server ended");
        }
    }));

    let admin_listener = bind_private_socket(&config.admin_socket)?;
    let verifier = Verifier {
        store: store.clone(),
        trust_domain: config.trust_domain.clone(),
        svid: svid.clone(),
        view: view.clone(),
    };
    let admin = Admin {
        store: store.clone(),
        ca: live.clone(),
        metrics: metrics.clone(),
        join_token_ttl: config.join_token_ttl,
        verifier: verifier.clone(),
        rotations: Rotations {
            store: store.clone(),
            ca: live.clone(),
            source: config.ca.clone(),
            verifier,
            metrics: metrics.clone(),
        },
    };
    let mut stop = shutdown.subscribe();
    servers.push(tokio::spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_service(AdminApiServer::new(admin))
            .serve_with_incoming_shutdown(UnixListenerStream::new(admin_listener), async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "admin API server ended");
        }
    }));

    let health_state = Arc::new(HealthState {
        registry: options.registry.clone(),
        metrics: metrics.clone(),
        store: store.clone(),
        ready: AtomicBool::new(false),
        own: view.own_changes.clone(),
    });
    let metrics_addr = match config.metrics_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| ControllerError::io(format!("bind metrics.listen {addr}"), e))?;
            let bound = l
                .local_addr()
                .map_err(|e| ControllerError::io("metrics listener address", e))?;
            tasks.push(health::spawn(l, health_state.clone()));
            Some(bound)
        }
        None => None,
    };
    let federation_addr = match config.federation_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| ControllerError::io(format!("bind federation.listen {addr}"), e))?;
            let bound = l
                .local_addr()
                .map_err(|e| ControllerError::io("federation listener address", e))?;
            let front_tls = Arc::new(crate::tls::front_config(&svid, view.peers.clone())?);
            tasks.push(front::serve(
                l,
                front_tls,
                view.served.clone(),
                view.peers.clone(),
                FederationApi {
                    store: store.clone(),
                    trust_domain: config.trust_domain.clone(),
                    metrics: metrics.clone(),
                },
            ));
            Some(bound)
        }
        None => None,
    };
    health_state.ready.store(true, Ordering::Relaxed);
    tracing::info!(api = %api_addr, admin = %config.admin_socket.display(), "controller serving");
    Ok(Running {
        api: api_addr,
        admin_socket: config.admin_socket.clone(),
        metrics: metrics_addr,
        federation: federation_addr,
        pin: live.current().pin.clone(),
        ca: live,
        metrics_handle: metrics,
        store,
        shutdown,
        servers,
        tasks,
        keep_alive: Some(keep_alive),
    })
}

impl Running {
    /// The CA state is in the store; this is its pin for join tokens.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stops serving, resigns leadership, ends this replica's lease (its
    /// gateways' stream statuses go with it), and releases the store.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for s in self.servers.drain(..) {
            let abort = s.abort_handle();
            if tokio::time::timeout(Duration::from_secs(3), s)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(ka) = self.keep_alive.take() {
            let lease = ka.lease();
            drop(ka);
            let _ = self.store.revoke(lease).await;
        }
        // Background work (resigning, revoking) holds the store for a
        // moment; wait so that a restart in this process can open it again.
        for _ in 0..50 {
            if Arc::strong_count(&self.store) <= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn open_store(config: &ControllerConfig) -> Result<Arc<dyn Store>> {
    match &config.store {
        StoreConfig::Embedded => {
            create_private_dir(&config.data_dir)?;
            let store = EmbeddedStore::open(config.data_dir.join("store")).await?;
            Ok(Arc::new(store))
        }
        StoreConfig::Etcd { endpoints, prefix } => {
            let mut c = EtcdConfig::new(endpoints.clone(), config.trust_domain.as_str());
            if let Some(p) = prefix {
                c.namespace = p.clone();
            }
            Ok(Arc::new(EtcdStore::connect(&c).await?))
        }
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| ControllerError::io(format!("create {}", dir.display()), e))
}

/// Binds the admin socket under a temporary name, makes it 0600, then moves
/// it to its path: nobody else can connect in between.
fn bind_private_socket(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        create_private_dir(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)
        .map_err(|e| ControllerError::io(format!("bind admin socket {}", tmp.display()), e))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| ControllerError::io(format!("chmod {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| ControllerError::io(format!("move admin socket to {}", path.display()), e))?;
    Ok(listener)
}

fn node_id() -> String {
    let mut buf = [0u8; 6];
    let _ = SystemRandom::new().fill(&mut buf);
    hex(&buf)
}
