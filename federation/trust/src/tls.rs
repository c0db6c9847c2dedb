//! rustls wiring: the one crypto provider (ring) and TLS configs for mTLS
//! between SPIFFE identities, with the SVID and the bundles both swappable
//! while connections stay open.

use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::UnixTime;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme,
};

use crate::svid::Svid;
use crate::verify::SpiffeVerifier;

static PROVIDER: LazyLock<Arc<CryptoProvider>> =
    LazyLock::new(|| Arc::new(rustls::crypto::ring::default_provider()));

/// Signature algorithms accepted in chains and handshakes.
pub(crate) static RING_ALGORITHMS: LazyLock<WebPkiSupportedAlgorithms> =
    LazyLock::new(|| PROVIDER.signature_verification_algorithms);

/// The crypto provider used for every TLS config Causeway builds (ring, for
/// rustls, quinn and tonic alike).
pub fn provider() -> Arc<CryptoProvider> {
    PROVIDER.clone()
}

/// The TLS 1.2 handshake signature check with [`provider`]'s algorithms:
/// what every certificate verifier of Causeway's delegates to (their chain
/// checks differ, this does not).
pub fn verify_tls12_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(message, cert, dss, &RING_ALGORITHMS)
}

/// The TLS 1.3 handshake signature check, as [`verify_tls12_signature`].
pub fn verify_tls13_signature(
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(message, cert, dss, &RING_ALGORITHMS)
}

/// The signature schemes those checks accept.
pub fn supported_verify_schemes() -> Vec<SignatureScheme> {
    RING_ALGORITHMS.supported_schemes()
}

/// Installs ring as the process-wide default provider, for libraries that
/// build their own rustls configs. Idempotent.
pub fn install_default_provider() {
    // Err means a provider is already installed; with one crypto backend
    // compiled in, that is ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("SVID key cannot be used: {0}")]
    Key(rustls::Error),
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The current SVID of a party, swappable: a renewal applies to the next
/// handshake and leaves established connections alone.
#[derive(Debug, Clone)]
pub struct SvidSource {
    current: Arc<ArcSwap<CertifiedKey>>,
    svid: Arc<ArcSwap<Svid>>,
}

impl SvidSource {
    pub fn new(svid: Svid) -> Result<Self, TlsError> {
        let key = certified_key(&svid)?;
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(key)),
            svid: Arc::new(ArcSwap::from_pointee(svid)),
        })
    }

    /// Replaces the SVID for every config built from this source.
    pub fn replace(&self, svid: Svid) -> Result<(), TlsError> {
        let key = certified_key(&svid)?;
        self.current.store(Arc::new(key));
        self.svid.store(Arc::new(svid));
        Ok(())
    }

    /// The SVID in use.
    pub fn svid(&self) -> Arc<Svid> {
        self.svid.load_full()
    }
}

fn certified_key(svid: &Svid) -> Result<CertifiedKey, TlsError> {
    CertifiedKey::from_der(svid.chain().to_vec(), svid.key().clone_key(), &PROVIDER)
        .map_err(TlsError::Key)
}

impl ResolvesServerCert for SvidSource {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl ResolvesClientCert for SvidSource {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// A server config that requires a client SVID accepted by `verifier`.
pub fn server_config(
    svid: &SvidSource,
    verifier: Arc<SpiffeVerifier>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(svid.clone()));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No resumption: every handshake verifies the peer against the bundles
    // held now and presents the SVID held now. A resumed session would skip
    // both, and keep a peer in after its root left the bundle. Connections
    // are long-lived and reused, so full handshakes cost little.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// A client config that presents its SVID and accepts servers `verifier`
/// accepts.
pub fn client_config(
    svid: &SvidSource,
    verifier: Arc<SpiffeVerifier>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_cert_resolver(Arc::new(svid.clone()));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // No resumption, for the reason given in `server_config`.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// A SPIFFE client verifier that asks for a client certificate without
/// requiring one: a client that sends one must pass the inner verifier; the
/// server decides what a client without one may do.
#[derive(Debug)]
pub struct OptionalClientAuth(pub Arc<SpiffeVerifier>);

impl ClientCertVerifier for OptionalClientAuth {
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0.verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls12_signature(&*self.0, message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls13_signature(&*self.0, message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ClientCertVerifier::supported_verify_schemes(&*self.0)
    }
}
