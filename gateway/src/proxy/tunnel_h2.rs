//! HTTP over a tunnel stream. After the stream header, a stream of protocol
//! HTTP carries one HTTP/2 connection (prior knowledge) holding one
//! request and its response: HTTP/2 framing keeps methods, headers,
//! streaming bodies and trailers (gRPC) intact, whatever version the caller
//! spoke; the header's protocol says which version the upstream gets.

use std::error::Error;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::request::Parts;
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::body::Body;
use crate::config::Destination;
use crate::proxy::error::CallError;
use crate::proxy::local::{chain, retarget};
use crate::transport::quic::codes;

type StreamIo = tokio::io::Join<quinn::RecvStream, quinn::SendStream>;

/// The sending gateway's side: one request over a fresh stream to a peer,
/// waiting for the response head until `deadline`.
pub(crate) async fn send(
    stream: StreamIo,
    mut parts: Parts,
    body: Body,
    remote: &Destination,
    deadline: Instant,
) -> Result<Response<Incoming>, CallError> {
    let stream = Observed {
        io: stream,
        cause: Arc::default(),
    };
    let cause = stream.cause.clone();
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| from_stream_error(&e, &cause))?;
    tokio::spawn(async move {
        // Ends once the response is read and the sender dropped.
        let _ = conn.await;
    });
    parts.uri = retarget(&parts.uri, &format!("{}:{}", remote.service, remote.port))?;
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
        Ok(Err(e)) => Err(from_stream_error(&e, &cause)),
    }
}

/// The tunnel stream under the HTTP/2 client, noting the QUIC cause of the
/// first failure: the HTTP/2 layer keeps only the text of I/O errors.
struct Observed {
    io: StreamIo,
    cause: Arc<Mutex<Option<QuicCause>>>,
}

impl Observed {
    fn note<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(Err(e)) = &r
            && let Some(c) = from_io(e)
            && let Ok(mut slot) = self.cause.lock()
        {
            slot.get_or_insert(c);
        }
        r
    }
}

impl AsyncRead for Observed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        self.note(r)
    }
}

impl AsyncWrite for Observed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(r)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.note(r)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.note(r)
    }
}

/// The receiving gateway's side: serves the stream's HTTP/2 connection
/// with `service` until the caller is done.
pub(crate) async fn serve<S>(stream: StreamIo, service: S) -> Result<(), hyper::Error>
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

/// What the peer's reset code on the stream, or the loss of the
/// connection, means for the caller.
fn from_stream_error(e: &(dyn Error + 'static), seen: &Mutex<Option<QuicCause>>) -> CallError {
    let detail = chain(e);
    let cause = seen.lock().ok().and_then(|mut c| c.take());
    let code = match cause {
        Some(QuicCause::Reset(c)) => c,
        Some(QuicCause::ConnectionLost(why)) => {
            return CallError::Unavailable {
                reason: "peer_connection_lost",
                detail: format!("the connection to the peer gateway was lost: {why}"),
            };
        }
        None => return CallError::Upstream(format!("peer stream: {detail}")),
    };
    match code {
        c if c == codes::REFUSED.into_inner() => CallError::Refused {
            reason: "peer_refused",
            detail: format!("the peer gateway refused the call: {detail}"),
        },
        c if c == codes::UNAVAILABLE.into_inner() => CallError::Unavailable {
            reason: "peer_unavailable",
            detail,
        },
        c if c == codes::DRAINING.into_inner() => CallError::Unavailable {
            reason: "peer_draining",
            detail,
        },
        c if c == codes::OVERLOADED.into_inner() => CallError::Unavailable {
            reason: "peer_overloaded",
            detail,
        },
        _ => CallError::Upstream(format!("peer stream: {detail}")),
    }
}

enum QuicCause {
    /// The peer reset or stopped the stream with this application code.
    Reset(u64),
    /// The whole connection went away (a refused handshake, a closed peer).
    ConnectionLost(String),
}

/// The QUIC cause of an I/O error on a tunnel stream.
fn from_io(io: &io::Error) -> Option<QuicCause> {
    let inner = io.get_ref()?;
    match inner.downcast_ref::<quinn::ReadError>() {
        Some(quinn::ReadError::Reset(c)) => return Some(QuicCause::Reset(c.into_inner())),
        Some(quinn::ReadError::ConnectionLost(l)) => {
            return Some(QuicCause::ConnectionLost(l.to_string()));
        }
        _ => {}
    }
    match inner.downcast_ref::<quinn::WriteError>() {
        Some(quinn::WriteError::Stopped(c)) => Some(QuicCause::Reset(c.into_inner())),
        Some(quinn::WriteError::ConnectionLost(l)) => {
            Some(QuicCause::ConnectionLost(l.to_string()))
        }
        _ => None,
    }
}
