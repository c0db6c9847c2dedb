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
use causeway_trust::{Expected, SharedBundles, SpiffeId, SpiffeVerifier, TrustDomain};
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, info, info_span, warn};

use crate::config::GatewayConfig;
use crate::drain::Drain;
use crate::metrics::{Direction, Metrics};
use crate::proxy::error::{CallError, Reason, is_grpc};
use crate::proxy::inbound::check::{self, Refusal};
use crate::proxy::tunnel::Sending;
use crate::state::endpoints::Unavailable;
use crate::state::{Live, Snapshot};
use crate::transport::dial::credentials_expiry_ms;
use crate::transport::header::{HeaderError, StreamHeader};
use crate::transport::quic::{TunnelError, codes, quic_server_config};
use crate::transport::udp;

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
    let server = peer_server_config(config, svid, bundles, observer)?;
    std::net::UdpSocket::bind(addr)
        .and_then(|socket| udp::endpoint(socket, Some(server)))
        .map_err(|source| TunnelError::Bind { addr, source })
}

/// The peer listener's QUIC config for `config`: mTLS accepting only the
/// configured peer gateways, and the config's QUIC limits. A running
/// gateway sets a new one when a config changes them.
pub fn peer_server_config(
    config: &GatewayConfig,
    svid: &SvidSource,
    bundles: &SharedBundles,
    observer: Option<RefusalObserver>,
) -> Result<quinn::ServerConfig, TunnelError> {
    let mut verifier =
        SpiffeVerifier::new(bundles.clone(), Expected::ids(config.peer_gateway_ids()));
    if let Some(o) = observer {
        verifier = verifier.with_observer(o);
    }
    quic_server_config(svid, Arc::new(verifier), &config.limits)
}

/// What the inbound side needs, shared by every stream.
#[derive(Debug)]
pub struct Inbound {
    /// The config in effect: read once per stream.
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    pub drain: Drain,
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
    #[error("peer {0} already has its limit of open streams")]
    Overloaded(TrustDomain),
    #[error("the gateway is draining")]
    Draining,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error("copy: {0}")]
    Copy(std::io::Error),
    #[error("writing to the peer: {0}")]
    Write(quinn::WriteError),
    #[error("the body: {0}")]
    Body(String),
}

impl StreamError {
    /// A short, closed-set label for metrics and logs.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Header(h) => h.reason(),
            Self::HeaderTimeout(_) => Reason::HeaderTimeout,
            Self::Refused(r) => r.reason(),
            Self::Overloaded(_) => Reason::Overloaded,
            Self::Draining => Reason::Draining,
            Self::Unavailable(_) => Reason::Unavailable,
            Self::Copy(_) | Self::Write(_) | Self::Body(_) => Reason::StreamReset,
        }
    }
}

/// The destination's name as a metric label, when it is a configured
/// local service; empty otherwise.
fn known_service<'a>(snap: &Snapshot, header: &'a StreamHeader) -> &'a str {
    let d = crate::config::Destination {
        service: header.service.clone(),
        port: header.port,
    };
    if snap.config.services.contains_key(&d) {
        header.service.as_str()
    } else {
        ""
    }
}

/// Sleeps until the Unix time `ms` (for ever when it is out of reach).
async fn sleep_until_unix_ms(ms: i64) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    match u64::try_from(ms.saturating_sub(now)) {
        Ok(wait) if ms < i64::MAX / 2 => tokio::time::sleep(Duration::from_millis(wait)).await,
        Ok(_) => std::future::pending().await,
        Err(_) => {}
    }
}

pub(super) fn fail(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    code: quinn::VarInt,
) {
    let _ = send.reset(code);
    let _ = recv.stop(code);
}

impl Inbound {
    /// The inbound side of `config`, with its own metrics and drain.
    pub fn new(config: Arc<GatewayConfig>) -> Self {
        Self::with_parts(Live::without_dialer(config), Arc::default(), Drain::new())
    }

