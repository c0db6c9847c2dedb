//! Peer verification: a chain is accepted only if the leaf is an X.509-SVID,
//! it is within its validity period, it chains to the current bundle of the
//! trust domain its own SPIFFE ID names, and that ID is one the caller
//! expects. Each refusal is a typed [`VerifyError`] with a metric label.
//!
//! [`SpiffeVerifier`] plugs this into rustls on both sides. It reads the
//! bundles from a [`SharedBundles`] on every handshake, so a new bundle
//! applies to the next handshake without rebuilding any TLS config.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

use crate::bundle::TrustBundle;
use crate::id::{SpiffeId, TrustDomain};
use crate::svid::{self, ShapeError};

/// Why a peer's certificate chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("peer presented no certificate")]
    NoCertificate,
    #[error("peer certificate is not a valid X.509-SVID: {0}")]
    BadShape(#[from] ShapeError),
    #[error("{id} belongs to trust domain {trust_domain}, for which no bundle is held")]
    UnknownTrustDomain {
        id: SpiffeId,
        trust_domain: TrustDomain,
    },
    /// `certificate` is the leaf's SPIFFE ID, or an intermediate's subject.
    #[error("certificate {certificate} (serial {serial}) expired at {}", fmt_time(*not_after))]
    Expired {
        certificate: String,
        serial: String,
        not_after: i64,
    },
    #[error("certificate {certificate} (serial {serial}) is not valid before {}", fmt_time(*not_before))]
    NotYetValid {
        certificate: String,
        serial: String,
        not_before: i64,
    },
    #[error("{id} (serial {serial}) does not chain to the bundle of {trust_domain}: {detail}")]
    UntrustedChain {
        id: SpiffeId,
        serial: String,
        trust_domain: TrustDomain,
        detail: String,
    },
    #[error("{id} is not an expected peer (expected {expected})")]
    UnexpectedId { id: SpiffeId, expected: String },
}

impl VerifyError {
    /// Every value [`Self::reason`] returns, so that metrics can show each
    /// at zero before the first refusal.
    pub const REASONS: [&'static str; 7] = [
        "no_certificate",
        "bad_svid",
        "unknown_trust_domain",
        "expired",
        "not_yet_valid",
        "untrusted_chain",
        "unexpected_id",
    ];

    /// A short, closed-set label for metrics and structured logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::BadShape(_) => "bad_svid",
            Self::UnknownTrustDomain { .. } => "unknown_trust_domain",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::UntrustedChain { .. } => "untrusted_chain",
            Self::UnexpectedId { .. } => "unexpected_id",
        }
    }

    /// The refusal carried inside a rustls error, if it came from a
    /// [`SpiffeVerifier`].
    pub fn from_rustls(err: &rustls::Error) -> Option<&VerifyError> {
        match err {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<VerifyError>()
            }
            _ => None,
        }
    }

    /// The refusal behind an I/O error from a TLS stream (tokio-rustls and
    /// quinn report handshake failures this way).
    pub fn from_io(err: &std::io::Error) -> Option<&VerifyError> {
        let inner = err.get_ref()?;
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Self::from_rustls(tls);
        }
        inner.downcast_ref::<VerifyError>()
    }

    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

fn fmt_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{unix} (unix)"))
}

/// Which peer identities a party accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// Any identity of a trust domain whose bundle is held.
    AnyKnownDomain,
    /// Any of these exact IDs or any ID of these trust domains.
    OneOf {
        ids: Vec<SpiffeId>,
        trust_domains: Vec<TrustDomain>,
    },
}

impl Expected {
    pub fn ids(ids: impl IntoIterator<Item = SpiffeId>) -> Self {
        Self::OneOf {
            ids: ids.into_iter().collect(),
            trust_domains: Vec::new(),
        }
    }

    pub fn trust_domains(tds: impl IntoIterator<Item = TrustDomain>) -> Self {
        Self::OneOf {
            ids: Vec::new(),
            trust_domains: tds.into_iter().collect(),
        }
    }

    pub fn matches(&self, id: &SpiffeId) -> bool {
        match self {
            Self::AnyKnownDomain => true,
            Self::OneOf { ids, trust_domains } => {
                ids.contains(id) || trust_domains.iter().any(|td| id.is_member_of(td))
            }
        }
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AnyKnownDomain => f.write_str("any trust domain with a bundle"),
            Self::OneOf { ids, trust_domains } => {
                let items: Vec<String> = ids
                    .iter()
                    .map(|i| i.to_string())
                    .chain(trust_domains.iter().map(|td| format!("any ID of {td}")))
                    .collect();
                if items.is_empty() {
                    f.write_str("nobody")
                } else {
                    f.write_str(&items.join(", "))
                }
            }
        }
    }
}

/// A bundle with its trust anchors prepared for chain building.
#[derive(Debug)]
struct Anchored {
    bundle: TrustBundle,
    anchors: Vec<TrustAnchor<'static>>,
}

