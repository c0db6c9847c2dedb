//! The bodies a gateway carries or makes, as one type, and a body that
//! keeps a call counted until it is sent.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tokio::time::{Instant, Sleep};

use crate::drain::Tracked;
use crate::metrics::StreamGuard;

/// Why a body could not be read to its end.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every body the gateway carries or makes.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn incoming(b: Incoming) -> Body {
    b.map_err(BodyError::from).boxed_unsync()
}

/// Keeps the call counted (drain, active streams) until its response body
/// has been sent or dropped.
/// `body`, ended at `at`: a gRPC caller then gets the trailers of
/// DEADLINE_EXCEEDED, as a gRPC server gives them; anyone else an error,
/// which resets the call. The body under it is dropped, which cancels the
/// upstream's call.
pub fn with_deadline(body: Body, at: Instant, grpc: bool) -> Body {
    Deadlined {
        inner: Some(body),
        sleep: Box::pin(tokio::time::sleep_until(at)),
        grpc,
    }
    .boxed_unsync()
}

/// The error of a body cut by its call's deadline.
#[derive(Debug, thiserror::Error)]
#[error("the call's deadline passed")]
pub struct DeadlinePassed;

struct Deadlined {
    inner: Option<Body>,
    sleep: Pin<Box<Sleep>>,
    grpc: bool,
}

/// The trailers of a gRPC call whose deadline passed at a gateway.
pub fn deadline_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("4"));
    t.insert(
        "grpc-message",
        HeaderValue::from_static("deadline exceeded at a Causeway gateway"),
    );
    t.insert("x-causeway-refusal", HeaderValue::from_static("timeout"));
    t
}

impl http_body::Body for Deadlined {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            if frame.is_none() {
                self.inner = None;
            }
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.inner = None;
        Poll::Ready(Some(if self.grpc {
            Ok(Frame::trailers(deadline_trailers()))
        } else {
            Err(Box::new(DeadlinePassed))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or(SizeHint::with_exact(0), |b| b.size_hint())
    }
}

pub(crate) fn guard_response<B>(resp: Response<B>, guards: (Tracked, StreamGuard)) -> Response<Body>
where
    B: http_body::Body<Data = Bytes, Error = BodyError> + Send + Unpin + 'static,
{
    resp.map(|b| {
        Guarded {
            inner: b,
            _guards: guards,
        }
        .boxed_unsync()
    })
}

struct Guarded<B> {
    inner: B,
    _guards: (Tracked, StreamGuard),
}

impl<B> http_body::Body for Guarded<B>
where
    B: http_body::Body<Data = Bytes, Error = BodyError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
