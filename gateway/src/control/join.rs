//! Joining: the first SVID of a gateway, against a one-time join token.
//!
//! Token: `cw1.<id>.<secret>.<pin>`, the pin being the lower-case hex
//! SHA-256 of the trust domain's root certificate (DER). The key is made
//! here and never sent; the controller gets a CSR for
//! `spiffe://<td>/causeway/gateway/<name>`. Before the token goes on the
//! wire the TLS handshake must show that the controller is who the token
//! says: its chain holds the pinned root, its leaf chains to that root and
//! is `spiffe://<td>/causeway/controller` ([`super::tls::PinnedController`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use causeway_proto::controller::v1::gateway_api_client::GatewayApiClient;
use causeway_proto::controller::v1::{JoinRequest, SvidResponse};
use causeway_trust::tls::SvidSource;
use causeway_trust::{BundleSet, Expected, PeerRole, SpiffeId, Svid, TrustBundle, TrustDomain};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use super::files::FileError;
use super::tls::{self, PinRefusal, PinnedController};
use crate::config::control::ControllerSettings;

/// A parsed join token. The secret is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    text: String,
    /// The token's ID (not secret: logs may name it).
    pub id: String,
    /// Lower-case hex SHA-256 of the root's DER.
    pub pin: String,
}

impl std::fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// Parses `cw1.<id>.<secret>.<pin>` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        let parts: Vec<&str> = text.split('.').collect();
        let [version, id, secret, pin] = parts.as_slice() else {
            return Err("a join token has four parts: cw1.<id>.<secret>.<pin>");
        };
        if *version != "cw1" {
            return Err("not a version 1 join token (it must start with \"cw1.\")");
        }
        if id.is_empty() || secret.is_empty() {
            return Err("the token's id or secret is empty");
        }
        if pin.len() != 64
            || !pin
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("the token's pin is not 64 lower-case hex digits (a SHA-256)");
        }
        Ok(Self {
            text: text.to_owned(),
            id: (*id).to_owned(),
            pin: (*pin).to_owned(),
        })
    }

    /// Reads and parses a token file.
    pub fn load(path: &Path) -> Result<Self, JoinError> {
        let text = std::fs::read_to_string(path).map_err(|e| JoinError::TokenUnreadable {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| JoinError::BadToken {
            path: path.to_owned(),
            reason,
        })
    }
}

/// Why a join (or a renewal's answer) failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "no valid SVID in the data directory and no controller.token_file to join with: create a token with `causeway token create --gateway NAME`"
    )]
    NoToken,
    #[error("no SVID to renew with; the gateway must join first")]
    NoSvid,
    #[error("cannot read the join token {}: {detail}", path.display())]
    TokenUnreadable { path: PathBuf, detail: String },
    #[error("{}: {reason}", path.display())]
    BadToken { path: PathBuf, reason: &'static str },
    #[error(
        "refused the controller at {address} before sending the token: {refusal}; the token was made for another trust domain or root, or this is not our controller"
    )]
    ServerRefused {
        address: String,
        refusal: Box<PinRefusal>,
    },
    #[error("cannot reach the controller at {address}: {detail}")]
    Unreachable { address: String, detail: String },
    #[error("the controller refused: {code:?}: {message}")]
    Refused { code: tonic::Code, message: String },
    #[error("the controller's answer cannot be used: {0}")]
    BadResponse(String),
    #[error("cannot make a key and CSR: {0}")]
    Csr(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error(transparent)]
    Files(#[from] FileError),
}

impl JoinError {
    /// A closed-set label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoSvid => "no_svid",
            Self::NoToken | Self::TokenUnreadable { .. } | Self::BadToken { .. } => "token",
            Self::ServerRefused { .. } => "server_refused",
            Self::Unreachable { .. } => "unreachable",
            Self::Refused { .. } => "refused",
            Self::BadResponse(_) => "bad_response",
            Self::Csr(_) => "csr",
            Self::Tls(_) => "tls",
            Self::Files(_) => "files",
        }
    }
}

/// What a join or renewal brings back, checked.
#[derive(Debug, Clone)]
pub struct Issued {
    pub svid: Svid,
    pub own_bundle: TrustBundle,
}

/// A new key and a CSR for `id`.
pub(crate) fn csr(id: &SpiffeId) -> Result<(Vec<u8>, PrivateKeyDer<'static>), JoinError> {
    causeway_trust::ca::new_csr(id).map_err(|e| JoinError::Csr(e.to_string()))
}

