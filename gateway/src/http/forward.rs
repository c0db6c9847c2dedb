//! Handing an HTTP call to a local upstream, and the answers a gateway gives
//! itself when it cannot: 403 refused, 404 no route, 502 upstream error,
//! 503 unavailable, 504 timeout, each with a short reason.
//!
//! Connections to upstreams are pooled per endpoint (hyper-util's client),
//! HTTP/1.1 or h2c as the caller spoke. The endpoint is chosen per request,
//! round robin over the healthy ones; an endpoint that refuses a connection
//! is marked down, and a request without a body is retried on the next one.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use crate::config::Destination;
use crate::http::headers::REFUSAL;
use crate::upstream::RoundRobin;

/// Every body the gateway carries or makes.
pub type Body = BoxBody<Bytes, hyper::Error>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn incoming(b: Incoming) -> Body {
    b.boxed()
}

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

/// Pooled clients to local upstreams: one for HTTP/1.1, one for h2c.
#[derive(Debug, Clone)]
pub struct HttpClients {
    h1: Client<HttpConnector, Body>,
    h2: Client<HttpConnector, Body>,
}

impl HttpClients {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let builder = |h2: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(90));
            if h2 {
                b.http2_only(true);
            }
            b.build(connector.clone())
        };
        Self {
            h1: builder(false),
            h2: builder(true),
        }
    }

    /// Sends a request to an endpoint of `dest`, chosen round robin, and
    /// waits for the response head until `deadline`.
    pub async fn send(
        &self,
        endpoints: &RoundRobin,
        dest: &Destination,
        parts: Parts,
        body: Body,
        http2: bool,
        deadline: Instant,
    ) -> Result<Response<Incoming>, CallError> {
        let order = endpoints.in_turn();
        // Without a body a request can be sent again to another endpoint.
        let retryable = body.is_end_stream();
        let mut first = Some((parts, body));
        let mut template: Option<Parts> = None;
        let mut last = String::from("no endpoints");
        for addr in &order {
            let (parts, body) = match first.take() {
                Some((p, b)) => {
                    if retryable {
                        template = Some(copy_parts(&p));
                    }
                    (p, b)
                }
                None => match &template {
                    Some(t) => (copy_parts(t), empty()),
                    None => break,
                },
            };
            let req = to_endpoint(parts, body, *addr, http2)?;
            let client = if http2 { &self.h2 } else { &self.h1 };
            let started = Instant::now();
            match tokio::time::timeout_at(deadline, client.request(req)).await {
                Err(_) => return Err(CallError::Timeout(deadline - started)),
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) if e.is_connect() => {
                    endpoints.mark_down(*addr);
                    last = format!("{addr}: {}", chain(&e));
                    if !retryable {
                        break;
                    }
                }
                Ok(Err(e)) => return Err(CallError::Upstream(format!("{addr}: {}", chain(&e)))),
            }
        }
        Err(CallError::Unavailable {
            reason: "unavailable",
            detail: format!(
                "no endpoint of {}:{} answered (last: {last})",
                dest.service, dest.port
            ),
        })
    }
}

/// An error and its causes on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn copy_parts(p: &Parts) -> Parts {
    let mut b = Request::builder()
        .method(p.method.clone())
        .uri(p.uri.clone())
        .version(p.version);
    if let Some(h) = b.headers_mut() {
        *h = p.headers.clone();
    }
    // Built from parts that were already a valid request.
    match b.body(()) {
        Ok(r) => r.into_parts().0,
        Err(_) => Request::new(()).into_parts().0,
    }
}

/// `uri`'s path and query under `http://<authority>`.
pub fn retarget(uri: &Uri, authority: &str) -> Result<Uri, CallError> {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(pq)
        .build()
        .map_err(|e| CallError::Upstream(format!("request target: {e}")))
}

/// Points a request at one endpoint, in the version the upstream speaks.
fn to_endpoint(
    mut parts: Parts,
    body: Body,
    addr: SocketAddr,
    http2: bool,
) -> Result<Request<Body>, CallError> {
    let authority = parts.uri.authority().map(|a| a.to_string());
    parts.uri = retarget(&parts.uri, &addr.to_string())?;
    if http2 {
        parts.version = Version::HTTP_2;
        parts.headers.remove(header::HOST);
    } else {
        parts.version = Version::HTTP_11;
        // An HTTP/2 caller names the host in :authority; HTTP/1.1 needs Host.
        if !parts.headers.contains_key(header::HOST)
            && let Some(v) = authority.and_then(|a| HeaderValue::from_str(&a).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
    }
    Ok(Request::from_parts(parts, body))
}
