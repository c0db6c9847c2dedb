//! The SPIFFE bundle endpoint, `https_spiffe` profile (SPIFFE Trust Domain
//! and Bundle, section 5): `GET` on any path answers the current bundle
//! document as `application/json`; the TLS server presents an X.509-SVID of
//! the trust domain and asks nothing of the client.
//!
//! The bundle served is swapped atomically by the controller through
//! [`PublishedBundle::publish`]; requests in flight finish with the
//! document they started with.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use causeway_trust::TrustBundle;
use causeway_trust::tls::{SvidSource, TlsError, provider};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// The document the endpoint serves, replaced whole on every publication.
#[derive(Debug, Clone)]
pub struct PublishedBundle(Arc<ArcSwap<Bytes>>);

impl PublishedBundle {
    pub fn new(bundle: &TrustBundle) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Bytes::from(
            bundle.to_json(),
        ))))
    }

    /// Serves `bundle` from the next request on.
    pub fn publish(&self, bundle: &TrustBundle) {
        self.0.store(Arc::new(Bytes::from(bundle.to_json())));
    }

    /// The document served now.
    pub fn document(&self) -> Bytes {
        Bytes::clone(&self.0.load())
    }
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("bundle endpoint TLS: {0}")]
    Tls(#[from] TlsError),
    #[error("bundle endpoint listener: {0}")]
    Io(std::io::Error),
}

/// A running bundle endpoint; stops when dropped.
#[derive(Debug)]
pub struct BundleEndpoint {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl BundleEndpoint {
    /// Serves `published` on `listener`, presenting the SVID `svid` holds
    /// at each handshake (renewals apply to the next connection).
    pub fn serve(
        listener: TcpListener,
        svid: &SvidSource,
        published: PublishedBundle,
    ) -> Result<Self, EndpointError> {
        let addr = listener.local_addr().map_err(EndpointError::Io)?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| EndpointError::Tls(TlsError::Config(e)))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(svid.clone()));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(accept_loop(listener, acceptor, published));
        Ok(Self { addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://<addr>/`, for tests and the ready line.
    pub fn url(&self) -> String {
        format!("https://{}/", self.addr)
    }
}

impl Drop for BundleEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, published: PublishedBundle) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: wait, do not spin.
                tracing::warn!(error = %e, "bundle endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let published = published.clone();
        tokio::spawn(async move {
            let handshake =
                tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let tls = match handshake.await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "bundle endpoint: handshake refused");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "bundle endpoint: handshake timed out");
                    return;
                }
            };
            let service = service_fn(move |req| {
                let published = published.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&req, &published)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "bundle endpoint: connection ended");
            }
        });
    }
}

fn answer(req: &Request<Incoming>, published: &PublishedBundle) -> Response<Full<Bytes>> {
    respond(req.method(), published)
}

/// The endpoint's answer to a request with `method`: the document for GET
/// and HEAD, 405 otherwise. For servers that host the endpoint beside
/// other services on one port.
pub fn respond(method: &Method, published: &PublishedBundle) -> Response<Full<Bytes>> {
    let response = |status: StatusCode, kind: &'static str, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(header::CONTENT_TYPE, header::HeaderValue::from_static(kind));
        r.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        r
    };
    match *method {
        Method::GET | Method::HEAD => {
            response(StatusCode::OK, "application/json", published.document())
        }
        _ => {
            let mut r = response(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                Bytes::from_static(b"the bundle endpoint answers GET only\n"),
            );
            r.headers_mut()
                .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
            r
        }
    }
}
