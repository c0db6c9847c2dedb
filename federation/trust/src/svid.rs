//! X.509-SVIDs: the shape rules of the X.509-SVID spec, checked without a
//! bundle, and the credential (chain and key) a workload or gateway holds.

use std::fmt;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::id::{IdError, SpiffeId};
use crate::pem;

/// Why a certificate is not a valid X.509-SVID leaf. Each variant is one
/// rule of the X.509-SVID spec; [`ShapeError::reason`] is a short label for
/// metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("not an X.509 certificate: {0}")]
    Unparsable(String),
    #[error(
        "certificate has no URI SAN; an X.509-SVID carries its SPIFFE ID as exactly one URI SAN"
    )]
    NoUriSan,
    #[error("certificate has {count} URI SANs; an X.509-SVID must have exactly one")]
    MultipleUriSans { count: usize },
    #[error("URI SAN {uri:?} is not a SPIFFE ID: {source}")]
    InvalidId { uri: String, source: IdError },
    #[error(
        "URI SAN {0} names a trust domain, not a workload; a leaf SVID's SPIFFE ID needs a path"
    )]
    NoPath(String),
    #[error("leaf certificate is a CA (basicConstraints CA:TRUE); an X.509-SVID leaf must not be")]
    LeafIsCa,
    #[error("leaf certificate has keyCertSign in its key usage; an X.509-SVID leaf must not")]
    KeyCertSign,
    #[error("leaf certificate has cRLSign in its key usage; an X.509-SVID leaf must not")]
    CrlSign,
    #[error(
        "leaf certificate has no key usage extension; an X.509-SVID leaf needs digitalSignature"
    )]
    NoKeyUsage,
    #[error(
        "leaf certificate lacks digitalSignature in its key usage; an X.509-SVID leaf needs it"
    )]
    NoDigitalSignature,
    #[error("certificate has a malformed {extension} extension: {detail}")]
    BadExtension {
        extension: &'static str,
        detail: String,
    },
}

impl ShapeError {
    /// A short, closed-set label for metrics and structured logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unparsable(_) => "unparsable",
            Self::NoUriSan => "no_uri_san",
            Self::MultipleUriSans { .. } => "multiple_uri_sans",
            Self::InvalidId { .. } => "invalid_spiffe_id",
            Self::NoPath(_) => "no_path",
            Self::LeafIsCa => "leaf_is_ca",
            Self::KeyCertSign => "key_cert_sign",
            Self::CrlSign => "crl_sign",
            Self::NoKeyUsage => "no_key_usage",
            Self::NoDigitalSignature => "no_digital_signature",
            Self::BadExtension { .. } => "bad_extension",
        }
    }
}

/// What a valid X.509-SVID leaf says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidInfo {
    pub spiffe_id: SpiffeId,
    /// The serial number, as lower-case hex with ':' between bytes.
    pub serial: String,
    /// Validity period, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// Issuer and subject distinguished names, RFC 4514 style.
    pub issuer: String,
    pub subject: String,
}

/// Serial, validity and names of any certificate, for reports and refusals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub serial: String,
    pub not_before: i64,
    pub not_after: i64,
    pub issuer: String,
    pub subject: String,
    pub key_type: String,
    pub is_ca: bool,
}

/// Parses a DER certificate into a summary; fails only on bytes that are not
/// a certificate.
pub fn summarize(der: &[u8]) -> Result<CertSummary, ShapeError> {
    let cert = parse(der)?;
    Ok(summary_of(&cert))
}

fn parse(der: &[u8]) -> Result<X509Certificate<'_>, ShapeError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(ShapeError::Unparsable(
            "trailing bytes after the certificate".into(),
        )),
        Err(e) => Err(ShapeError::Unparsable(e.to_string())),
    }
}

fn summary_of(cert: &X509Certificate<'_>) -> CertSummary {
    CertSummary {
        serial: cert.raw_serial_as_string(),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
        key_type: key_type(cert),
        is_ca: cert.is_ca(),
    }
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    use x509_parser::public_key::PublicKey;
    match cert.public_key().parsed() {
        Ok(PublicKey::EC(point)) => {
            let curve = cert
                .public_key()
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| curve_name(&oid.to_id_string()));
            match curve {
                Some(c) => format!("EC {c}"),
                None => format!("EC ({} bits)", point.key_size()),
            }
        }
        Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
        Ok(PublicKey::Unknown(_)) | Err(_) => "unknown".into(),
        Ok(_) => "other".into(),
    }
}

pub(crate) fn curve_name(oid: &str) -> &'static str {
    match oid {
        "1.2.840.10045.3.1.7" => "P-256",
        "1.3.132.0.34" => "P-384",
        "1.3.132.0.35" => "P-521",
        _ => "unknown curve",
    }
}

