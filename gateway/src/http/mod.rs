//! HTTP calls through the gateway.
//!
//! A local caller's request, on an HTTP/1.1 or h2c listener:
//!
//! ```text
//! Host / :authority → destination (local service or import)   404 if none
//! strip hop-by-hop and x-forwarded-client-cert; keep or start traceparent
//! local service:  rules → set XFCC → pooled upstream connection  403 / 503 / 504
//! import:         stream to the peer (header, then HTTP/2) → the peer's answer
//! ```
//!
//! A peer's request, on a tunnel stream whose header the inbound checks
//! passed: strip XFCC and `x-causeway-principal`, set XFCC from the stream
//! header's caller and the principal from the identity map (when it maps
//! the caller), hand it to a local endpoint.

pub mod forward;
pub mod headers;
pub mod tunnel;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, Version, header};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::config::{Destination, GatewayConfig};
use crate::drain::Tracked;
use crate::live::Snapshot;
use crate::metrics::{Direction, Metrics, StreamGuard};
use crate::outbound::{CallContext, Outbound, Route};
use crate::service::ServiceName;
use crate::tunnel::header::{Protocol, StreamHeader};
use crate::tunnel::inbound::Admitted;
use crate::tunnel::serve::Inbound;
use forward::{Body, CallError, incoming};
use headers::CallerCert;

/// The destination a request names in `:authority` or `Host`. A port in
/// it is used when that service port exists; otherwise a name with a
/// single port needs none.
pub fn route(config: &GatewayConfig, parts: &Parts) -> Result<Destination, CallError> {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(header::HOST)?.to_str().ok())
        .ok_or_else(|| CallError::NoRoute("a request without Host".into()))?;
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (n, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    let service = ServiceName::new(&name.to_ascii_lowercase())
        .map_err(|_| CallError::NoRoute(format!("{host:?}")))?;
    if let Some(port) = port {
        let d = Destination {
            service: service.clone(),
            port,
        };
        if config.services.contains_key(&d) || config.imports.contains_key(&d) {
            return Ok(d);
        }
    }
    let mut ports = config
        .services
        .keys()
        .chain(config.imports.keys())
        .filter(|d| d.service == service);
    match (ports.next(), ports.next()) {
        (Some(d), None) => Ok(d.clone()),
        (Some(_), Some(_)) => Err(CallError::NoRoute(format!(
            "{service}: it has several ports; name one in Host"
        ))),
        (None, _) => Err(CallError::NoRoute(service.to_string())),
    }
}

/// Serves one local caller's HTTP/1.1 or h2c connection until it closes or
/// the gateway drains.
pub async fn serve_connection<IO>(io: IO, caller: CallerCert, outbound: Arc<Outbound>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let caller = Arc::new(caller);
    let ob = outbound.clone();
    let svc = service_fn(move |req| {
        let (ob, caller) = (ob.clone(), caller.clone());
        async move { Ok::<_, Infallible>(call(&ob, &caller, req).await) }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return debug!("http connection done: {r:?}"),
        _ = outbound.drain.started() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// One local caller's request, start to response head.
async fn call(ob: &Outbound, caller: &CallerCert, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let guards = (
        ob.drain.track(),
        ob.metrics.stream_guard(Direction::Outbound),
    );
    let downstream_h2 = req.version() == Version::HTTP_2;
    let (mut parts, body) = req.into_parts();
    // The config in effect for this whole call.
    let snap = ob.live.load();
    let dest = match route(&snap.config, &parts) {
        Ok(d) => d,
        Err(e) => return refuse(&ob.metrics, Direction::Outbound, "", "", e, started),
    };
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::strip_identity(&mut parts.headers);
    let (traceparent, tracestate) = headers::ensure_trace(&mut parts.headers);
    let request_id = headers::ensure_request_id(&mut parts.headers);
    let deadline = headers::deadline(&parts.headers, snap.config.limits.request_timeout, None);
    let peer_td = snap.peer_domain(&dest);
    let result = match snap.route(&caller.id, &dest) {
        Err(e) => Err(CallError::from(e)),
        Ok(Route::Local(endpoints)) => {
            headers::set_xfcc(&mut parts.headers, &snap.config.id, caller);
            snap.http
                .send(
                    endpoints,
                    &dest,
                    parts,
                    incoming(body),
                    downstream_h2,
                    deadline,
                )
                .await
        }
        Ok(Route::Import(import)) => {
            let ctx = CallContext {
                request_id: request_id.clone(),
                traceparent: Some(traceparent),
                tracestate,
                deadline: Some(SystemTime::now() + (deadline - Instant::now())),
            };
            let protocol = if downstream_h2 {
                Protocol::Http2
            } else {
                Protocol::Http1
            };
            match ob.open(&snap, import, &caller.id, protocol, &ctx).await {
                Ok(stream) => {
                    tunnel::send(stream, parts, incoming(body), &import.remote, deadline).await
                }
                Err(e) => Err(CallError::from(e)),
            }
        }
    };
    let service = dest.service.as_str();
    match result {
        Ok(resp) => {
            ob.metrics.request(
                Direction::Outbound,
                service,
                peer_td,
                peer_answer(&resp),
                started.elapsed(),
            );
            guard_response(resp, guards)
        }
        Err(e) => {
            info!(caller = %caller.id, service, port = dest.port, request_id, reason = e.reason(), "call refused: {e}");
            refuse(
                &ob.metrics,
                Direction::Outbound,
                service,
                peer_td,
                e,
                started,
            )
        }
    }
}

/// The result label of a call that got an answer: `ok`, or, when a gateway
/// made the answer itself (a peer's 403, say), `peer_` and its reason.
fn peer_answer(resp: &Response<Incoming>) -> &'static str {
    let Some(reason) = resp.headers().get(headers::REFUSAL) else {
        return "ok";
    };
    match reason.as_bytes() {
        b"denied" => "peer_denied",
        b"foreign_caller" => "peer_foreign_caller",
        b"unknown_service" => "peer_unknown_service",
        b"not_a_peer_gateway" => "peer_not_a_peer_gateway",
        b"no_route" => "peer_no_route",
        b"unavailable" => "peer_unavailable",
        b"timeout" => "peer_timeout",
        b"upstream_error" => "peer_upstream_error",
        _ => "peer_other",
    }
}

fn refuse(
    metrics: &Metrics,
    direction: Direction,
    service: &str,
    peer_td: &str,
    e: CallError,
    started: Instant,
) -> Response<Body> {
    metrics.request(direction, service, peer_td, e.reason(), started.elapsed());
    e.response()
}

/// Keeps the call counted (drain, active streams) until its response body
/// has been sent or dropped.
fn guard_response(resp: Response<Incoming>, guards: (Tracked, StreamGuard)) -> Response<Body> {
    resp.map(|b| {
        Guarded {
            inner: incoming(b),
            _guards: guards,
        }
        .boxed()
    })
}

struct Guarded {
    inner: Body,
    _guards: (Tracked, StreamGuard),
}

impl http_body::Body for Guarded {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

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
                snap.http
                    .send(
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
