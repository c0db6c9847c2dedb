//! Authenticating a controller by a pinned root, for a join: the caller has
//! no bundle yet, only the SHA-256 of the root (carried by the join token).
//! The presented chain must contain that root, and the leaf must chain to
//! it and carry the controller's ID.

use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::hash::sha256_hex;
use crate::{BundleSet, Expected, PeerRole, SpiffeId, TrustBundle, TrustDomain, VerifyError};

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

/// The server verifier of a join: the presented chain must contain the
/// pinned root, the leaf must chain to it and be the controller's ID. The
/// refusal is kept for the caller (tonic flattens handshake errors to text).
#[derive(Debug)]
pub struct PinnedController {
    pin: String,
    trust_domain: TrustDomain,
    controller: SpiffeId,
    refusal: Mutex<Option<PinRefusal>>,
    root: Mutex<Option<CertificateDer<'static>>>,
}

impl PinnedController {
    pub fn new(pin: String, trust_domain: TrustDomain, controller: SpiffeId) -> Arc<Self> {
        Arc::new(Self {
            pin,
            trust_domain,
            controller,
            refusal: Mutex::new(None),
            root: Mutex::new(None),
        })
    }

    /// The last refusal, if the handshake failed on the certificate.
    pub fn refusal(&self) -> Option<PinRefusal> {
        self.refusal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The pinned root, once a handshake found it.
    pub fn root(&self) -> Option<CertificateDer<'static>> {
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
        crate::tls::verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crate::tls::verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        crate::tls::supported_verify_schemes()
    }
}
