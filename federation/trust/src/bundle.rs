//! The trust bundle of a trust domain: its X.509 authorities (several at
//! once during a rotation), its JWT authorities, a sequence number, a refresh
//! hint and a digest that is the same everywhere for the same authorities.
//!
//! Reads and writes the SPIFFE bundle format (a JWK set with `use`, `x5c`,
//! `spiffe_sequence` and `spiffe_refresh_hint`, from the SPIFFE Trust Domain
//! and Bundle spec) and PEM.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::digest;
use rustls_pki_types::CertificateDer;
use serde_json::{Map, Value};
use x509_parser::prelude::FromDer;

use crate::id::TrustDomain;
use crate::pem;
use crate::svid;

/// Why a bundle document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("bundle is not JSON: {0}")]
    NotJson(String),
    #[error("bundle must be a JSON object")]
    NotAnObject,
    #[error("bundle has no \"keys\" member")]
    NoKeys,
    #[error("bundle member {member:?} has the wrong type: {expected}")]
    WrongType {
        member: &'static str,
        expected: &'static str,
    },
    #[error("key entry {index} is not a JSON object")]
    EntryNotAnObject { index: usize },
    #[error("key entry {index} has no \"kty\"")]
    MissingKty { index: usize },
    #[error(
        "x509-svid entry {index} must hold exactly one certificate in \"x5c\", it holds {count}"
    )]
    X5cCount { index: usize, count: usize },
    #[error("x509-svid entry {index}: \"x5c\" is not base64 DER: {detail}")]
    X5cEncoding { index: usize, detail: String },
    #[error("x509-svid entry {index}: not a certificate: {detail}")]
    BadCertificate { index: usize, detail: String },
    #[error("jwt-svid entry {index} has no \"kid\"")]
    MissingKid { index: usize },
    #[error("bundle has no authorities")]
    Empty,
    #[error("PEM bundle: {0}")]
    Pem(String),
}

/// A JWT-SVID signing key, kept as the JWK the trust domain published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuthority {
    pub key_id: String,
    pub jwk: Map<String, Value>,
}

/// The trust bundle of one trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    x509_authorities: Vec<CertificateDer<'static>>,
    jwt_authorities: Vec<JwtAuthority>,
    sequence: Option<u64>,
    refresh_hint: Option<Duration>,
}

impl TrustBundle {
    /// A bundle of X.509 authorities; duplicates are dropped, order is kept.
    pub fn new(trust_domain: TrustDomain, authorities: Vec<CertificateDer<'static>>) -> Self {
        let mut bundle = Self {
            trust_domain,
            x509_authorities: Vec::with_capacity(authorities.len()),
            jwt_authorities: Vec::new(),
            sequence: None,
            refresh_hint: None,
        };
        for a in authorities {
            bundle.add_x509_authority(a);
        }
        bundle
    }

    pub fn with_sequence(mut self, sequence: u64) -> Self {
        self.sequence = Some(sequence);
        self
    }

    pub fn with_refresh_hint(mut self, hint: Duration) -> Self {
        self.refresh_hint = Some(hint);
        self
    }

    /// Adds an authority unless it is already there.
    pub fn add_x509_authority(&mut self, cert: CertificateDer<'static>) {
        if !self.x509_authorities.contains(&cert) {
            self.x509_authorities.push(cert);
        }
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    pub fn x509_authorities(&self) -> &[CertificateDer<'static>] {
        &self.x509_authorities
    }
    pub fn jwt_authorities(&self) -> &[JwtAuthority] {
        &self.jwt_authorities
    }
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }
    pub fn refresh_hint(&self) -> Option<Duration> {
        self.refresh_hint
    }

    /// `sha256:<hex>` over the X.509 authorities, independent of their order,
    /// of the sequence and of the refresh hint: two parties holding the same
    /// set of roots compute the same digest on any machine.
    pub fn digest(&self) -> String {
        let mut ders: Vec<&[u8]> = self.x509_authorities.iter().map(|c| c.as_ref()).collect();
        ders.sort_unstable();
        ders.dedup();
        let mut ctx = digest::Context::new(&digest::SHA256);
        for der in ders {
            ctx.update(&(der.len() as u64).to_be_bytes());
            ctx.update(der);
        }
        format!("sha256:{}", crate::hash::hex(ctx.finish().as_ref()))
    }

