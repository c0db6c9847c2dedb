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

use causeway_trust::SpiffeId;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tracing::{Instrument, debug, info};

use crate::body::{Body, guard_response, incoming};
use crate::config::{Destination, GatewayConfig, Import};
use crate::metrics::Direction;
use crate::proxy::error::{CallError, Reason, is_grpc, refuse};
use crate::proxy::headers::{self, CallerCert, Deadlines};
use crate::proxy::local;
use crate::proxy::outbound::{CallContext, Outbound};
use crate::proxy::tunnel::{self, Sending, StreamBody};
use crate::service::ServiceName;
use crate::state::{Route, Snapshot};
use crate::transport::frame::FrameReader;
use crate::transport::header::RequestHead;
use crate::transport::quic::codes;

/// The destination a request names in `:authority` or `Host`. A port in
/// it is used when that service port exists; otherwise a name with a
/// single port needs none.
pub fn route(config: &GatewayConfig, parts: &Parts) -> Result<Destination, CallError> {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| parts.headers.get(header::HOST)?.to_str().ok())
        .ok_or_else(|| CallError::new(Reason::NoRoute, "a request without Host"))?;
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => (n, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    let service = ServiceName::new(&name.to_ascii_lowercase())
        .map_err(|_| CallError::new(Reason::NoRoute, format!("no route to {host:?}")))?;
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
        (Some(_), Some(_)) => Err(CallError::new(
            Reason::NoRoute,
            format!("no route to {service}: it has several ports; name one in Host"),
        )),
        (None, _) => Err(CallError::new(
            Reason::NoRoute,
            format!("no route to {service}"),
        )),
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
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return debug!("http connection done: {r:?}"),
        _ = outbound.drain.started() => conn.as_mut().graceful_shutdown(),
    }
    let _ = conn.await;
}

/// One local caller's request, start to response head.
async fn call(ob: &Outbound, caller: &CallerCert, mut req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let guards = (
        ob.drain.track(),
        ob.metrics.stream_guard(Direction::Outbound),
    );
    let grpc = is_grpc(req.headers());
    // An HTTP/1.1 Upgrade (WebSocket): its value, and the caller's side of
    // the connection once the 101 is sent.
    let upgrade = headers::upgrade_of(req.version(), req.headers())
        .map(|v| (v, hyper::upgrade::on(&mut req)));
    let (mut parts, body) = req.into_parts();
    // The config in effect for this whole call.
    let snap = ob.live.load();
    let dest = match route(&snap.config, &parts) {
        Ok(d) => d,
        Err(e) => {
            let span = tracing::info_span!("call", caller = %caller.id, service = "");
            span.in_scope(|| info!(reason = e.reason.as_str(), "call refused: {e}"));
            return refuse(&ob.metrics, Direction::Outbound, "", "", &e, grpc, started);
        }
    };
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::strip_identity(&mut parts.headers);
    let (traceparent, tracestate) = headers::ensure_trace(&mut parts.headers);
    let request_id = headers::ensure_request_id(&mut parts.headers);
    let deadlines = headers::deadlines(&parts.headers, snap.config.limits.request_timeout, None);
    let peer_td = snap.peer_domain(&dest);
    let span = tracing::debug_span!("call", caller = %caller.id, service = %dest.service,
        port = dest.port, peer = peer_td, request_id = %request_id);
    let result = match snap.route(&caller.id, &dest) {
        Err(e) => Err(CallError::from(e)),
        Ok(Route::Local(endpoints)) => {
            headers::set_xfcc(&mut parts.headers, &snap.config.id, caller);
            let protocol = snap
                .config
                .services
                .get(&dest)
                .map(|s| s.protocol)
                .unwrap_or_default();
            let answer = local::call(
                &snap.http,
                endpoints,
                &dest,
                protocol,
                parts,
                incoming(body),
                upgrade.as_ref().map(|(v, _)| v),
                &deadlines,
                grpc,
            )
            .instrument(span.clone())
            .await;
            answer.map(|(resp, upstream)| {
                if let (Some(up), Some((_, caller))) = (upstream, upgrade) {
                    tokio::spawn(tunnel::bridge_local(caller, up).instrument(span.clone()));
                }
                resp
            })
        }
        Ok(Route::Import(import)) => {
            let ctx = CallContext {
                request_id: request_id.clone(),
                traceparent: Some(traceparent),
                tracestate,
                deadline: deadlines.call_unix(),
            };
            let call = PeerCall {
                ob,
                snap: &snap,
                import,
                caller: &caller.id,
                ctx: &ctx,
                deadlines: &deadlines,
            };
            call.send(parts, body, upgrade)
                .instrument(span.clone())
                .await
        }
    };
    let service = dest.service.as_str();
    match result {
        Ok(resp) => {
            let label = match resp.headers().get(headers::REFUSAL) {
                Some(r) => Reason::from_peer(r.as_bytes()).as_str(),
                None => "ok",
            };
            ob.metrics.request(
                Direction::Outbound,
                service,
                peer_td,
                label,
                started.elapsed(),
            );
            guard_response(resp, guards)
        }
        Err(e) => {
            span.in_scope(|| info!(reason = e.reason.as_str(), "call refused: {e}"));
            refuse(
                &ob.metrics,
                Direction::Outbound,
                service,
                peer_td,
                &e,
                grpc,
                started,
            )
        }
    }
}

