//! A running gateway: credentials loaded from the config's files, the peer
//! listener and the local listeners bound, every task started; and its
//! drain on shutdown.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use causeway_trust::tls::SvidSource;
use causeway_trust::verify::RefusalObserver;
use causeway_trust::{BundleSet, SharedBundles, Svid, TrustBundle};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{GatewayConfig, ListenerKind};
use crate::listener::serve_tcp;
use crate::outbound::Outbound;
use crate::tunnel::dial::PeerDialer;
use crate::tunnel::quic::{TunnelError, codes};
use crate::tunnel::serve::{Inbound, bind_peer_endpoint};
use crate::upstream::LocalUpstreams;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{path}: {detail}")]
    Credentials { path: PathBuf, detail: String },
    #[error("the SVID in {path} is {found}, but the config says this gateway is {expected}")]
    WrongIdentity {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener {0:?}: http listeners are not served by this build yet")]
    HttpNotYet(String),
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
    endpoint: Option<quinn::Endpoint>,
    tasks: Vec<JoinHandle<()>>,
}

fn read(path: &Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|e| StartError::Credentials {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// The SVID named by the config, checked to carry the config's ID.
pub fn load_svid(config: &GatewayConfig) -> Result<Svid, StartError> {
    let c = &config.credentials;
    let svid = Svid::from_pem(&read(&c.svid_cert)?, &read(&c.svid_key)?).map_err(|e| {
        StartError::Credentials {
            path: c.svid_cert.clone(),
            detail: e.to_string(),
        }
    })?;
    if *svid.spiffe_id() != config.id {
        return Err(StartError::WrongIdentity {
            path: c.svid_cert.clone(),
            found: svid.spiffe_id().to_string(),
            expected: config.id.to_string(),
        });
    }
    Ok(svid)
}

/// The bundles named by the config (SPIFFE JSON or PEM files).
pub fn load_bundles(config: &GatewayConfig) -> Result<BundleSet, StartError> {
    let mut set = BundleSet::new();
    for (td, path) in &config.credentials.bundles {
        let bundle =
            TrustBundle::parse(td.clone(), &read(path)?).map_err(|e| StartError::Credentials {
                path: path.clone(),
                detail: e.to_string(),
            })?;
        set.insert(bundle).map_err(|e| StartError::Credentials {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    }
    Ok(set)
}

/// Logs every handshake refusal with its reason and what it refused.
fn log_refusals() -> RefusalObserver {
    Arc::new(|e, role| warn!(reason = e.reason(), peer_role = ?role, "handshake refused: {e}"))
}

/// Loads credentials, binds every listener and starts serving.
pub async fn start(config: GatewayConfig) -> Result<Running, StartError> {
    let config = Arc::new(config);
    if let Some(l) = config
        .listeners
        .iter()
        .find(|l| l.kind == ListenerKind::Http)
    {
        return Err(StartError::HttpNotYet(l.name.clone()));
    }
    let svid = SvidSource::new(load_svid(&config)?).map_err(|e| StartError::Credentials {
        path: config.credentials.svid_key.clone(),
        detail: e.to_string(),
    })?;
    let bundles = SharedBundles::new(load_bundles(&config)?);
    let mut tasks = Vec::new();

    let mut endpoint = None;
    let mut peer_listener = None;
    if let Some(addr) = config.peer_listener {
        let ep = bind_peer_endpoint(&config, &svid, &bundles, Some(log_refusals()), addr)?;
        peer_listener = ep.local_addr().ok();
        tasks.push(tokio::spawn(
            Arc::new(Inbound::new(config.clone())).serve_endpoint(ep.clone()),
        ));
        endpoint = Some(ep);
    }

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
        &config,
        &svid,
        &bundles,
        Some(log_refusals()),
        SocketAddr::new(bind_ip, 0),
    )?;
    let outbound = Arc::new(Outbound {
        upstreams: LocalUpstreams::from_config(&config),
        config: config.clone(),
        dialer,
    });

    let mut listeners = BTreeMap::new();
    for l in &config.listeners {
        let socket = TcpListener::bind(l.addr)
            .await
            .map_err(|source| StartError::Bind {
                what: format!("listener {:?}", l.name),
                addr: l.addr,
                source,
            })?;
        listeners.insert(l.name.clone(), socket.local_addr().unwrap_or(l.addr));
        let (l, outbound) = (l.clone(), outbound.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = serve_tcp(socket, l, outbound).await {
                warn!("listener stopped: {e}");
            }
        }));
    }
    info!(id = %config.id, peer_listener = ?peer_listener, listeners = ?listeners, "gateway started");
    Ok(Running {
        peer_listener,
        listeners,
        endpoint,
        tasks,
    })
}

impl Running {
    /// Stops accepting, tells peers the gateway is draining, and gives open
    /// streams up to `grace` to finish.
    pub async fn shutdown(self, grace: Duration) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(ep) = self.endpoint {
            ep.set_server_config(None);
            let _ = tokio::time::timeout(grace, ep.wait_idle()).await;
            ep.close(codes::DRAINING, b"draining");
        }
        info!("gateway stopped");
    }
}
