//! TLS to the controller, with our own rustls configs (SPIFFE verification,
//! not web PKI) under tonic's Channel through a custom connector.
//!
//! - Join: no client certificate; the controller is authenticated with the
//!   root pinned in the join token ([`PinnedController`]).
//! - Renew and the config stream: mutual TLS with the gateway's SVID; the
//!   controller must present `spiffe://<td>/causeway/controller` chaining
//!   to the bundle the gateway holds for its own trust domain.

use std::sync::Arc;
use std::time::Duration;

use causeway_trust::tls::{SvidSource, provider};
use causeway_trust::{BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Svid};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::config::control::ControllerSettings;

/// How often an idle connection to the controller is pinged (HTTP/2).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// ALPN for gRPC over TLS.
const H2: &[u8] = b"h2";

pub use causeway_trust::hash::{hex, sha256_hex};
pub use causeway_trust::pinned::PinRefusal;
pub(crate) use causeway_trust::pinned::PinnedController;

/// The client config of a join: no client certificate, the pinned verifier.
pub(crate) fn join_config(verifier: Arc<PinnedController>) -> Result<ClientConfig, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![H2.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The client config of renewals and the config stream: the SVID, and the
/// controller's ID checked against `bundles`.
pub(crate) fn mtls_config(
    svid: &Svid,
    bundles: BundleSet,
    controller: &SpiffeId,
) -> Result<ClientConfig, String> {
    let source = SvidSource::new(svid.clone()).map_err(|e| e.to_string())?;
    let verifier = SpiffeVerifier::new(
        SharedBundles::new(bundles),
        Expected::ids([controller.clone()]),
    );
    causeway_trust::tls::client_config(&source, Arc::new(verifier), &[H2])
        .map_err(|e| e.to_string())
}

/// A gRPC channel to the controller over `config`, connected now.
pub(crate) async fn connect(
    settings: &ControllerSettings,
    config: ClientConfig,
    timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let connector = TlsConnector::from(Arc::new(config));
    let address = settings.address.clone();
    let host = settings.host.clone();
    let service = tower::service_fn(move |_uri: http::Uri| {
        let connector = connector.clone();
        let address = address.clone();
        let host = host.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            let _ = tcp.set_nodelay(true);
            // SPIFFE authenticates the URI SAN; the name only feeds SNI.
            let name = ServerName::try_from(host)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            let tls = connector.connect(name, tcp).await?;
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    // The scheme is only what tonic writes in :scheme; TLS is ours.
    Endpoint::from_shared(format!("http://{}", settings.address))?
        .connect_timeout(timeout)
        // A controller that vanishes without closing (a partition) ends the
        // stream after a missed ping, not never.
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(timeout)
        .keep_alive_while_idle(true)
        .connect_with_connector(service)
        .await
}
