//! Fetching a peer's bundle from its SPIFFE bundle endpoint (`https_spiffe`
//! profile): the endpoint's certificate must chain to the bundle already
//! held for the endpoint's trust domain and carry the configured SPIFFE ID;
//! the document must be a valid bundle of the peer's trust domain, not
//! older (by `spiffe_sequence`) than the one held, and, when the endpoint
//! is the peer's own, it must verify the endpoint's certificate (else the
//! next fetch would fail and the bundle could never move again).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use causeway_trust::tls::provider;
use causeway_trust::verify::{
    BundleSet, Expected, PeerRole, SharedBundles, SpiffeVerifier, VerifyError,
    bundle_verifies_chain,
};
use causeway_trust::{SpiffeId, TrustBundle, TrustDomain};
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A bundle document larger than this is refused.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Why a peer's bundle could not be fetched. The bundle held stays in use
/// whatever the reason.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("bundle endpoint URL {url:?}: {reason}")]
    Url { url: String, reason: &'static str },
    #[error("cannot connect to the bundle endpoint {url}: {source}")]
    Connect { url: String, source: std::io::Error },
    #[error("the bundle endpoint {url} was refused in the TLS handshake: {reason}")]
    Refused { url: String, reason: String },
    #[error("bundle endpoint {url}: HTTP: {reason}")]
    Http { url: String, reason: String },
    #[error("bundle endpoint {url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("bundle endpoint {url} sent no valid bundle of {trust_domain}: {reason}")]
    Document {
        url: String,
        trust_domain: TrustDomain,
        reason: String,
    },
    #[error(
        "bundle endpoint {url} sent sequence {got} of {trust_domain}, older than the {held} held"
    )]
    Older {
        url: String,
        trust_domain: TrustDomain,
        got: u64,
        held: u64,
    },
    #[error(
        "bundle endpoint {url} sent sequence {sequence} of {trust_domain}, which does not verify \
         the endpoint's own certificate ({reason}); holding it would refuse the next fetch, so \
         the bundle held stays"
    )]
    CutsOff {
        url: String,
        trust_domain: TrustDomain,
        sequence: u64,
        reason: String,
    },
    #[error("bundle endpoint {url} did not answer within {0:?}", .timeout)]
    Timeout { url: String, timeout: Duration },
}

impl FetchError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Url { .. } => "bad_url",
            Self::Connect { .. } => "connect",
            Self::Refused { .. } => "tls_refused",
            Self::Http { .. } => "http",
            Self::Status { .. } => "status",
            Self::Document { .. } => "bad_document",
            Self::Older { .. } => "older_sequence",
            Self::CutsOff { .. } => "cuts_off_endpoint",
            Self::Timeout { .. } => "timeout",
        }
    }
}

/// Fetches the bundle of `held.trust_domain()` from `url`, whose server must
/// present `endpoint_id`, verified against the bundles in `anchors` (the
/// bundle held for the endpoint's trust domain: usually the peer's own, or
/// a third domain's for an endpoint hosted elsewhere).
pub async fn fetch_bundle(
    url: &str,
    endpoint_id: &SpiffeId,
    anchors: &BundleSet,
    held: &TrustBundle,
    timeout: Duration,
) -> Result<TrustBundle, FetchError> {
    match tokio::time::timeout(timeout, fetch(url, endpoint_id, anchors, held)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout {
            url: url.to_owned(),
            timeout,
        }),
    }
}

async fn fetch(
    url: &str,
    endpoint_id: &SpiffeId,
    anchors: &BundleSet,
    held: &TrustBundle,
) -> Result<TrustBundle, FetchError> {
    let bad = |reason| FetchError::Url {
        url: url.to_owned(),
        reason,
    };
    let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("the https_spiffe profile needs an https:// URL"));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?.to_owned();
    let port = uri.port_u16().unwrap_or(443);
    let path = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    // An IPv6 literal comes bracketed in a URL, bare in a socket address.
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let server_name = ServerName::try_from(bare.clone()).map_err(|_| bad("bad host name"))?;

    let verifier = SpiffeVerifier::new(
        SharedBundles::new(anchors.clone()),
        Expected::ids([endpoint_id.clone()]),
    );
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Refused {
            url: url.to_owned(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    let tcp = TcpStream::connect((bare.as_str(), port))
        .await
        .map_err(|source| FetchError::Connect {
            url: url.to_owned(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| FetchError::Refused {
            url: url.to_owned(),
            reason: VerifyError::from_io(&e).map_or_else(|| e.to_string(), |v| v.to_string()),
        })?;

    // The endpoint's own chain, already verified against `anchors`.
    let server_chain: Vec<CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();

    let http_err = |e: &dyn std::fmt::Display| FetchError::Http {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| http_err(&e))?;
    let driver = tokio::spawn(conn);
    let authority = uri.authority().map_or(host.clone(), |a| a.to_string());
    let request = Request::get(path)
        .header(header::HOST, authority)
        .header(header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_err(&e))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http_err(&e))?;
    let status = response.status();
    if status != StatusCode::OK {
        driver.abort();
        return Err(FetchError::Status {
            url: url.to_owned(),
            status,
        });
    }
    let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
        .collect()
        .await
        .map_err(|e| http_err(&e))?
        .to_bytes();
    driver.abort();

    let trust_domain = held.trust_domain().clone();
    let fetched =
        TrustBundle::from_json(trust_domain.clone(), &body).map_err(|e| FetchError::Document {
            url: url.to_owned(),
            trust_domain: trust_domain.clone(),
            reason: e.to_string(),
        })?;
    if fetched.x509_authorities().is_empty() {
        return Err(FetchError::Document {
            url: url.to_owned(),
            trust_domain,
            reason: "no X.509 authority".to_owned(),
        });
    }
    if let (Some(got), Some(held_seq)) = (fetched.sequence(), held.sequence())
        && got < held_seq
    {
        return Err(FetchError::Older {
            url: url.to_owned(),
            trust_domain,
            got,
            held: held_seq,
        });
    }
    // A peer's own endpoint must stay verifiable with what it serves: a
    // bundle that drops the root of the endpoint's certificate would make
    // every later fetch fail, and the peer's rotation could never reach us.
    if endpoint_id.trust_domain() == trust_domain
        && let Err(reason) = bundle_verifies_chain(
            &fetched,
            &server_chain,
            PeerRole::Server,
            &Expected::ids([endpoint_id.clone()]),
        )
    {
        return Err(FetchError::CutsOff {
            url: url.to_owned(),
            trust_domain,
            sequence: fetched.sequence().unwrap_or(0),
            reason,
        });
    }
    Ok(fetched)
}