    pub fn with_parts(live: Arc<Live>, metrics: Arc<Metrics>, drain: Drain) -> Self {
        Self {
            live,
            metrics,
            drain,
        }
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
                    // The connection ends when the certificate that
                    // authenticated the peer expires: an SVID that was not
                    // renewed must meet the next handshake's refusal.
                    Some(peer) => {
                        let expires = credentials_expiry_ms(&conn, i64::MAX);
                        let closing = conn.clone();
                        let span = info_span!("peer_connection", peer = %peer,
                            remote = %conn.remote_address());
                        tokio::select! {
                            () = this.serve_connection(conn, peer.clone()).instrument(span) => {}
                            () = sleep_until_unix_ms(expires) => {
                                info!(peer = %peer, "the peer gateway's certificate expired; closing its connection");
                                closing.close(codes::EXPIRED, b"peer certificate expired");
                            }
                        }
                    }
                    None => conn.close(codes::REFUSED, b"no verified peer identity"),
                }
            });
        }
    }

    /// Serves every stream of one peer gateway's connection until it closes.
    pub async fn serve_connection(self: Arc<Self>, conn: quinn::Connection, peer: SpiffeId) {
        let td = peer.trust_domain();
        info!(peer = %peer, remote = %conn.remote_address(), "peer gateway connected");
        self.metrics
            .connections
            .with_label_values(&["inbound", td.as_str(), "ok"])
            .inc();
        while let Ok((mut send, mut recv)) = conn.accept_bi().await {
            let this = self.clone();
            let peer = peer.clone();
            let permit = match self.live.with(|s| s.per_peer.get(&td).cloned()) {
                Some(sem) => sem.try_acquire_owned(),
                // The peer's domain is no longer configured: a connection
                // made before the change serves no new stream.
                None => {
                    fail(&mut send, &mut recv, codes::REFUSED);
                    let r = Refusal::NotAPeerGateway {
                        gateway: peer.clone(),
                    };
                    warn!(peer = %peer, reason = r.reason().as_str(), "inbound stream refused: {r}");
                    continue;
                }
            };
            let permit = match permit {
                Ok(p) => p,
                Err(_) => {
                    fail(&mut send, &mut recv, codes::OVERLOADED);
                    warn!(peer = %peer, reason = "overloaded", "inbound stream refused: {}",
                        StreamError::Overloaded(td.clone()));
                    continue;
                }
            };
            let span = debug_span!("stream", id = %send.id());
            tokio::spawn(
                async move {
                    let _permit = permit;
                    if let Err(e) = this.serve_stream(send, recv, &peer).await {
                        warn!(peer = %peer, reason = e.reason().as_str(), "inbound stream ended: {e}");
                    }
                }
                .instrument(span),
            );
        }
        debug!(peer = %peer, "peer gateway connection closed");
    }

    /// One stream: header, checks, then the call (TCP bytes or one HTTP
    /// exchange). Resets the stream with the matching code on any refusal
    /// of a TCP stream; an HTTP stream gets an HTTP answer.
    pub async fn serve_stream(
        self: &Arc<Self>,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        peer: &SpiffeId,
    ) -> Result<(), StreamError> {
        let started = Instant::now();
        let peer_td = peer.trust_domain();
        if self.drain.is_draining() {
            fail(&mut send, &mut recv, codes::DRAINING);
            return Err(StreamError::Draining);
        }
        let max_header = self.live.with(|s| s.config.limits.max_header_bytes);
        let header =
            match tokio::time::timeout(HEADER_TIMEOUT, StreamHeader::read(&mut recv, max_header))
                .await
            {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    let code = match e {
                        HeaderError::UnsupportedVersion { .. } => codes::VERSION_UNSUPPORTED,
                        _ => codes::HEADER_INVALID,
                    };
                    fail(&mut send, &mut recv, code);
                    self.count(&peer_td, "", e.reason().as_str(), started);
                    return Err(e.into());
                }
                Err(_) => {
                    fail(&mut send, &mut recv, codes::HEADER_INVALID);
                    self.count(&peer_td, "", Reason::HeaderTimeout.as_str(), started);
                    return Err(StreamError::HeaderTimeout(HEADER_TIMEOUT));
                }
            };
        let span = debug_span!("call", caller = %header.caller, service = %header.service,
            port = header.port, request_id = %header.request_id);
        self.serve_call(header, send, recv, peer, started)
            .instrument(span)
            .await
    }

    /// A stream whose header is in: the checks, then the call.
    async fn serve_call(
        self: &Arc<Self>,
        header: StreamHeader,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        peer: &SpiffeId,
        started: Instant,
    ) -> Result<(), StreamError> {
        let peer_td = peer.trust_domain();
        // The config in effect once the header is in, for the whole stream.
        let snap = self.live.load();
        let admitted = match check::check(&snap.config, peer, &header) {
            Ok(a) => a,
            Err(r) => {
                // A service label only for a configured service: a peer
                // cannot make series of names it invents.
                let service = known_service(&snap, &header);
                match &header.request {
                    // The caller gets a 403 naming the reason.
                    Some(head) => {
                        let grpc = is_grpc(&head.headers);
                        let e = CallError::new(r.reason(), r.to_string());
                        let _ = recv.stop(codes::REFUSED);
                        self.answer(
                            Sending::new(send),
                            &e,
                            grpc,
                            service,
                            peer_td.as_str(),
                            started,
                        )
                        .await?;
                    }
                    None => {
                        fail(&mut send, &mut recv, codes::REFUSED);
                        self.count(&peer_td, service, r.reason().as_str(), started);
                    }
                }
                return Err(r.into());
            }
        };
        let dest = admitted.destination.clone();
        debug!(peer = %peer, caller = %header.caller, principal = ?admitted.principal,
            service = %dest.service, port = dest.port,
            request_id = %header.request_id, "inbound stream accepted");
        let mut header = header;
        match header.request.take() {
            Some(head) => {
                let peer_domain = header.caller.trust_domain();
                self.http_call(
                    &snap,
                    header,
                    head,
                    &admitted,
                    send,
                    recv,
                    peer_domain.as_str(),
                    started,
                )
                .await
            }
            None => {
                self.tcp_call(&snap, &dest, send, recv, &peer_td, started)
                    .await
            }
        }
    }

    pub(super) fn count(
        &self,
        peer_td: &TrustDomain,
        service: &str,
        result: &str,
        started: Instant,
    ) {
        self.metrics.request(
            Direction::Inbound,
            service,
            peer_td.as_str(),
            result,
            started.elapsed(),
        );
    }
}
