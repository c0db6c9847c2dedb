//! Why a call was not carried, and the answer the caller gets when the
//! gateway answers itself: 403 refused, 404 no route, 502 upstream error,
//! 503 unavailable, 504 timeout, each with a short reason.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use tokio::time::Instant;

use crate::body::Body;
use crate::metrics::{Direction, Metrics};
use crate::proxy::headers::REFUSAL;

/// Why an HTTP call was not carried, as the caller will see it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no route to {0}")]
    NoRoute(String),
    #[error("{detail}")]
    Refused {
        reason: &'static str,
        detail: String,
    },
    #[error("{detail}")]
    Unavailable {
        reason: &'static str,
        detail: String,
    },
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("upstream: {0}")]
    Upstream(String),
}

impl CallError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::Refused { .. } => StatusCode::FORBIDDEN,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// A short, closed-set label for metrics, logs and the refusal header.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoRoute(_) => "no_route",
            Self::Refused { reason, .. } | Self::Unavailable { reason, .. } => reason,
            Self::Timeout(_) => "timeout",
            Self::Upstream(_) => "upstream_error",
        }
    }

    /// The answer the caller gets: the status, `x-causeway-refusal` with
    /// the reason label, and a one-line text body.
    pub fn response(&self) -> Response<Body> {
        let body = format!("{} {}: {self}\n", self.status().as_u16(), self.reason());
        let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
        *r.status_mut() = self.status();
        let h = r.headers_mut();
        h.insert(REFUSAL, HeaderValue::from_static(self.reason()));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

impl From<crate::state::RouteError> for CallError {
    fn from(e: crate::state::RouteError) -> Self {
        match e {
            crate::state::RouteError::NoRoute(d) => {
                CallError::NoRoute(format!("{}:{}", d.service, d.port))
            }
            crate::state::RouteError::Denied { .. } => CallError::Refused {
                reason: "denied",
                detail: e.to_string(),
            },
        }
    }
}

/// Counts a call the gateway answers itself, and makes the answer.
pub(crate) fn refuse(
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