/// Joins: makes a key, sends the CSR with the token, checks the answer.
pub async fn join(
    settings: &ControllerSettings,
    trust_domain: &TrustDomain,
    token: &JoinToken,
    timeout: Duration,
) -> Result<Issued, JoinError> {
    let (csr_der, key) = csr(&settings.gateway_id)?;
    let verifier = PinnedController::new(
        token.pin.clone(),
        trust_domain.clone(),
        settings.controller_id.clone(),
    );
    let config = tls::join_config(verifier.clone()).map_err(|e| JoinError::Tls(e.to_string()))?;
    let unreachable = |detail: String| match verifier.refusal() {
        Some(refusal) => JoinError::ServerRefused {
            address: settings.address.clone(),
            refusal: Box::new(refusal),
        },
        None => JoinError::Unreachable {
            address: settings.address.clone(),
            detail,
        },
    };
    // The handshake, and with it the pin check, completes here: the token
    // is sent only after it.
    let channel = tls::connect(settings, config, timeout)
        .await
        .map_err(|e| unreachable(error_chain(&e)))?;
    let root = verifier
        .root()
        .ok_or_else(|| unreachable("no verified handshake".into()))?;
    let request = JoinRequest {
        token: token.text.clone(),
        csr_der,
    };
    let response = tokio::time::timeout(timeout, GatewayApiClient::new(channel).join(request))
        .await
        .map_err(|_| unreachable("no answer in time".into()))?
        .map_err(|s| JoinError::Refused {
            code: s.code(),
            message: s.message().to_owned(),
        })?
        .into_inner();
    check_response(response, key, &settings.gateway_id, Some(&root))
}

/// Checks an SVID answer: the ID is ours, the key we kept belongs to the
/// leaf, the own bundle parses (and holds `root`, for a join), and the
/// chain verifies against that bundle.
pub(crate) fn check_response(
    response: SvidResponse,
    key: PrivateKeyDer<'static>,
    id: &SpiffeId,
    root: Option<&CertificateDer<'static>>,
) -> Result<Issued, JoinError> {
    let bad = |s: String| JoinError::BadResponse(s);
    if response.spiffe_id != id.as_str() {
        return Err(bad(format!(
            "issued for {:?}, not {id}",
            response.spiffe_id
        )));
    }
    let chain: Vec<CertificateDer<'static>> = response
        .chain_der
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let svid = Svid::new(chain, key).map_err(|e| bad(e.to_string()))?;
    if svid.spiffe_id() != id {
        return Err(bad(format!("the certificate is for {}", svid.spiffe_id())));
    }
    SvidSource::new(svid.clone()).map_err(|e| bad(e.to_string()))?;
    let td = id.trust_domain();
    let b = response
        .own_bundle
        .ok_or_else(|| bad("no own bundle".into()))?;
    if b.trust_domain != td.as_str() {
        return Err(bad(format!(
            "the own bundle is for {:?}, not {td}",
            b.trust_domain
        )));
    }
    let own_bundle = TrustBundle::from_json(td.clone(), b.document.as_bytes())
        .map_err(|e| bad(format!("own bundle: {e}")))?;
    if let Some(root) = root
        && !own_bundle.x509_authorities().contains(root)
    {
        return Err(bad("the own bundle does not hold the pinned root".into()));
    }
    let mut set = BundleSet::new();
    set.insert(own_bundle.clone())
        .map_err(|e| bad(format!("own bundle: {e}")))?;
    let (leaf, rest) = svid
        .chain()
        .split_first()
        .ok_or_else(|| bad("empty chain".into()))?;
    set.verify(
        leaf,
        rest,
        UnixTime::now(),
        PeerRole::Client,
        &Expected::ids([id.clone()]),
    )
    .map_err(|e| bad(format!("the new SVID does not verify: {e}")))?;
    Ok(Issued { svid, own_bundle })
}

/// An error with its sources, for logs (tonic's top-level text is terse).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    const PIN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn token_forms() {
        let t = JoinToken::parse(&format!("cw1.abc.s3cret.{PIN}\n")).unwrap();
        assert_eq!(t.id, "abc");
        assert_eq!(t.pin, PIN);
        assert!(!format!("{t:?}").contains("s3cret"));
        for bad in [
            format!("cw2.abc.s.{PIN}"),
            format!("cw1..s.{PIN}"),
            format!("cw1.abc..{PIN}"),
            "cw1.abc.s.0123".to_owned(),
            format!("cw1.abc.s.{}", PIN.to_uppercase()),
            format!("cw1.abc.s.x.{PIN}"),
        ] {
            assert!(JoinToken::parse(&bad).is_err(), "{bad}");
        }
    }
}
