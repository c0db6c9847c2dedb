//! A trust domain's certificate authority: a root (ECDSA P-256), optionally an
//! intermediate below it or below an upstream root, and X.509-SVID issuance,
//! preferably from a CSR so that a key never leaves its owner.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
    SubjectPublicKeyInfo,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::id::{IdError, SpiffeId, TrustDomain};
use crate::pem;
use crate::svid::{self, Svid, SvidInfo};

/// Default lifetime of an X.509-SVID.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(3600);
/// Default lifetime of a root created by [`Authority::new_root`] callers.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default lifetime of an intermediate.
pub const DEFAULT_INTERMEDIATE_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// How far into the past a new certificate's notBefore is set, so that a
/// peer whose clock runs a little behind still accepts it.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60);

/// Why the CA refused or failed to issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("CSR is not a PKCS#10 certification request: {0}")]
    CsrUnparsable(String),
    #[error("CSR signature does not verify: the requester does not hold the key")]
    CsrBadSignature,
    #[error("CSR has no URI SAN; it must request exactly one SPIFFE ID")]
    CsrNoSpiffeId,
    #[error("CSR requests {count} URI SANs; it must request exactly one SPIFFE ID")]
    CsrMultipleUris { count: usize },
    #[error("requested {uri:?} is not a workload SPIFFE ID: {source}")]
    CsrInvalidId { uri: String, source: IdError },
    #[error("requested {id} is outside this CA's trust domain {trust_domain}")]
    CsrWrongTrustDomain {
        id: SpiffeId,
        trust_domain: TrustDomain,
    },
    #[error("CSR requests {id}, which the requester may not have")]
    CsrIdNotAllowed { id: SpiffeId },
    #[error("CSR key is not supported ({0}); use ECDSA P-256/P-384, Ed25519 or RSA")]
    CsrUnsupportedKey(String),
    #[error("requested lifetime is empty or negative")]
    BadLifetime,
    #[error("the signing certificate expired at {not_after} (unix seconds); nothing can be issued")]
    SignerExpired { not_after: i64 },
    #[error("the signing certificate is not a CA: {0}")]
    SignerNotCa(String),
    #[error("the signing key does not belong to the signing certificate")]
    SignerKeyMismatch,
    #[error("CA material is malformed: {0}")]
    Malformed(String),
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("no randomness available for a serial number")]
    Random,
}

/// The validity window of a certificate to be issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From now (less the clock skew allowance) for `ttl`.
    pub fn starting_now(ttl: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            not_before: now - CLOCK_SKEW_ALLOWANCE,
            not_after: now + ttl,
        }
    }

    /// A window of `ttl` that started `ago` in the past: with `ago > ttl` the
    /// certificate is already expired (for tests and drills).
    pub fn backdated(ttl: Duration, ago: Duration) -> Self {
        let start = OffsetDateTime::now_utc() - ago;
        Self {
            not_before: start,
            not_after: start + ttl,
        }
    }
}

/// A CA certificate with its key.
#[derive(Debug)]
pub struct Authority {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    not_after: i64,
}

impl Authority {
    /// A new self-signed root for a trust domain, with an ECDSA P-256 key.
    pub fn new_root(td: &TrustDomain, ttl: Duration) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(td, "root", Validity::starting_now(ttl), None)?;
        let cert = params.self_signed(&key)?;
        Self::from_parts(cert.der().clone(), key)
    }

    /// A new intermediate below `parent` (a root of this trust domain or an
    /// upstream root). Path length 0: it signs only leaves.
    pub fn new_intermediate(
        td: &TrustDomain,
        parent: &Authority,
        ttl: Duration,
    ) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let validity = clamp(Validity::starting_now(ttl), parent.not_after)?;
        let params = ca_params(td, "intermediate", validity, Some(0))?;
        let cert = params.signed_by(&key, &parent.issuer)?;
        Self::from_parts(cert.der().clone(), key)
    }

    /// Loads a CA certificate and its key from PEM. The certificate must be a
    /// CA with keyCertSign, and the key must be its own.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CaError> {
        let cert = pem::certificates(cert_pem)
            .map_err(|e| CaError::Malformed(format!("certificate PEM: {e}")))?
            .into_iter()
            .next()
            .ok_or_else(|| CaError::Malformed("no CERTIFICATE block".into()))?;
        let key_text = std::str::from_utf8(key_pem)
            .map_err(|_| CaError::Malformed("key file is not text".into()))?;
        let key =
            KeyPair::from_pem(key_text).map_err(|e| CaError::Malformed(format!("key PEM: {e}")))?;
        Self::from_parts(cert, key)
    }

    fn from_parts(cert: CertificateDer<'static>, key: KeyPair) -> Result<Self, CaError> {
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&cert)
            .map_err(|e| CaError::Malformed(format!("certificate: {e}")))?;
        if !parsed.is_ca() {
            return Err(CaError::SignerNotCa(
                "basicConstraints CA is not set".into(),
            ));
        }
        if let Ok(Some(ku)) = parsed.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(CaError::SignerNotCa("keyCertSign is not set".into()));
        }
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CaError::SignerKeyMismatch);
        }
        let not_after = parsed.validity().not_after.timestamp();
        let issuer = Issuer::from_ca_cert_der(&cert, key)?;
        Ok(Self {
            cert,
            issuer,
            not_after,
        })
    }

    /// The CA certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.cert)
    }

    /// The private key as PKCS#8 PEM. Handle with care.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Expiry of the CA certificate, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }
}

