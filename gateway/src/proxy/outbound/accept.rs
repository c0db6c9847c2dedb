//! Local listeners, where in-cluster callers reach the gateway.
//!
//! accept → who is calling (the listener's assigned identity, or the SPIFFE
//! ID of the SVID the caller presents in an mTLS handshake) → a TCP
//! listener carries the connection to its one destination; an HTTP
//! listener serves HTTP/1.1 and h2c, routing each request by Host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use causeway_trust::tls::{SvidSource, TlsError, server_config};
use causeway_trust::verify::RefusalObserver;
use causeway_trust::{Expected, SharedBundles, SpiffeVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{Instrument, debug, debug_span, warn};

use crate::config::{CallerMode, Listener, ListenerKind};
use crate::proxy::headers::CallerCert;
use crate::proxy::outbound::{CallContext, Outbound};

/// The TLS side of an mTLS listener: callers must present an SVID of this
/// gateway's own trust domain. HTTP listeners offer h2 and http/1.1.
pub fn tls_acceptor(
    listener: &Listener,
    own: &causeway_trust::TrustDomain,
    svid: &SvidSource,
    bundles: &SharedBundles,
    observer: Option<RefusalObserver>,
) -> Result<TlsAcceptor, TlsError> {
    let mut verifier = SpiffeVerifier::new(bundles.clone(), Expected::trust_domains([own.clone()]));
    if let Some(o) = observer {
        verifier = verifier.with_observer(o);
    }
    let alpn: &[&[u8]] = match listener.kind {
        ListenerKind::Http => &[b"h2", b"http/1.1"],
        ListenerKind::Tcp { .. } => &[],
    };
    let config = server_config(svid, Arc::new(verifier), alpn)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A local caller's connection, plain or TLS.
#[derive(Debug)]
pub enum Downstream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Serves a bound local listener until the gateway drains. `tls` is
/// required when the listener's callers use mTLS.
pub async fn serve(
    socket: TcpListener,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    outbound: Arc<Outbound>,
) {
    let listener = Arc::new(listener);
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let (tcp, from) = tokio::select! {
            r = socket.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    warn!(listener = %listener.name, "accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = outbound.drain.started() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (listener, tls, outbound) = (listener.clone(), tls.clone(), outbound.clone());
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let span = debug_span!("connection", listener = %listener.name, %from);
        tokio::spawn(
            async move {
                let Some((io, caller)) = authenticate(tcp, from, &listener, tls, &outbound).await
                else {
                    return;
                };
                match &listener.kind {
                    ListenerKind::Tcp { destination } => {
                        let ctx = CallContext {
                            request_id: format!("{}-{n}", listener.name),
                            ..CallContext::default()
                        };
                        super::tcp::call(io, from, &caller, destination, &ctx, &outbound).await;
                    }
                    ListenerKind::Http => {
                        crate::proxy::outbound::http::serve_connection(io, caller, outbound).await;
                    }
                }
            }
            .instrument(span),
        );
    }
}

/// Who is calling: the assigned identity, or the SVID from the handshake.
async fn authenticate(
    tcp: TcpStream,
    from: SocketAddr,
    listener: &Listener,
    tls: Option<TlsAcceptor>,
    outbound: &Outbound,
) -> Option<(Downstream, CallerCert)> {
    match (&listener.caller, tls) {
        (CallerMode::Assigned(id), _) => {
            Some((Downstream::Plain(tcp), CallerCert::assigned(id.clone())))
        }
        (CallerMode::Mtls, Some(acceptor)) => {
            let timeout = outbound.live.with(|s| s.config.limits.handshake_timeout);
            let stream = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                // A refused SVID has been logged and counted by the verifier.
                Ok(Err(e)) => {
                    debug!(listener = %listener.name, %from, "handshake failed: {e}");
                    return None;
                }
                Err(_) => {
                    debug!(listener = %listener.name, %from, "no handshake within {timeout:?}");
                    return None;
                }
            };
            let certs = stream.get_ref().1.peer_certificates();
            let leaf = certs.and_then(|c| c.first())?;
            let id = causeway_trust::verify::peer_id(certs)?;
            let caller = CallerCert::presented(id, leaf.as_ref());
            Some((Downstream::Tls(Box::new(stream)), caller))
        }
        (CallerMode::Mtls, None) => {
            warn!(listener = %listener.name, "mTLS listener without TLS config: connection dropped");
            None
        }
    }
}

crate::io::delegate_io!(Downstream { Plain, Tls });