    /// The soonest expiry (unix seconds) among the X.509 authorities that
    /// parse; `None` when none does.
    pub fn earliest_expiry(&self) -> Option<i64> {
        self.x509_authorities
            .iter()
            .filter_map(|c| {
                x509_parser::certificate::X509Certificate::from_der(c)
                    .ok()
                    .map(|(_, cert)| cert.validity().not_after.timestamp())
            })
            .min()
    }

    /// Parses a SPIFFE bundle document. Entries with a `use` other than
    /// `x509-svid` and `jwt-svid` are ignored, as the format asks.
    pub fn from_json(trust_domain: TrustDomain, doc: &[u8]) -> Result<Self, BundleError> {
        let value: Value =
            serde_json::from_slice(doc).map_err(|e| BundleError::NotJson(e.to_string()))?;
        let obj = value.as_object().ok_or(BundleError::NotAnObject)?;
        let keys = obj.get("keys").ok_or(BundleError::NoKeys)?;
        let keys = keys.as_array().ok_or(BundleError::WrongType {
            member: "keys",
            expected: "an array",
        })?;
        let sequence = match obj.get("spiffe_sequence") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or(BundleError::WrongType {
                member: "spiffe_sequence",
                expected: "a non-negative integer",
            })?),
        };
        let refresh_hint = match obj.get("spiffe_refresh_hint") {
            None | Some(Value::Null) => None,
            Some(v) => Some(Duration::from_secs(v.as_u64().ok_or(
                BundleError::WrongType {
                    member: "spiffe_refresh_hint",
                    expected: "a non-negative integer (seconds)",
                },
            )?)),
        };
        let mut bundle = Self::new(trust_domain, Vec::new());
        bundle.sequence = sequence;
        bundle.refresh_hint = refresh_hint;
        for (index, entry) in keys.iter().enumerate() {
            let entry = entry
                .as_object()
                .ok_or(BundleError::EntryNotAnObject { index })?;
            match entry.get("use").and_then(Value::as_str) {
                Some("x509-svid") => {
                    bundle.add_x509_authority(parse_x509_entry(index, entry)?);
                }
                Some("jwt-svid") => {
                    require_kty(index, entry)?;
                    let key_id = entry
                        .get("kid")
                        .and_then(Value::as_str)
                        .filter(|k| !k.is_empty())
                        .ok_or(BundleError::MissingKid { index })?;
                    bundle.jwt_authorities.push(JwtAuthority {
                        key_id: key_id.to_owned(),
                        jwk: entry.clone(),
                    });
                }
                _ => {}
            }
        }
        Ok(bundle)
    }

    /// The SPIFFE bundle document, pretty-printed.
    pub fn to_json(&self) -> String {
        let mut keys: Vec<Value> = Vec::new();
        for cert in &self.x509_authorities {
            keys.push(Value::Object(x509_jwk(cert)));
        }
        for jwt in &self.jwt_authorities {
            let mut jwk = jwt.jwk.clone();
            jwk.insert("use".into(), Value::from("jwt-svid"));
            jwk.insert("kid".into(), Value::from(jwt.key_id.clone()));
            keys.push(Value::Object(jwk));
        }
        let mut doc = Map::new();
        doc.insert("keys".into(), Value::Array(keys));
        if let Some(seq) = self.sequence {
            doc.insert("spiffe_sequence".into(), Value::from(seq));
        }
        if let Some(hint) = self.refresh_hint {
            doc.insert("spiffe_refresh_hint".into(), Value::from(hint.as_secs()));
        }
        // Serializing a Value built here cannot fail.
        serde_json::to_string_pretty(&Value::Object(doc)).unwrap_or_default()
    }

    /// Reads X.509 authorities from PEM (CERTIFICATE blocks).
    pub fn from_pem(trust_domain: TrustDomain, text: &[u8]) -> Result<Self, BundleError> {
        let certs = pem::certificates(text).map_err(|e| BundleError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(BundleError::Empty);
        }
        for (index, c) in certs.iter().enumerate() {
            svid::summarize(c).map_err(|e| BundleError::BadCertificate {
                index,
                detail: e.to_string(),
            })?;
        }
        Ok(Self::new(trust_domain, certs))
    }

    /// The X.509 authorities as PEM.
    pub fn to_pem(&self) -> String {
        pem::encode_certificates(&self.x509_authorities)
    }

    /// Parses either form: a document starting with '{' is JSON, else PEM.
    pub fn parse(trust_domain: TrustDomain, text: &[u8]) -> Result<Self, BundleError> {
        let first = text.iter().find(|b| !b.is_ascii_whitespace());
        if first == Some(&b'{') {
            Self::from_json(trust_domain, text)
        } else {
            Self::from_pem(trust_domain, text)
        }
    }

    /// The trust domain the authorities name in their URI SAN, when they all
    /// agree (CA certificates may carry `spiffe://<trust-domain>`).
    pub fn infer_trust_domain(text: &[u8]) -> Option<TrustDomain> {
        let probe = Self::parse(TrustDomain::new("unknown").ok()?, text).ok()?;
        let mut found: Option<TrustDomain> = None;
        for cert in &probe.x509_authorities {
            let td = svid::ca_spiffe_id(cert)?.trust_domain();
            match &found {
                Some(f) if *f != td => return None,
                _ => found = Some(td),
            }
        }
        found
    }
}