/// A call to an imported service: one stream to the peer gateway that
/// exports it.
struct PeerCall<'a> {
    ob: &'a Outbound,
    snap: &'a Snapshot,
    import: &'a Import,
    caller: &'a SpiffeId,
    ctx: &'a CallContext,
    deadlines: &'a Deadlines,
}

impl PeerCall<'_> {
    /// The request head in the stream header, the body after it (in a task
    /// of its own: it may go on after the response has started, as gRPC
    /// streams do), then the peer's answer.
    async fn send(
        self,
        parts: Parts,
        body: Incoming,
        upgrade: Option<(HeaderValue, OnUpgrade)>,
    ) -> Result<Response<Body>, CallError> {
        let limits = &self.snap.config.limits;
        let mut headers = parts.headers;
        // :authority names the remote service at the peer; a Host naming
        // the local import would contradict it.
        headers.remove(http::header::HOST);
        if let Some((value, _)) = &upgrade {
            headers.insert(http::header::UPGRADE, value.clone());
        }
        let end_stream = body.is_end_stream();
        let head = RequestHead {
            method: parts.method,
            path: parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            headers,
            end_stream,
            upgrade: upgrade.is_some(),
        };
        let (send, recv) = self
            .ob
            .open_http(self.snap, self.import, self.caller, head, self.ctx)
            .await?;
        let mut send = Sending::new(send);
        let mut reader = FrameReader::new(recv, limits.max_header_bytes);
        let (pump, send) = match (&upgrade, end_stream) {
            // The stream stays open for the upgraded bytes.
            (Some(_), _) => (None, Some(send)),
            (None, true) => {
                send.finish();
                (None, None)
            }
            (None, false) => {
                let pump = tokio::spawn(async move {
                    let r = tunnel::send_body(body, &mut send).await;
                    if let Err(e) = &r {
                        debug!("request body to the peer: {e}");
                    }
                });
                (Some(pump), None)
            }
        };
        let head = match tokio::time::timeout_at(self.deadlines.head, reader.response_head()).await
        {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                abort(pump);
                return Err(tunnel::from_frame_error(&e));
            }
            Err(_) => {
                abort(pump);
                let _ = reader.stream().stop(codes::CANCELLED);
                return Err(CallError::timeout(limits.request_timeout));
            }
        };
        let mut resp = Response::new(crate::body::empty());
        *resp.status_mut() = head.status;
        *resp.headers_mut() = head.headers;
        if head.status == StatusCode::SWITCHING_PROTOCOLS {
            if let (Some((_, caller)), Some(send)) = (upgrade, send.and_then(|mut s| s.take())) {
                tokio::spawn(async move {
                    if let Err(e) = tunnel::bridge_stream(caller, send, reader).await {
                        debug!("upgraded connection to the peer: {e}");
                    }
                });
            }
            return Ok(resp);
        }
        if head.end_stream {
            return Ok(resp);
        }
        let body = StreamBody::new(reader, resp.headers()).boxed_unsync();
        Ok(resp.map(|_| body))
    }
}

/// Stops a request body that is no longer wanted.
fn abort(pump: Option<tokio::task::JoinHandle<()>>) {
    if let Some(p) = pump {
        p.abort();
    }
}
