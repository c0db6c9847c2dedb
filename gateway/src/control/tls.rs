//! TLS to the controller, with our own rustls configs (SPIFFE verification,
//! not web PKI) under tonic's Channel through a custom connector.
//!
//! - Join: no client certificate; the controller is authenticated with the
//!   root pinned in the join token ([`PinnedController`]).
//! - Renew and the config stream: mutual TLS with the gateway's SVID; the
//!   controller must present `spiffe://<td>/causeway/controller` chaining
//!   to the bundle the gateway holds for its own trust domain.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use causeway_trust::tls::{SvidSource, provider};
use causeway_trust::{
    BundleSet, Expected, PeerRole, SharedBundles, SpiffeId, SpiffeVerifier, Svid, TrustBundle,
    TrustDomain, VerifyError,
};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

use crate::config::control::ControllerSettings;

/// How often an idle connection to the controller is pinged (HTTP/2).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// ALPN for gRPC over TLS.
const H2: &[u8] = b"h2";

/// Why the controller's certificate was refused during a join.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinRefusal {
    #[error(
        "no certificate the controller presented ({presented}) is the root pinned in the join token"
    )]
    PinMismatch { presented: usize },
    #[error("the pinned root cannot be a trust anchor: {0}")]
    BadRoot(String),
    #[error("the controller's certificate, checked against the pinned root: {0}")]
    Verify(VerifyError),
}

pub use causeway_trust::hash::{hex, sha256_hex};

/// The server verifier of a join: the presented chain must contain the
/// pinned root, the leaf must chain to it and be the controller's ID. The
/// refusal is kept for the caller (tonic flattens handshake errors to text).
#[derive(Debug)]
pub(crate) struct PinnedController {
    pin: String,
    trust_domain: TrustDomain,
    controller: SpiffeId,
    refusal: Mutex<Option<PinRefusal>>,
    root: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedController {
    pub(crate) fn new(pin: String, trust_domain: TrustDomain, controller: SpiffeId) -> Arc<Self> {
        Arc::new(Self {
            pin,
            trust_domain,
            controller,
            refusal: Mutex::new(None),
            root: Mutex::new(None),
        })
    }

    /// The last refusal, if the handshake failed on the certificate.
    pub(crate) fn refusal(&self) -> Option<PinRefusal> {
        self.refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The pinned root, once a handshake found it.
    pub(crate) fn root(&self) -> Option<CertificateDer<'static>> {
        self.root
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), PinRefusal> {
        let root = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|c| sha256_hex(c) == self.pin)
            .ok_or(PinRefusal::PinMismatch {
                presented: 1 + intermediates.len(),
            })?
            .clone()
            .into_owned();
        let mut set = BundleSet::new();
        set.insert(TrustBundle::new(
            self.trust_domain.clone(),
            vec![root.clone()],
        ))
        .map_err(|e| PinRefusal::BadRoot(e.to_string()))?;
        set.verify(
            end_entity,
            intermediates,
            now,
            PeerRole::Server,
            &Expected::ids([self.controller.clone()]),
        )
        .map_err(PinRefusal::Verify)?;
        *self.root.lock().unwrap_or_else(PoisonError::into_inner) = Some(root);
        Ok(())
    }
}

impl ServerCertVerifier for PinnedController {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, now) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                *self.refusal.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        causeway_trust::tls::verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        causeway_trust::tls::verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        causeway_trust::tls::supported_verify_schemes()
    }
}

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