/// The bundles a party holds, one per trust domain: its own and its peers'.
#[derive(Debug, Clone, Default)]
pub struct BundleSet {
    by_domain: BTreeMap<TrustDomain, Arc<Anchored>>,
}

/// An authority in a bundle that cannot serve as a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authority {index} of the bundle of {trust_domain} cannot be a trust anchor: {detail}")]
pub struct AnchorError {
    pub trust_domain: TrustDomain,
    pub index: usize,
    pub detail: String,
}

impl BundleSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the bundle of its trust domain.
    pub fn insert(&mut self, bundle: TrustBundle) -> Result<(), AnchorError> {
        let mut anchors = Vec::with_capacity(bundle.x509_authorities().len());
        for (index, cert) in bundle.x509_authorities().iter().enumerate() {
            let anchor = webpki::anchor_from_trusted_cert(cert).map_err(|e| AnchorError {
                trust_domain: bundle.trust_domain().clone(),
                index,
                detail: format!("{e:?}"),
            })?;
            anchors.push(anchor.to_owned());
        }
        self.by_domain.insert(
            bundle.trust_domain().clone(),
            Arc::new(Anchored { bundle, anchors }),
        );
        Ok(())
    }

    /// A set built from bundles.
    pub fn from_bundles(
        bundles: impl IntoIterator<Item = TrustBundle>,
    ) -> Result<Self, AnchorError> {
        let mut set = Self::new();
        for b in bundles {
            set.insert(b)?;
        }
        Ok(set)
    }

    pub fn remove(&mut self, td: &TrustDomain) -> Option<TrustBundle> {
        self.by_domain.remove(td).map(|a| a.bundle.clone())
    }

    pub fn get(&self, td: &TrustDomain) -> Option<&TrustBundle> {
        self.by_domain.get(td).map(|a| &a.bundle)
    }

    pub fn bundles(&self) -> impl Iterator<Item = &TrustBundle> {
        self.by_domain.values().map(|a| &a.bundle)
    }

    /// Verifies a peer chain (leaf, then intermediates) at `now` for a TLS
    /// role, and returns the peer's SPIFFE ID.
    pub fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
        expected: &Expected,
    ) -> Result<SpiffeId, VerifyError> {
        let info = svid::check_leaf(leaf)?;
        let td = info.spiffe_id.trust_domain();
        let Some(anchored) = self.by_domain.get(&td) else {
            return Err(VerifyError::UnknownTrustDomain {
                id: info.spiffe_id,
                trust_domain: td,
            });
        };
        let now_secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        check_period(
            info.spiffe_id.as_str(),
            &info.serial,
            info.not_before,
            info.not_after,
            now_secs,
        )?;
        for cert in intermediates {
            if let Ok(s) = svid::summarize(cert) {
                check_period(&s.subject, &s.serial, s.not_before, s.not_after, now_secs)?;
            }
        }
        let untrusted = |detail: String| VerifyError::UntrustedChain {
            id: info.spiffe_id.clone(),
            serial: info.serial.clone(),
            trust_domain: td.clone(),
            detail,
        };
        let end_entity =
            webpki::EndEntityCert::try_from(leaf).map_err(|e| untrusted(format!("{e:?}")))?;
        let usage = match role {
            PeerRole::Client => webpki::KeyUsage::client_auth(),
            PeerRole::Server => webpki::KeyUsage::server_auth(),
        };
        end_entity
            .verify_for_usage(
                algorithms().all,
                &anchored.anchors,
                intermediates,
                now,
                usage,
                None,
                None,
            )
            .map_err(|e| untrusted(chain_error_detail(&e)))?;
        if !expected.matches(&info.spiffe_id) {
            return Err(VerifyError::UnexpectedId {
                id: info.spiffe_id,
                expected: expected.to_string(),
            });
        }
        Ok(info.spiffe_id)
    }
}

/// Whether `bundle` alone verifies `chain` (leaf first) now, for `role`
/// and `expected`: a bundle about to replace the one held must still verify
/// the certificate it arrived with, or its sender is locked out.
pub fn bundle_verifies_chain(
    bundle: &TrustBundle,
    chain: &[CertificateDer<'_>],
    role: PeerRole,
    expected: &Expected,
) -> Result<SpiffeId, String> {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err("no certificate presented".into());
    };
    let set = BundleSet::from_bundles([bundle.clone()]).map_err(|e| format!("{e:?}"))?;
    set.verify(leaf, intermediates, UnixTime::now(), role, expected)
        .map_err(|e| e.to_string())
}

fn chain_error_detail(e: &webpki::Error) -> String {
    match e {
        webpki::Error::UnknownIssuer => "issuer is not in the bundle".into(),
        webpki::Error::InvalidSignatureForPublicKey => "signature does not verify".into(),
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            "certificate lacks the extended key usage for this role".into()
        }
        other => format!("{other:?}"),
    }
}

