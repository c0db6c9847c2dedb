//! HTTP calls of local callers, on an HTTP/1.1 or h2c listener:
//!
//! ```text
//! Host / :authority → destination (local service or import)   404 if none
//! strip hop-by-hop and x-forwarded-client-cert; keep or start traceparent
//! local service:  rules → set XFCC → pooled upstream connection  403 / 503 / 504
//! import:         stream to the peer (header, then the call) → the peer's answer
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::SystemTime;

use http::request::Parts;
use http::{Request, Response, Version, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{debug, info};

use crate::body::{Body, guard_response, incoming};
use crate::config::{Destination, GatewayConfig};
use crate::metrics::Direction;
use crate::proxy::error::{CallError, refuse};
use crate::proxy::headers::{self, CallerCert};
use crate::proxy::local;
use crate::proxy::outbound::{CallContext, Outbound};
use crate::proxy::tunnel_h2 as tunnel;
use crate::service::ServiceName;
use crate::state::Route;
use crate::transport::header::Protocol;

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
            local::send(
                &snap.http,
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
