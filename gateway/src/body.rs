//! The bodies a gateway carries or makes, as one type.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;

use crate::drain::Tracked;
use crate::metrics::StreamGuard;

/// Every body the gateway carries or makes.
pub type Body = BoxBody<Bytes, hyper::Error>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn incoming(b: Incoming) -> Body {
    b.boxed()
}

/// Keeps the call counted (drain, active streams) until its response body
/// has been sent or dropped.
pub(crate) fn guard_response(
    resp: Response<Incoming>,
    guards: (Tracked, StreamGuard),
) -> Response<Body> {
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