fn check_period(
    certificate: &str,
    serial: &str,
    not_before: i64,
    not_after: i64,
    now: i64,
) -> Result<(), VerifyError> {
    if now > not_after {
        return Err(VerifyError::Expired {
            certificate: certificate.to_owned(),
            serial: serial.to_owned(),
            not_after,
        });
    }
    if now < not_before {
        return Err(VerifyError::NotYetValid {
            certificate: certificate.to_owned(),
            serial: serial.to_owned(),
            not_before,
        });
    }
    Ok(())
}

/// Which side of a TLS handshake the verified peer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    Client,
    Server,
}

/// Bundles shared between the owner that updates them and every verifier
/// that reads them. Cloning shares; `store` publishes to all.
#[derive(Debug, Clone)]
pub struct SharedBundles(Arc<ArcSwap<BundleSet>>);

impl SharedBundles {
    pub fn new(set: BundleSet) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(set)))
    }
    pub fn load(&self) -> Arc<BundleSet> {
        self.0.load_full()
    }
    pub fn store(&self, set: BundleSet) {
        self.0.store(Arc::new(set));
    }
}

fn algorithms() -> &'static WebPkiSupportedAlgorithms {
    &crate::tls::RING_ALGORITHMS
}

/// Called with every refusal a [`SpiffeVerifier`] makes, for metrics and
/// logs. Some transports (QUIC) keep only the text of a handshake error;
/// this is how the typed refusal still reaches the caller.
pub type RefusalObserver = Arc<dyn Fn(&VerifyError, PeerRole) + Send + Sync>;

/// A rustls certificate verifier (client and server side) that applies
/// [`BundleSet::verify`] with the current shared bundles.
#[derive(Clone)]
pub struct SpiffeVerifier {
    bundles: SharedBundles,
    expected: Arc<ArcSwap<Expected>>,
    observer: Option<RefusalObserver>,
}

impl fmt::Debug for SpiffeVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpiffeVerifier")
            .field("expected", &self.expected.load())
            .field("observed", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

impl SpiffeVerifier {
    pub fn new(bundles: SharedBundles, expected: Expected) -> Self {
        Self {
            bundles,
            expected: Arc::new(ArcSwap::from_pointee(expected)),
            observer: None,
        }
    }

    /// Reports every refusal to `observer` as well as failing the handshake.
    pub fn with_observer(mut self, observer: RefusalObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Changes which peers are expected, for the next handshakes.
    pub fn set_expected(&self, expected: Expected) {
        self.expected.store(Arc::new(expected));
    }

    pub fn bundles(&self) -> &SharedBundles {
        &self.bundles
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
    ) -> Result<(), rustls::Error> {
        self.bundles
            .load()
            .verify(end_entity, intermediates, now, role, &self.expected.load())
            .map(|_| ())
            .map_err(|e| {
                if let Some(observe) = &self.observer {
                    observe(&e, role);
                }
                e.into_rustls()
            })
    }
}

impl ServerCertVerifier for SpiffeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        // SPIFFE authenticates the URI SAN, not the name dialled.
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, PeerRole::Server)?;
        Ok(ServerCertVerified::assertion())
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

impl ClientCertVerifier for SpiffeVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, PeerRole::Client)?;
        Ok(ClientCertVerified::assertion())
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

/// The SPIFFE ID of a peer whose chain a [`SpiffeVerifier`] accepted.
pub fn peer_id(certs: Option<&[CertificateDer<'_>]>) -> Option<SpiffeId> {
    let leaf = certs?.first()?;
    svid::check_leaf(leaf).ok().map(|i| i.spiffe_id)
}

/// The root of `bundle` an SVID chain (leaf first, then intermediates)
/// leads to, checked by signature at the leaf's own validity (an SVID near
/// or past its end still names its root), or `None` when no root does.
/// Root rotation asks this: which SVIDs still chain to the old root.
pub fn issuing_root<'b>(
    chain: &[CertificateDer<'_>],
    bundle: &'b TrustBundle,
) -> Option<&'b CertificateDer<'static>> {
    let (leaf, intermediates) = chain.split_first()?;
    let info = svid::check_leaf(leaf).ok()?;
    let end_entity = webpki::EndEntityCert::try_from(leaf).ok()?;
    // A moment inside the leaf's validity: the question is who signed it,
    // not whether it is still good.
    let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(info.not_before.max(0)).unwrap_or(0) + 1,
    ));
    bundle.x509_authorities().iter().find(|root| {
        let Ok(anchor) = webpki::anchor_from_trusted_cert(root) else {
            return false;
        };
        end_entity
            .verify_for_usage(
                algorithms().all,
                &[anchor],
                intermediates,
                at,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .is_ok()
    })
}
