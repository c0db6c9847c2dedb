//! Clients of the controller's APIs: the admin API over its Unix socket
//! (the CLI), and the gateway API over TLS with the root pinned by a join
//! token or with a gateway's SVID (the gateway, and tests).

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use causeway_proto::controller::v1::admin_api_client::AdminApiClient;
use causeway_proto::controller::v1::gateway_api_client::GatewayApiClient;
use causeway_proto::federation::v1::federation_client::FederationClient;
use causeway_trust::pinned::PinnedController;
use causeway_trust::tls::{SvidSource, provider};
use causeway_trust::{
    BundleSet, Expected, SharedBundles, SpiffeVerifier, TrustBundle, TrustDomain,
};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};
use tower::service_fn;

use crate::gateways::CONTROLLER_PATH;

/// The admin API of the controller listening on `socket`.
pub async fn admin(socket: &Path) -> Result<AdminApiClient<Channel>, tonic::transport::Error> {
    let path: PathBuf = socket.to_owned();
    let channel = Endpoint::from_static("http://controller.admin")
        .connect_with_connector(service_fn(move |_| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await?;
    Ok(AdminApiClient::new(channel))
}

/// TLS for Join: no client certificate; the controller must present the
/// root whose SHA-256 is `pin` and the controller SVID of `td` chaining to
/// it.
pub fn join_tls(pin: &str, td: &TrustDomain) -> Result<ClientConfig, rustls::Error> {
    let controller = td
        .workload_id(CONTROLLER_PATH)
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let verifier = PinnedController::new(pin.to_ascii_lowercase(), td.clone(), controller);
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Mutual TLS with a gateway's SVID, for Renew and the config stream; the
/// controller must present the controller SVID of `own`'s trust domain.
pub fn svid_tls(svid: &SvidSource, own: TrustBundle) -> Result<ClientConfig, String> {
    let td = own.trust_domain().clone();
    let set = BundleSet::from_bundles([own]).map_err(|e| format!("{e:?}"))?;
    let controller = td.workload_id(CONTROLLER_PATH).map_err(|e| e.to_string())?;
    let verifier = Arc::new(SpiffeVerifier::new(
        SharedBundles::new(set),
        Expected::ids([controller]),
    ));
    causeway_trust::tls::client_config(svid, verifier, &[b"h2"]).map_err(|e| e.to_string())
}

/// The federation API of the peer controller at `host:port` (its public
/// port), over TLS with `config`; connects lazily, on the first call.
pub fn federation(
    host: &str,
    port: u16,
    config: ClientConfig,
) -> Result<FederationClient<Channel>, io::Error> {
    let connector = TlsConnector::from(Arc::new(config));
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let name = ServerName::try_from(bare.clone())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let channel = Endpoint::from_static("http://peer.federation")
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(10))
        .connect_with_connector_lazy(service_fn(move |_| {
            let connector = connector.clone();
            let bare = bare.clone();
            let name = name.clone();
            async move {
                let tcp = TcpStream::connect((bare.as_str(), port)).await?;
                let _ = tcp.set_nodelay(true);
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(tls))
            }
        }));
    Ok(FederationClient::new(channel))
}

/// A channel to the gateway API at `addr` over TLS with `config`.
pub async fn gateway(
    addr: SocketAddr,
    config: ClientConfig,
) -> Result<GatewayApiClient<Channel>, tonic::transport::Error> {
    let connector = TlsConnector::from(Arc::new(config));
    let channel = Endpoint::from_static("http://controller.api")
        .connect_with_connector(service_fn(move |_| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                let name = ServerName::try_from("controller.causeway.invalid")
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, io::Error>(TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(GatewayApiClient::new(channel))
}
