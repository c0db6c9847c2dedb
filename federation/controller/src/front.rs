//! The public port, the one peers reach: the SPIFFE bundle endpoint
//! (`https_spiffe`: any GET answers our bundle document, no client
//! certificate needed) and the federation API (gRPC, with a peer
//! controller's SVID) on one TLS listener, told apart per request by the
//! gRPC content type. One address per controller for peers to open in
//! their firewalls, one URL in their peering file.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use causeway_exchange::PublishedBundle;
use causeway_proto::federation::v1::federation_server::FederationServer;
use causeway_trust::SharedBundles;
use http::{Request, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::federation::FederationApi;
use crate::tls::PeerCerts;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the public port until the task is aborted.
pub(crate) fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    served: PublishedBundle,
    peers: SharedBundles,
    api: FederationApi,
) -> JoinHandle<()> {
    let acceptor = TlsAcceptor::from(tls);
    let grpc = FederationServer::new(api);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "public port: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let served = served.clone();
            let grpc = grpc.clone();
            let peers = peers.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    // A refused client certificate is a peer controller
                    // that cannot reach us: worth a warning. Anything else
                    // (a scanner, a client without TLS) is not.
                    Ok(Err(e)) if refused_certificate(&e) => {
                        tracing::warn!(%remote, error = %e, held = %held_summary(&peers),
                            "public port: a client certificate was refused");
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "public port: TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote, "public port: TLS handshake timed out");
                        return;
                    }
                };
                let certs = PeerCerts(
                    tls.get_ref()
                        .1
                        .peer_certificates()
                        .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
                );
                let service = service_fn(move |mut req: Request<Incoming>| {
                    let grpc = grpc.clone();
                    let served = served.clone();
                    let certs = certs.clone();
                    async move {
                        if is_grpc(&req) {
                            req.extensions_mut().insert(certs);
                            grpc.oneshot(req).await
                        } else {
                            Ok::<_, Infallible>(
                                causeway_exchange::endpoint::respond(req.method(), &served)
                                    .map(tonic::body::Body::new),
                            )
                        }
                    }
                });
                if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%remote, error = %e, "public port: connection ended");
                }
            });
        }
    })
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// The peers' bundles a client certificate was checked against, for the
/// refusal's log line: per trust domain its sequence and roots.
fn held_summary(peers: &SharedBundles) -> String {
    let set = peers.load();
    let held: Vec<String> = set
        .bundles()
        .map(|b| {
            let roots: Vec<String> = b
                .x509_authorities()
                .iter()
                .map(|r| crate::ca::short(&crate::ca::sha256_hex(r)).to_owned())
                .collect();
            format!(
                "{} sequence {} roots [{}]",
                b.trust_domain(),
                b.sequence().unwrap_or(0),
                roots.join(", ")
            )
        })
        .collect();
    if held.is_empty() {
        "none".to_owned()
    } else {
        held.join("; ")
    }
}

/// Whether a failed handshake refused the client's certificate (rather
/// than failing for want of TLS, say), from the rustls error inside.
fn refused_certificate(e: &std::io::Error) -> bool {
    matches!(
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    )
}

#[cfg(test)]
mod refusal_tests {
    use super::refused_certificate;
    use std::io;

    #[test]
    fn only_a_refused_client_certificate_counts() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert!(refused_certificate(&wrap(
            rustls::Error::NoCertificatesPresented
        )));
        assert!(refused_certificate(&wrap(
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        )));
        assert!(!refused_certificate(&wrap(
            rustls::Error::HandshakeNotComplete
        )));
        assert!(!refused_certificate(&io::Error::other(
            "certificate in the text only"
        )));
    }
}