/// Checks a DER certificate against the X.509-SVID leaf rules and returns
/// what it says. Does not check the chain or the validity period.
pub fn check_leaf(der: &[u8]) -> Result<SvidInfo, ShapeError> {
    let cert = parse(der)?;
    let spiffe_id = leaf_spiffe_id(&cert)?;

    let bad = |extension: &'static str| {
        move |e: x509_parser::error::X509Error| ShapeError::BadExtension {
            extension,
            detail: e.to_string(),
        }
    };
    if let Some(bc) = cert.basic_constraints().map_err(bad("basicConstraints"))?
        && bc.value.ca
    {
        return Err(ShapeError::LeafIsCa);
    }
    let ku = cert
        .key_usage()
        .map_err(bad("keyUsage"))?
        .ok_or(ShapeError::NoKeyUsage)?;
    if ku.value.key_cert_sign() {
        return Err(ShapeError::KeyCertSign);
    }
    if ku.value.crl_sign() {
        return Err(ShapeError::CrlSign);
    }
    if !ku.value.digital_signature() {
        return Err(ShapeError::NoDigitalSignature);
    }
    let summary = summary_of(&cert);
    Ok(SvidInfo {
        spiffe_id,
        serial: summary.serial,
        not_before: summary.not_before,
        not_after: summary.not_after,
        issuer: summary.issuer,
        subject: summary.subject,
    })
}

/// The one URI SAN of a leaf, as a workload SPIFFE ID.
fn leaf_spiffe_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, ShapeError> {
    let uri = single_uri_san(cert)?;
    let id = SpiffeId::new(uri).map_err(|source| ShapeError::InvalidId {
        uri: uri.to_owned(),
        source,
    })?;
    if id.path().is_empty() {
        return Err(ShapeError::NoPath(id.to_string()));
    }
    Ok(id)
}

fn single_uri_san<'a>(cert: &'a X509Certificate<'_>) -> Result<&'a str, ShapeError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| ShapeError::BadExtension {
            extension: "subjectAltName",
            detail: e.to_string(),
        })?
        .ok_or(ShapeError::NoUriSan)?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(ShapeError::NoUriSan),
        [one] => Ok(one),
        many => Err(ShapeError::MultipleUriSans { count: many.len() }),
    }
}

/// The SPIFFE ID in a CA certificate's URI SAN, if it has exactly one that
/// parses (signing certificates may name their trust domain).
pub fn ca_spiffe_id(der: &[u8]) -> Option<SpiffeId> {
    let cert = parse(der).ok()?;
    single_uri_san(&cert)
        .ok()
        .and_then(|u| SpiffeId::new(u).ok())
}

/// Why a credential could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("no certificate found (expected PEM CERTIFICATE blocks)")]
    NoCertificate,
    #[error("no private key found (expected a PEM PRIVATE KEY block)")]
    NoKey,
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("leaf is not an X.509-SVID: {0}")]
    Shape(#[from] ShapeError),
    #[error("the private key does not belong to the leaf certificate")]
    KeyMismatch,
    #[error("unsupported private key: {0}")]
    UnsupportedKey(String),
}

/// A workload's X.509-SVID: its certificate chain (leaf first, then the
/// intermediates) and its private key, with the leaf already checked.
pub struct Svid {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    info: SvidInfo,
}

impl Svid {
    /// Builds a credential from a chain (leaf first) and a key, checking the
    /// leaf's shape.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, CredentialError> {
        let leaf = chain.first().ok_or(CredentialError::NoCertificate)?;
        let info = check_leaf(leaf)?;
        Ok(Self { chain, key, info })
    }

    /// Loads a credential from PEM text: certificates (leaf first) and a key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, CredentialError> {
        let chain = pem::certificates(cert_pem).map_err(|e| CredentialError::Pem(e.to_string()))?;
        if chain.is_empty() {
            return Err(CredentialError::NoCertificate);
        }
        let key = pem::private_key(key_pem)
            .map_err(|e| CredentialError::Pem(e.to_string()))?
            .ok_or(CredentialError::NoKey)?;
        Self::new(chain, key)
    }

    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.info.spiffe_id
    }
    pub fn info(&self) -> &SvidInfo {
        &self.info
    }
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }
}

impl Clone for Svid {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            info: self.info.clone(),
        }
    }
}

impl fmt::Debug for Svid {
    // Never print the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Svid")
            .field("spiffe_id", &self.info.spiffe_id)
            .field("serial", &self.info.serial)
            .field("not_after", &self.info.not_after)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}