/// An issued X.509-SVID: the chain to hand out (leaf first, then the
/// intermediates, never the root) and what the leaf says.
#[derive(Debug, Clone)]
pub struct IssuedSvid {
    pub chain: Vec<CertificateDer<'static>>,
    pub info: SvidInfo,
}

impl IssuedSvid {
    /// The chain as PEM, leaf first.
    pub fn chain_pem(&self) -> String {
        pem::encode_certificates(&self.chain)
    }
}

/// The CA of one trust domain: the authority that signs, and the chain from
/// it up to (not including) the root.
#[derive(Debug)]
pub struct Ca {
    trust_domain: TrustDomain,
    signer: Authority,
    /// Certificates that follow the leaf in an issued chain: the signer when
    /// it is an intermediate, then any intermediates above it.
    chain: Vec<CertificateDer<'static>>,
    /// The roots this CA's SVIDs chain to: the bundle's X.509 authorities.
    roots: Vec<CertificateDer<'static>>,
    rng: SystemRandom,
}

impl Ca {
    /// A CA that signs with its root directly.
    pub fn with_root(trust_domain: TrustDomain, root: Authority) -> Self {
        Self {
            trust_domain,
            roots: vec![root.cert.clone()],
            signer: root,
            chain: Vec::new(),
            rng: SystemRandom::new(),
        }
    }

    /// A CA that signs with an intermediate; `above` holds any certificates
    /// between the intermediate and the root (usually none).
    pub fn with_intermediate(
        trust_domain: TrustDomain,
        intermediate: Authority,
        above: Vec<CertificateDer<'static>>,
    ) -> Self {
        let mut chain = vec![intermediate.cert.clone()];
        chain.extend(above);
        Self {
            trust_domain,
            signer: intermediate,
            chain,
            roots: Vec::new(),
            rng: SystemRandom::new(),
        }
    }

    /// Sets the roots the issued chains lead to (for a CA that signs with an
    /// intermediate, the root or upstream root above it).
    pub fn set_roots(&mut self, roots: Vec<CertificateDer<'static>>) {
        self.roots = roots;
    }

