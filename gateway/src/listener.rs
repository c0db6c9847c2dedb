//! Local TCP listeners: every connection goes to the listener's one
//! destination, as the listener's configured caller identity.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use causeway_trust::SpiffeId;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::config::{CallerMode, Destination, Listener, ListenerKind};
use crate::outbound::{CallContext, Outbound};
use crate::tunnel::header::Protocol;

/// Why a listener cannot be served by this module.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("listener {0:?} is not a TCP listener")]
    NotTcp(String),
    #[error("listener {0:?} requires mTLS from callers, which TCP listeners do not support yet")]
    MtlsUnsupported(String),
}

/// Serves a bound TCP listener until the task is dropped.
pub async fn serve_tcp(
    socket: TcpListener,
    listener: Listener,
    outbound: Arc<Outbound>,
) -> Result<(), ListenerError> {
    let ListenerKind::Tcp { destination } = listener.kind.clone() else {
        return Err(ListenerError::NotTcp(listener.name));
    };
    let CallerMode::Assigned(caller) = listener.caller.clone() else {
        return Err(ListenerError::MtlsUnsupported(listener.name));
    };
    let counter = Arc::new(AtomicU64::new(0));
    loop {
        let (mut downstream, from) = match socket.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(listener = %listener.name, "accept failed: {e}");
                continue;
            }
        };
        let _ = downstream.set_nodelay(true);
        let outbound = outbound.clone();
        let destination: Destination = destination.clone();
        let caller: SpiffeId = caller.clone();
        let name = listener.name.clone();
        let n = counter.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let ctx = CallContext {
                request_id: format!("{name}-{n}"),
                traceparent: None,
            };
            match outbound
                .connect(&caller, &destination, Protocol::Tcp, &ctx)
                .await
            {
                Ok(mut upstream) => {
                    let r = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
                    debug!(listener = %name, %from, "connection done: {r:?}");
                }
                Err(e) => {
                    warn!(listener = %name, %from, caller = %caller, reason = e.reason(), "refused: {e}");
                }
            }
        });
    }
}
