//! Serving a peer gateway's connection: each bidirectional stream is read,
//! checked and proxied on its own; a bad stream is reset and the others go
//! on.
//!
//! accept stream → read header (bounded in size and time) → inbound checks
//! → connect a local endpoint → copy both ways until both sides close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_trust::tls::SvidSource;
use causeway_trust::verify::RefusalObserver;
use causeway_trust::{Expected, SharedBundles, SpiffeId, SpiffeVerifier};
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::config::GatewayConfig;
use crate::tunnel::header::{HeaderError, StreamHeader};
use crate::tunnel::inbound::{self, Refusal};
use crate::tunnel::quic::{TunnelError, codes, quic_server_config};
use crate::upstream::{LocalUpstreams, Unavailable};

/// How long a peer may take to send a stream header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds the QUIC peer listener on `addr`: mTLS that accepts only the
/// configured peer gateways, reporting refusals to `observer`.
pub fn bind_peer_endpoint(
    config: &GatewayConfig,
    svid: &SvidSource,
    bundles: &SharedBundles,
    observer: Option<RefusalObserver>,
    addr: SocketAddr,
) -> Result<quinn::Endpoint, TunnelError> {
    let mut verifier =
        SpiffeVerifier::new(bundles.clone(), Expected::ids(config.peer_gateway_ids()));
    if let Some(o) = observer {
        verifier = verifier.with_observer(o);
    }
    let server = quic_server_config(svid, Arc::new(verifier), &config.limits)?;
    quinn::Endpoint::server(server, addr).map_err(|source| TunnelError::Bind { addr, source })
}

/// What the inbound side needs, shared by every stream.
#[derive(Debug)]
pub struct Inbound {
    pub config: Arc<GatewayConfig>,
    pub upstreams: LocalUpstreams,
}

/// How one inbound stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("bad stream header: {0}")]
    Header(#[from] HeaderError),
    #[error("stream header not received within {0:?}")]
    HeaderTimeout(Duration),
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("copy: {0}")]
    Copy(std::io::Error),
}

impl StreamError {
    /// A short, closed-set label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Header(h) => h.reason(),
            Self::HeaderTimeout(_) => "header_timeout",
            Self::Refused(r) => r.reason(),
            Self::Unavailable(_) => "unavailable",
            Self::Copy(_) => "copy",
        }
    }
}

impl Inbound {
    pub fn new(config: Arc<GatewayConfig>) -> Self {
        let upstreams = LocalUpstreams::from_config(&config);
        Self { config, upstreams }
    }

    /// Accepts peer gateways on a QUIC endpoint until it is closed; each
    /// connection is served in its own task.
    pub async fn serve_endpoint(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let this = self.clone();
            tokio::spawn(async move {
                let conn = match incoming.await {
                    Ok(c) => c,
                    // The verifier's observer has logged and counted it.
                    Err(e) => return debug!("peer handshake failed: {e}"),
                };
                let certs = conn.peer_identity().and_then(|i| {
                    i.downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
                        .ok()
                });
                match causeway_trust::verify::peer_id(certs.as_deref().map(|v| v.as_slice())) {
                    Some(peer) => this.serve_connection(conn, peer).await,
                    None => conn.close(codes::REFUSED, b"no verified peer identity"),
                }
            });
        }
    }

    /// Serves every stream of one peer gateway's connection until it closes.
    pub async fn serve_connection(self: Arc<Self>, conn: quinn::Connection, peer: SpiffeId) {
        info!(peer = %peer, remote = %conn.remote_address(), "peer gateway connected");
        while let Ok((send, recv)) = conn.accept_bi().await {
            let this = self.clone();
            let peer = peer.clone();
            tokio::spawn(async move {
                if let Err(e) = this.serve_stream(send, recv, &peer).await {
                    warn!(peer = %peer, reason = e.reason(), "inbound stream ended: {e}");
                }
            });
        }
        debug!(peer = %peer, "peer gateway connection closed");
    }

    /// One stream: header, checks, upstream, copy. Resets the stream with
    /// the matching code on any refusal.
    pub async fn serve_stream(
        &self,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        peer: &SpiffeId,
    ) -> Result<(), StreamError> {
        let fail = |send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code| {
            let _ = send.reset(code);
            let _ = recv.stop(code);
        };
        let header = match tokio::time::timeout(
            HEADER_TIMEOUT,
            StreamHeader::read(&mut recv, self.config.limits.max_header_bytes),
        )
        .await
        {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                fail(&mut send, &mut recv, codes::HEADER_INVALID);
                return Err(e.into());
            }
            Err(_) => {
                fail(&mut send, &mut recv, codes::HEADER_INVALID);
                return Err(StreamError::HeaderTimeout(HEADER_TIMEOUT));
            }
        };
        let dest = match inbound::check(&self.config, peer, &header) {
            Ok(d) => d,
            Err(r) => {
                fail(&mut send, &mut recv, codes::REFUSED);
                return Err(r.into());
            }
        };
        let upstream = match self.upstreams.get(&dest) {
            Some(rr) => rr.connect(&dest, self.config.limits.connect_timeout).await,
            None => Err(Unavailable {
                service: dest.service.to_string(),
                port: dest.port,
                attempts: 0,
                last: "no endpoints".into(),
            }),
        };
        let mut upstream: TcpStream = match upstream {
            Ok(s) => s,
            Err(e) => {
                fail(&mut send, &mut recv, codes::UNAVAILABLE);
                return Err(e.into());
            }
        };
        debug!(peer = %peer, caller = %header.caller, service = %dest.service, port = dest.port,
            request_id = %header.request_id, "inbound stream accepted");
        let mut stream = tokio::io::join(recv, send);
        tokio::io::copy_bidirectional(&mut stream, &mut upstream)
            .await
            .map(|_| ())
            .map_err(StreamError::Copy)
    }
}
