//! A peer's HTTP call on a tunnel stream whose header passed the inbound
//! checks:
//!
//! ```text
//! request head (in the stream header) ─► strip hop-by-hop, XFCC and
//!   x-causeway-principal ─► XFCC from the header's caller, the principal from
//!   the identity map ─► the body from the stream's frames ─► a local endpoint
//!   (HTTP/1.1 or HTTP/2 as the service port declares)
//! response ─► RESPONSE_HEAD frame ─► DATA frames ─► TRAILERS ─► FIN
//!   (a 101: the upgraded bytes both ways, unframed)
//! ```

use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::body::{Body, empty};
use crate::metrics::Direction;
use crate::proxy::error::{CallError, Reason, is_grpc};
use crate::proxy::headers::{self, CallerCert};
use crate::proxy::inbound::accept::{Inbound, StreamError};
use crate::proxy::inbound::check::Admitted;
use crate::proxy::local;
use crate::proxy::tunnel::{self, SendBodyError, Sending, StreamBody};
use crate::state::Snapshot;
use crate::transport::frame::{self, FrameReader};
use crate::transport::header::{RequestHead, StreamHeader};

impl Inbound {
    /// Carries one HTTP call to a local endpoint and its answer back, to
    /// the end of the response.
    #[allow(clippy::too_many_arguments, reason = "one stream's parts")]
    pub(super) async fn http_call(
        &self,
        snap: &Snapshot,
        header: StreamHeader,
        head: RequestHead,
        admitted: &Admitted,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
        peer_td: &str,
        started: Instant,
    ) -> Result<(), StreamError> {
        let mut send = Sending::new(send);
        let dest = &admitted.destination;
        let service = dest.service.as_str();
        let _tracked = self.drain.track();
        let _open = self.metrics.stream_guard(Direction::Inbound);
        let limits = &snap.config.limits;
        let grpc = is_grpc(&head.headers);
        let upgrade = head
            .upgrade
            .then(|| head.headers.get(http::header::UPGRADE).cloned())
            .flatten();
        let reader = FrameReader::new(recv, limits.max_header_bytes);

        let Some(service_config) = snap.config.services.get(dest) else {
            let e = CallError::new(Reason::NoRoute, format!("no route to {service}"));
            return self.answer(send, &e, grpc, service, peer_td, started).await;
        };
        let mut req = Request::new(());
        *req.method_mut() = head.method;
        *req.version_mut() = Version::HTTP_11;
        *req.uri_mut() = Uri::from(head.path);
        *req.headers_mut() = head.headers;
        let (mut parts, ()) = req.into_parts();
        let h = &mut parts.headers;
        headers::strip_hop_by_hop(h);
        headers::strip_identity(h);
        headers::set_xfcc(
            h,
            &snap.config.id,
            &CallerCert::assigned(header.caller.clone()),
        );
        if let Some(p) = &admitted.principal {
            headers::set_principal(h, p);
        }
        headers::ensure_trace(h);
        h.insert(http::header::HOST, service_config.host.clone());
        let deadlines = headers::deadlines(h, limits.request_timeout, header.deadline);

        // The request body comes from the stream's frames; an upgrade's
        // stream carries the upgraded bytes after the 101 instead.
        let (body, reader): (Body, Option<FrameReader>) = if head.end_stream || upgrade.is_some() {
            (empty(), Some(reader))
        } else {
            let b = StreamBody::new(reader, &parts.headers);
            (http_body_util::BodyExt::boxed_unsync(b), None)
        };
        let Some(endpoints) = snap.upstreams.get(dest) else {
            let e = CallError::new(Reason::NoRoute, format!("no route to {service}"));
            return self.answer(send, &e, grpc, service, peer_td, started).await;
        };
        let protocol = service_config.protocol;
        let answer = local::call(
            &snap.http,
            endpoints,
            dest,
            protocol,
            parts,
            body,
            upgrade.as_ref(),
            &deadlines,
            grpc,
        )
        .await;
        let (resp, upgraded) = match answer {
            Ok(a) => a,
            Err(e) => {
                info!(caller = %header.caller, service, request_id = %header.request_id,
                    reason = e.reason.as_str(), "inbound call failed: {e}");
                return self.answer(send, &e, grpc, service, peer_td, started).await;
            }
        };
        self.metrics.request(
            Direction::Inbound,
            service,
            peer_td,
            "ok",
            started.elapsed(),
        );
        let (mut parts, body) = resp.into_parts();
        let end = upgraded.is_none() && body.is_end_stream();
        set_length(parts.status, &mut parts.headers, &body);
        send.write(frame::response_head(parts.status, &parts.headers, end))
            .await
            .map_err(StreamError::Write)?;
        if let (Some(up), Some(reader)) = (upgraded, reader) {
            if let Some(stream) = send.take() {
                tunnel::bridge_stream(up, stream, reader)
                    .await
                    .map_err(StreamError::Copy)?;
            }
            return Ok(());
        }
        if end {
            send.finish();
            return Ok(());
        }
        match tunnel::send_body(body, &mut send).await {
            Ok(()) => Ok(()),
            Err(SendBodyError::Body(e)) => {
                debug!("response body from {service}: {e}");
                Err(StreamError::Body(e.to_string()))
            }
            Err(SendBodyError::Stream(e)) => Err(StreamError::Write(e)),
        }
    }

    /// Answers the call with the gateway's own response (a refusal, an
    /// unreachable service): head and body frames, then FIN. The request
    /// body is not read: the peer is told to stop sending it.
    pub(super) async fn answer(
        &self,
        mut send: Sending,
        e: &CallError,
        grpc: bool,
        service: &str,
        peer_td: &str,
        started: Instant,
    ) -> Result<(), StreamError> {
        self.metrics.request(
            Direction::Inbound,
            service,
            peer_td,
            e.reason.as_str(),
            started.elapsed(),
        );
        send_response(&mut send, e.response(grpc)).await
    }
}

/// Writes a whole response on the stream.
pub(super) async fn send_response(
    send: &mut Sending,
    resp: Response<Body>,
) -> Result<(), StreamError> {
    let (mut parts, body) = resp.into_parts();
    let end = body.is_end_stream();
    set_length(parts.status, &mut parts.headers, &body);
    send.write(frame::response_head(parts.status, &parts.headers, end))
        .await
        .map_err(StreamError::Write)?;
    if end {
        send.finish();
        return Ok(());
    }
    tunnel::send_body(body, send).await.map_err(|e| match e {
        SendBodyError::Body(e) => StreamError::Body(e.to_string()),
        SendBodyError::Stream(e) => StreamError::Write(e),
    })
}

/// A body of known length gets its `content-length` (as a server's would),
/// so that an HTTP/1.1 caller is not answered in chunks for want of it.
/// Never on a 1xx, 204 or 304, which may not have one.
fn set_length(
    status: http::StatusCode,
    headers: &mut http::HeaderMap,
    body: &impl http_body::Body,
) {
    let bodiless = status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    if bodiless || headers.contains_key(http::header::CONTENT_LENGTH) {
        return;
    }
    if let Some(n) = body.size_hint().exact() {
        headers.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    }
}
