//! A peer's HTTP call on a tunnel stream whose header passed the inbound
//! checks: strip XFCC and `x-causeway-principal`, set XFCC from the stream
//! header's caller and the principal from the identity map (when it maps
//! the caller), hand it to a local endpoint.

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::info;

use crate::body::{Body, guard_response, incoming};
use crate::metrics::Direction;
use crate::proxy::error::{CallError, refuse};
use crate::proxy::headers::{self, CallerCert};
use crate::proxy::inbound::accept::Inbound;
use crate::proxy::inbound::check::Admitted;
use crate::proxy::local;
use crate::state::Snapshot;
use crate::transport::header::{Protocol, StreamHeader};

impl Inbound {
    /// A peer's request on a stream that passed the inbound checks: the
    /// caller is the stream header's, XFCC says so, the upstream gets the
    /// version the caller spoke.
    pub(crate) async fn http_call(
        &self,
        snap: &Snapshot,
        header: &StreamHeader,
        admitted: &Admitted,
        peer_td: &str,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let started = Instant::now();
        let dest = &admitted.destination;
        let guards = (
            self.drain.track(),
            self.metrics.stream_guard(Direction::Inbound),
        );
        let (mut parts, body) = req.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::strip_identity(&mut parts.headers);
        headers::set_xfcc(
            &mut parts.headers,
            &snap.config.id,
            &CallerCert::assigned(header.caller.clone()),
        );
        if let Some(p) = &admitted.principal {
            headers::set_principal(&mut parts.headers, p);
        }
        headers::ensure_trace(&mut parts.headers);
        let deadline = headers::deadline(
            &parts.headers,
            snap.config.limits.request_timeout,
            header.deadline,
        );
        let result = match snap.upstreams.get(dest) {
            Some(endpoints) => {
                local::send(
                    &snap.http,
                    endpoints,
                    dest,
                    parts,
                    incoming(body),
                    header.protocol == Protocol::Http2,
                    deadline,
                )
                .await
            }
            None => Err(CallError::NoRoute(dest.service.to_string())),
        };
        let service = dest.service.as_str();
        match result {
            Ok(resp) => {
                self.metrics.request(
                    Direction::Inbound,
                    service,
                    peer_td,
                    "ok",
                    started.elapsed(),
                );
                guard_response(resp, guards)
            }
            Err(e) => {
                info!(caller = %header.caller, service, request_id = %header.request_id,
                    reason = e.reason(), "inbound call failed: {e}");
                refuse(
                    &self.metrics,
                    Direction::Inbound,
                    service,
                    peer_td,
                    e,
                    started,
                )
            }
        }
    }
}