fn require_kty(index: usize, entry: &Map<String, Value>) -> Result<(), BundleError> {
    match entry.get("kty").and_then(Value::as_str) {
        Some(k) if !k.is_empty() => Ok(()),
        _ => Err(BundleError::MissingKty { index }),
    }
}

fn parse_x509_entry(
    index: usize,
    entry: &Map<String, Value>,
) -> Result<CertificateDer<'static>, BundleError> {
    require_kty(index, entry)?;
    let x5c = entry
        .get("x5c")
        .and_then(Value::as_array)
        .ok_or(BundleError::X5cCount { index, count: 0 })?;
    if x5c.len() != 1 {
        return Err(BundleError::X5cCount {
            index,
            count: x5c.len(),
        });
    }
    let b64 = x5c[0].as_str().ok_or_else(|| BundleError::X5cEncoding {
        index,
        detail: "not a string".into(),
    })?;
    let der = STANDARD.decode(b64).map_err(|e| BundleError::X5cEncoding {
        index,
        detail: e.to_string(),
    })?;
    svid::summarize(&der).map_err(|e| BundleError::BadCertificate {
        index,
        detail: e.to_string(),
    })?;
    Ok(CertificateDer::from(der))
}

/// The JWK of an X.509 authority: its public key parameters and `x5c`.
fn x509_jwk(cert: &CertificateDer<'_>) -> Map<String, Value> {
    use x509_parser::public_key::PublicKey;
    let mut jwk = Map::new();
    jwk.insert("use".into(), Value::from("x509-svid"));
    if let Ok((_, parsed)) = x509_parser::certificate::X509Certificate::from_der(cert) {
        let spki = parsed.public_key();
        match spki.parsed() {
            Ok(PublicKey::EC(point)) => {
                let data = point.data();
                let crv = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|oid| svid::curve_name(&oid.to_id_string()))
                    .unwrap_or("unknown curve");
                jwk.insert("kty".into(), Value::from("EC"));
                jwk.insert("crv".into(), Value::from(crv));
                // Uncompressed point: 0x04 || x || y.
                if data.first() == Some(&4) && data.len() % 2 == 1 {
                    let n = (data.len() - 1) / 2;
                    jwk.insert(
                        "x".into(),
                        Value::from(URL_SAFE_NO_PAD.encode(&data[1..=n])),
                    );
                    jwk.insert(
                        "y".into(),
                        Value::from(URL_SAFE_NO_PAD.encode(&data[1 + n..])),
                    );
                }
            }
            Ok(PublicKey::RSA(rsa)) => {
                jwk.insert("kty".into(), Value::from("RSA"));
                jwk.insert(
                    "n".into(),
                    Value::from(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.modulus))),
                );
                jwk.insert(
                    "e".into(),
                    Value::from(URL_SAFE_NO_PAD.encode(strip_zeros(rsa.exponent))),
                );
            }
            _ => {
                jwk.insert("kty".into(), Value::from("OKP"));
            }
        }
    }
    jwk.insert(
        "x5c".into(),
        Value::Array(vec![Value::from(STANDARD.encode(cert))]),
    );
    jwk
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}
