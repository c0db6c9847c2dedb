//! TLS for the gateway API: the controller presents its SVID chain
//! `[leaf, root]` (so a joining gateway finds the root its token pins), and
//! asks for a client SVID without requiring one: Join comes without, Renew
//! and the config stream with one, verified against the domain's bundle.
//! The handlers read the verified chain from [`PeerCerts`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use causeway_trust::tls::{OptionalClientAuth, SvidSource, provider};
use causeway_trust::{Expected, SharedBundles, SpiffeVerifier, TrustDomain};
use rustls::ServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::error::{ControllerError, Result};

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The API's server config: our SVID, optional client SVIDs of our domain.
pub(crate) fn server_config(
    svid: &SvidSource,
    bundles: SharedBundles,
    td: &TrustDomain,
) -> Result<ServerConfig> {
    let verifier = Arc::new(SpiffeVerifier::new(
        bundles,
        Expected::trust_domains([td.clone()]),
    ));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ControllerError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(OptionalClientAuth(verifier)))
        .with_cert_resolver(Arc::new(svid.clone()));
    config.alpn_protocols = vec![b"h2".to_vec()];
    // No resumption: every handshake verifies against the bundle held now.
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The public port's server config (bundle endpoint and federation API):
/// our SVID; a client SVID is optional (SPIFFE bundle endpoint clients send
/// none) and, when sent, must chain to a peer's bundle we hold. HTTP/2 for
/// gRPC, HTTP/1.1 for bundle fetches.
pub(crate) fn front_config(svid: &SvidSource, peers: SharedBundles) -> Result<ServerConfig> {
    let verifier = Arc::new(SpiffeVerifier::new(peers, Expected::AnyKnownDomain));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ControllerError::Tls(e.to_string()))?
        .with_client_cert_verifier(Arc::new(OptionalClientAuth(verifier)))
        .with_cert_resolver(Arc::new(svid.clone()));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The client's verified certificate chain, if it sent one.
#[derive(Debug, Clone, Default)]
pub struct PeerCerts(pub Option<Arc<Vec<CertificateDer<'static>>>>);

/// A TLS connection as tonic serves it.
#[derive(Debug)]
pub(crate) struct TlsConn(TlsStream<TcpStream>);

impl Connected for TlsConn {
    type ConnectInfo = PeerCerts;
    fn connect_info(&self) -> PeerCerts {
        PeerCerts(
            self.0
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
        )
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts TCP connections and completes their TLS handshakes (each in its
/// own task, bounded in time), yielding the established ones. A failed
/// handshake is logged and dropped; it never stops the listener.
pub(crate) fn accept(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // A config version goes out as HTTP/2 frames of whatever size;
            // with Nagle a small one waited for the gateway's delayed ACK
            // (40 ms on Linux; docs/benchmarks.md, config stream).
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let conns = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = conns.send(Ok(TlsConn(tls))).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%remote, "TLS handshake timed out"),
                }
            });
            if tx.is_closed() {
                return;
            }
        }
    });
    ReceiverStream::new(rx)
}