    /// The roots issued SVIDs chain to.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn signer(&self) -> &Authority {
        &self.signer
    }

    /// Signs a PKCS#10 CSR (DER). The CSR's signature must verify, it must
    /// request exactly one URI SAN that is a workload SPIFFE ID of this trust
    /// domain, and `may_have` must allow that ID for the requester. Nothing
    /// else in the CSR is taken over: key usages, extensions and validity are
    /// the CA's.
    pub fn sign_csr(
        &self,
        csr_der: &[u8],
        validity: Validity,
        may_have: impl FnOnce(&SpiffeId) -> bool,
    ) -> Result<IssuedSvid, CaError> {
        let (id, spki) = parse_csr(csr_der)?;
        if !id.is_member_of(&self.trust_domain) {
            return Err(CaError::CsrWrongTrustDomain {
                id,
                trust_domain: self.trust_domain.clone(),
            });
        }
        if !may_have(&id) {
            return Err(CaError::CsrIdNotAllowed { id });
        }
        let key = SubjectPublicKeyInfo::from_der(&spki)
            .map_err(|e| CaError::CsrUnsupportedKey(e.to_string()))?;
        self.issue_for_key(&id, &key, validity)
    }

    /// Issues an SVID with a key generated here (for `causeway ca issue`
    /// without a CSR, and for tests). Prefer [`Ca::sign_csr`].
    pub fn issue_with_new_key(&self, id: &SpiffeId, validity: Validity) -> Result<Svid, CaError> {
        if !id.is_member_of(&self.trust_domain) {
            return Err(CaError::CsrWrongTrustDomain {
                id: id.clone(),
                trust_domain: self.trust_domain.clone(),
            });
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let issued = self.issue_for_key(id, &key, validity)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Svid::new(issued.chain, key_der).map_err(|e| CaError::Malformed(e.to_string()))
    }

    fn issue_for_key(
        &self,
        id: &SpiffeId,
        key: &impl rcgen::PublicKeyData,
        validity: Validity,
    ) -> Result<IssuedSvid, CaError> {
        if id.path().is_empty() {
            return Err(CaError::CsrInvalidId {
                uri: id.to_string(),
                source: IdError::NoPath(id.to_string()),
            });
        }
        let validity = clamp(validity, self.signer.not_after)?;
        let mut params = CertificateParams::default();
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(random_serial(&self.rng)?);
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Causeway");
        params.distinguished_name = dn;
        params.subject_alt_names = vec![SanType::URI(
            id.as_str()
                .try_into()
                .map_err(|e: rcgen::Error| CaError::Generate(e))?,
        )];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(key, &self.signer.issuer)?;
        let leaf = cert.der().clone();
        let info = svid::check_leaf(&leaf).map_err(|e| CaError::Malformed(e.to_string()))?;
        let mut chain = Vec::with_capacity(1 + self.chain.len());
        chain.push(leaf);
        chain.extend(self.chain.iter().cloned());
        Ok(IssuedSvid { chain, info })
    }
}

/// Generates a CSR for a SPIFFE ID with a new P-256 key, as a gateway does
/// before asking its controller for an SVID. Returns the CSR (DER) and the
/// key, which stays with the caller.
pub fn new_csr(id: &SpiffeId) -> Result<(Vec<u8>, PrivateKeyDer<'static>), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(
        id.as_str()
            .try_into()
            .map_err(|e: rcgen::Error| CaError::Generate(e))?,
    )];
    let csr = params.serialize_request(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((csr.der().to_vec(), key_der))
}

/// Parses and verifies a CSR; returns the requested SPIFFE ID and the DER
/// SubjectPublicKeyInfo.
fn parse_csr(der: &[u8]) -> Result<(SpiffeId, Vec<u8>), CaError> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| CaError::CsrUnparsable(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CaError::CsrUnparsable(
            "trailing bytes after the request".into(),
        ));
    }
    csr.verify_signature()
        .map_err(|_| CaError::CsrBadSignature)?;
    let mut uris = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                if let GeneralName::URI(u) = name {
                    uris.push(*u);
                }
            }
        }
    }
    let uri = match uris.as_slice() {
        [] => return Err(CaError::CsrNoSpiffeId),
        [one] => *one,
        many => return Err(CaError::CsrMultipleUris { count: many.len() }),
    };
    let id = SpiffeId::workload(uri).map_err(|source| CaError::CsrInvalidId {
        uri: uri.to_owned(),
        source,
    })?;
    Ok((id, csr.certification_request_info.subject_pki.raw.to_vec()))
}

fn ca_params(
    td: &TrustDomain,
    role: &str,
    validity: Validity,
    path_len: Option<u8>,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    params.serial_number = Some(random_serial(&SystemRandom::new())?);
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Causeway");
    dn.push(DnType::CommonName, format!("{td} {role} CA"));
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(
        td.id()
            .as_str()
            .try_into()
            .map_err(|e: rcgen::Error| CaError::Generate(e))?,
    )];
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.use_authority_key_identifier_extension = path_len.is_some();
    Ok(params)
}

/// Caps a validity window at the signer's expiry.
fn clamp(mut validity: Validity, signer_not_after: i64) -> Result<Validity, CaError> {
    let signer_end = OffsetDateTime::from_unix_timestamp(signer_not_after)
        .map_err(|e| CaError::Malformed(e.to_string()))?;
    if signer_end <= OffsetDateTime::now_utc() {
        return Err(CaError::SignerExpired {
            not_after: signer_not_after,
        });
    }
    if validity.not_after > signer_end {
        validity.not_after = signer_end;
    }
    if validity.not_after <= validity.not_before {
        return Err(CaError::BadLifetime);
    }
    Ok(validity)
}

/// 128 random bits, positive and without a leading zero byte.
fn random_serial(rng: &SystemRandom) -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    rng.fill(&mut bytes).map_err(|_| CaError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
