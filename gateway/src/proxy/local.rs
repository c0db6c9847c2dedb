//! Handing an HTTP call to a local service's endpoints, for both
//! directions.
//!
//! Connections to upstreams are pooled per endpoint (hyper-util's client),
//! HTTP/1.1 or h2c as the service port declares, whatever the caller spoke.
//! The endpoint is chosen per request, round robin over the healthy ones; an
//! endpoint that refuses a connection is marked down, and a request without
//! a body is retried on the next one.

use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tokio::time::Instant;

use crate::body::{Body, empty, incoming, with_deadline};
use crate::config::{Destination, ServiceProtocol};
use crate::proxy::error::{CallError, Reason};
use crate::proxy::headers::{self, Deadlines};
use crate::state::endpoints::RoundRobin;
use crate::state::pools::HttpClients;

/// A call to a local service: the request to one of its endpoints (in the
/// version its port declares), and the response with its body bounded by
/// the call's deadline. For an HTTP/1.1 Upgrade (`upgrade` is the value
/// asked for) that the endpoint accepts (101), the endpoint's side of the
/// upgraded connection comes back with the response, for the caller to
/// join to its own side.
#[allow(
    clippy::too_many_arguments,
    reason = "one call's parts, each used once"
)]
pub async fn call(
    clients: &HttpClients,
    endpoints: &RoundRobin,
    dest: &Destination,
    protocol: ServiceProtocol,
    mut parts: Parts,
    body: Body,
    upgrade: Option<&HeaderValue>,
    deadlines: &Deadlines,
    grpc: bool,
) -> Result<(Response<Body>, Option<OnUpgrade>), CallError> {
    if let Some(value) = upgrade {
        if protocol.is_http2() {
            return Err(CallError::new(
                Reason::UpstreamError,
                format!(
                    "{}:{} speaks HTTP/2: an HTTP/1.1 Upgrade cannot reach it",
                    dest.service, dest.port
                ),
            ));
        }
        headers::set_upgrade(&mut parts.headers, value);
    }
    headers::refresh_grpc_timeout(&mut parts.headers, deadlines);
    // The call's deadline bounds the request body too: a request still
    // streaming when it passes fails, which cancels the upstream's call
    // whatever became of the response.
    let body = match deadlines.call {
        Some(at) if !body.is_end_stream() => with_deadline(body, at, false),
        _ => body,
    };
    let mut resp = send(
        clients,
        endpoints,
        dest,
        protocol,
        parts,
        body,
        deadlines.head,
    )
    .await?;
    headers::strip_response(&mut resp);
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS && upgrade.is_some() {
        let upgraded = hyper::upgrade::on(&mut resp);
        return Ok((resp.map(|_| empty()), Some(upgraded)));
    }
    let resp = match deadlines.call {
        Some(at) => resp.map(|b| with_deadline(incoming(b), at, grpc)),
        None => resp.map(incoming),
    };
    Ok((resp, None))
}

/// Sends a request to an endpoint of `dest`, chosen round robin, and
/// waits for the response head until `deadline`. A request without a body
/// goes to the next endpoint when one refuses the connection.
pub async fn send(
    clients: &HttpClients,
    endpoints: &RoundRobin,
    dest: &Destination,
    protocol: ServiceProtocol,
    parts: Parts,
    body: Body,
    deadline: Instant,
) -> Result<Response<Incoming>, CallError> {
    // Without a body a request can be sent again to another endpoint.
    let retryable = body.is_end_stream() && endpoints.len() > 1;
    let mut first = Some((parts, body));
    let mut template: Option<Parts> = None;
    let mut last = String::from("no endpoints");
    let http2 = protocol.is_http2();
    let client = if http2 { &clients.h2 } else { &clients.h1 };
    for endpoint in endpoints.in_turn() {
        let addr = &endpoint.addr;
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
        let req = to_endpoint(parts, body, &endpoint.authority, http2)?;
        let started = Instant::now();
        match tokio::time::timeout_at(deadline, client.request(req)).await {
            Err(_) => return Err(CallError::timeout(deadline - started)),
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(e)) if e.is_connect() => {
                endpoints.mark_down(*addr);
                last = format!("{addr}: {}", chain(&e));
                if !retryable {
                    break;
                }
            }
            Ok(Err(e)) => {
                return Err(CallError::new(
                    Reason::UpstreamError,
                    format!("{addr}: {}", chain(&e)),
                ));
            }
        }
    }
    Err(CallError::new(
        Reason::Unavailable,
        format!(
            "no endpoint of {}:{} answered (last: {last})",
            dest.service, dest.port
        ),
    ))
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

/// Points a request at one endpoint, in the version the upstream speaks.
fn to_endpoint(
    mut parts: Parts,
    body: Body,
    endpoint: &Authority,
    http2: bool,
) -> Result<Request<Body>, CallError> {
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    let authority = uri.authority.replace(endpoint.clone());
    uri.scheme = Some(Scheme::HTTP);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = Uri::from_parts(uri)
        .map_err(|e| CallError::new(Reason::BadRequest, format!("request target: {e}")))?;
    if http2 {
        parts.version = Version::HTTP_2;
        parts.headers.remove(header::HOST);
    } else {
        parts.version = Version::HTTP_11;
        // An HTTP/2 caller names the host in :authority; HTTP/1.1 needs Host.
        if !parts.headers.contains_key(header::HOST)
            && let Some(v) = authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, v);
        }
    }
    Ok(Request::from_parts(parts, body))
}
