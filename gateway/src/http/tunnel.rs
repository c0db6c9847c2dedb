//! HTTP over a tunnel stream. After the stream header, a stream of protocol
//! HTTP carries one HTTP/2 connection (prior knowledge) holding one
//! request and its response: HTTP/2 framing keeps methods, headers,
//! streaming bodies and trailers (gRPC) intact, whatever version the caller
//! spoke; the header's protocol says which version the upstream gets.

use std::error::Error;
use std::io;

use http::request::Parts;
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use crate::config::Destination;
use crate::http::forward::{Body, CallError, chain};
use crate::tunnel::quic::codes;

type StreamIo = tokio::io::Join<quinn::RecvStream, quinn::SendStream>;

/// The sending gateway's side: one request over a fresh stream to a peer,
/// waiting for the response head until `deadline`.
pub async fn send(
    stream: StreamIo,
    mut parts: Parts,
    body: Body,
    remote: &Destination,
    deadline: Instant,
) -> Result<Response<Incoming>, CallError> {
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| from_stream_error(&e))?;
    tokio::spawn(async move {
        // Ends once the response is read and the sender dropped.
        let _ = conn.await;
    });
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    parts.uri = Uri::builder()
        .scheme("http")
        .authority(format!("{}:{}", remote.service, remote.port))
        .path_and_query(pq)
        .build()
        .map_err(|e| CallError::Upstream(format!("request target: {e}")))?;
    parts.version = Version::HTTP_2;
    // :authority names the remote service; a Host naming the local import
    // would contradict it.
    parts.headers.remove(http::header::HOST);
    let started = Instant::now();
    match tokio::time::timeout_at(
        deadline,
        sender.send_request(Request::from_parts(parts, body)),
    )
    .await
    {
        Err(_) => Err(CallError::Timeout(deadline - started)),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) => Err(from_stream_error(&e)),
    }
}

/// The receiving gateway's side: serves the stream's HTTP/2 connection
/// with `service` until the caller is done.
pub async fn serve<S>(stream: StreamIo, service: S) -> Result<(), hyper::Error>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = std::convert::Infallible>
        + Send,
    S::Future: Send + 'static,
{
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_concurrent_streams(1)
        .serve_connection(TokioIo::new(stream), service)
        .await
}

/// What the peer's reset code on the stream means for the caller.
fn from_stream_error(e: &(dyn Error + 'static)) -> CallError {
    let detail = chain(e);
    match reset_code(e) {
        Some(c) if c == codes::REFUSED.into_inner() => CallError::Refused {
            reason: "peer_refused",
            detail: format!("the peer gateway refused the call: {detail}"),
        },
        Some(c) if c == codes::UNAVAILABLE.into_inner() => CallError::Unavailable {
            reason: "peer_unavailable",
            detail,
        },
        Some(c) if c == codes::DRAINING.into_inner() => CallError::Unavailable {
            reason: "peer_draining",
            detail,
        },
        Some(c) if c == codes::OVERLOADED.into_inner() => CallError::Unavailable {
            reason: "peer_overloaded",
            detail,
        },
        _ => CallError::Upstream(format!("peer stream: {detail}")),
    }
}

/// The QUIC application code the peer reset or stopped the stream with,
/// wherever it sits in an error's chain.
fn reset_code(e: &(dyn Error + 'static)) -> Option<u64> {
    fn from_io(io: &io::Error) -> Option<u64> {
        let inner = io.get_ref()?;
        if let Some(quinn::ReadError::Reset(c)) = inner.downcast_ref::<quinn::ReadError>() {
            return Some(c.into_inner());
        }
        if let Some(quinn::WriteError::Stopped(c)) = inner.downcast_ref::<quinn::WriteError>() {
            return Some(c.into_inner());
        }
        None
    }
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(h) = c.downcast_ref::<h2::Error>()
            && let Some(code) = h.get_io().and_then(from_io)
        {
            return Some(code);
        }
        if let Some(code) = c.downcast_ref::<io::Error>().and_then(from_io) {
            return Some(code);
        }
        cur = c.source();
    }
    None
}
