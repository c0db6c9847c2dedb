//! A local caller's TCP connection: its bytes to the destination (a local
//! endpoint or a stream to the peer) and back. A refused call is closed
//! (TCP has no way to say why); the log and the metrics say.

use std::net::SocketAddr;

use tokio::time::Instant;
use tracing::{debug, info};

use crate::config::Destination;
use crate::metrics::Direction;
use crate::proxy::headers::CallerCert;
use crate::proxy::outbound::accept::Downstream;
use crate::proxy::outbound::{CallContext, Outbound};

/// One TCP call: the connection's bytes to the destination and back. A
/// refused call is closed (TCP has no way to say why); the log and the
/// metrics say.
pub(crate) async fn call(
    mut downstream: Downstream,
    from: SocketAddr,
    caller: &CallerCert,
    dest: &Destination,
    ctx: &CallContext,
    outbound: &Outbound,
) {
    let started = Instant::now();
    let _tracked = outbound.drain.track();
    let _open = outbound.metrics.stream_guard(Direction::Outbound);
    let snap = outbound.live.load();
    let (service, peer_td) = (dest.service.as_str(), snap.peer_domain(dest));
    let metrics = &outbound.metrics;
    match outbound.connect(&snap, &caller.id, dest, ctx).await {
        Ok(mut upstream) => {
            let r = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
            let result = match &r {
                Ok((up, down)) => {
                    metrics.bytes(Direction::Outbound, service, *up, *down);
                    "ok"
                }
                Err(_) => "reset",
            };
            metrics.request(
                Direction::Outbound,
                service,
                peer_td,
                result,
                started.elapsed(),
            );
            debug!(%from, service, "connection done: {r:?}");
        }
        Err(e) => {
            metrics.request(
                Direction::Outbound,
                service,
                peer_td,
                e.reason().as_str(),
                started.elapsed(),
            );
            info!(%from, caller = %caller.id, service, reason = e.reason().as_str(), "refused: {e}");
        }
    }
}
