//! Why a call was not carried: one [`Reason`] for every refusal and
//! failure (the metric label, the log field, the `x-causeway-refusal`
//! header), where it came from ([`Origin`]), whether a retry may help, and
//! the answer the caller gets when the gateway answers itself: 403
//! refused, 404 no route, 431 head too large, 502 upstream or peer error,
//! 503 unavailable, 504 timeout. A gRPC caller gets the same as a gRPC
//! status (a trailers-only response), as gRPC clients expect.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

use crate::body::Body;
use crate::metrics::{Direction, Metrics};
use crate::proxy::headers::REFUSAL;
pub use crate::reason::{Origin, Reason};

/// Why a call was not carried, as the caller will see it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct CallError {
    pub reason: Reason,
    /// One line for the log and the answer's body.
    pub detail: String,
}

impl CallError {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    pub fn timeout(waited: Duration) -> Self {
        Self::new(Reason::Timeout, format!("no response within {waited:?}"))
    }

    pub fn origin(&self) -> Origin {
        self.reason.origin()
    }

    pub fn may_retry(&self) -> bool {
        self.reason.may_retry()
    }

    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }

    /// The answer the caller gets: the status, `x-causeway-refusal` with
    /// the reason, and a one-line text body. A gRPC caller (`grpc` is
    /// true) gets HTTP 200 with the gRPC status and message instead, in a
    /// trailers-only response, and the same `x-causeway-refusal`.
    pub fn response(&self, grpc: bool) -> Response<Body> {
        let text = format!(
            "{} {}: {}",
            self.status().as_u16(),
            self.reason.as_str(),
            self.detail
        );
        let mut r = if grpc {
            let mut r = Response::new(crate::body::empty());
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            h.insert(
                "grpc-status",
                HeaderValue::from(u16::from(self.reason.grpc_status())),
            );
            h.insert("grpc-message", grpc_message(&text));
            r
        } else {
            let mut r = Response::new(
                Full::new(Bytes::from(text + "\n"))
                    .map_err(|n| match n {})
                    .boxed_unsync(),
            );
            *r.status_mut() = self.status();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        };
        r.headers_mut()
            .insert(REFUSAL, HeaderValue::from_static(self.reason.as_str()));
        r
    }
}

/// Whether a request is a gRPC call (its answers must be gRPC statuses).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `grpc-message`: percent-encoded as gRPC asks (printable ASCII but `%`
/// as is).
fn grpc_message(text: &str) -> HeaderValue {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("refused"))
}

/// Counts a call the gateway answers itself, and makes the answer.
pub(crate) fn refuse(
    metrics: &Metrics,
    direction: Direction,
    service: &str,
    peer_td: &str,
    e: &CallError,
    grpc: bool,
    started: Instant,
) -> Response<Body> {
    metrics.request(
        direction,
        service,
        peer_td,
        e.reason.as_str(),
        started.elapsed(),
    );
    e.response(grpc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn grpc_callers_get_a_grpc_status() {
        let e = CallError::new(Reason::Timeout, "no response within 1s");
        let r = e.response(true);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "4");
        assert_eq!(r.headers()["x-causeway-refusal"], "timeout");
        let plain = e.response(false);
        assert_eq!(plain.status(), 504);
        assert!(plain.headers().get("grpc-status").is_none());
        assert_eq!(grpc_message("100% sure: \u{e9}"), "100%25 sure: %C3%A9");
    }
}
