//! The one call every variant carries, and the checks on both ends.
//!
//! Request: `GET https://echo.west:8080/api/v1/items/42?verbose=1` with 8
//! headers (accept, accept-encoding, user-agent, traceparent, tracestate,
//! x-request-id unique per call, x-causeway-caller with the caller's
//! SPIFFE ID, x-tenant), no body. Response: 200 with 5 headers
//! (content-type, content-length, cache-control, server, the request id
//! echoed) and a 64-byte body. The client checks the status, the echoed
//! request id and the body's length on every call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use http::header::{
    ACCEPT, ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, SERVER, USER_AGENT,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};

pub(crate) const SERVICE: &str = "echo";
pub(crate) const PORT: u16 = 8080;
pub(crate) const AUTHORITY: &str = "echo.west:8080";
pub(crate) const PATH: &str = "/api/v1/items/42?verbose=1";
pub(crate) const URI: &str = "https://echo.west:8080/api/v1/items/42?verbose=1";
pub(crate) const CALLER_ID: &str = "spiffe://east.example/ns/shop/sa/checkout";
pub(crate) const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
pub(crate) const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";
/// How far ahead of now each call's deadline is.
pub(crate) const DEADLINE: Duration = Duration::from_secs(15);

pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) static X_CALLER: HeaderName = HeaderName::from_static("x-causeway-caller");
pub(crate) static TRACEPARENT_H: HeaderName = HeaderName::from_static("traceparent");
pub(crate) static TRACESTATE_H: HeaderName = HeaderName::from_static("tracestate");
static X_TENANT: HeaderName = HeaderName::from_static("x-tenant");

/// The plain headers: the ones the `native` head carries in its header
/// list (the others have fields of their own there).
pub(crate) const PLAIN_HEADERS: [(&str, &str); 5] = [
    ("accept", "application/json"),
    ("accept-encoding", "gzip, deflate, br"),
    ("user-agent", "checkout/2.14.1 (causeway-bench)"),
    ("tracestate", TRACESTATE),
    ("x-tenant", "acme-retail"),
];

pub(crate) const BODY_LEN: usize = 64;
pub(crate) static BODY: Bytes = Bytes::from_static(
    b"{\"id\":42,\"name\":\"widget\",\"price\":1999,\"stock\":17,\"tags\":[\"ab\"]}\n",
);

/// This call's request id: unique per caller and sequence number.
pub(crate) fn request_id(caller: usize, seq: u64) -> String {
    format!(
        "{caller:08x}-{:04x}-4000-8000-{seq:012x}",
        (seq >> 48) & 0xffff
    )
}

/// The deadline of a call started now, in ms since the Unix epoch.
pub(crate) fn deadline_unix_ms() -> u64 {
    SystemTime::now()
        .checked_add(DEADLINE)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The request as the local caller sent it (to `h2-per-stream`,
/// `native-hyper`, and in parts to `h3`).
pub(crate) fn request<B>(request_id: &str, body: B) -> anyhow::Result<Request<B>> {
    let mut req = Request::new(body);
    *req.method_mut() = Method::GET;
    *req.uri_mut() = http::Uri::from_static(URI);
    let h = req.headers_mut();
    h.reserve(8);
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(
        ACCEPT_ENCODING,
        HeaderValue::from_static("gzip, deflate, br"),
    );
    h.insert(
        USER_AGENT,
        HeaderValue::from_static("checkout/2.14.1 (causeway-bench)"),
    );
    h.insert(TRACEPARENT_H.clone(), HeaderValue::from_static(TRACEPARENT));
    h.insert(TRACESTATE_H.clone(), HeaderValue::from_static(TRACESTATE));
    h.insert(
        X_REQUEST_ID.clone(),
        HeaderValue::from_str(request_id).context("request id")?,
    );
    h.insert(X_CALLER.clone(), HeaderValue::from_static(CALLER_ID));
    h.insert(X_TENANT.clone(), HeaderValue::from_static("acme-retail"));
    Ok(req)
}

/// The response head (status and 5 headers) for a request with this id.
pub(crate) fn response_head(request_id: Option<HeaderValue>) -> anyhow::Result<Response<()>> {
    let request_id = request_id.ok_or_else(|| anyhow!("the request has no x-request-id"))?;
    let mut resp = Response::new(());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.reserve(5);
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(BODY_LEN));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(SERVER, HeaderValue::from_static("causeway-bench"));
    h.insert(X_REQUEST_ID.clone(), request_id);
    Ok(resp)
}

/// The upstream's answer in the `http` types (`h2-per-stream`,
/// `native-hyper`): drains the request body, answers the 64 bytes.
pub(crate) async fn handle<B>(req: Request<B>) -> anyhow::Result<Response<Full<Bytes>>>
where
    B: Body + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (parts, mut body) = req.into_parts();
    while let Some(frame) = body.frame().await {
        frame.context("request body")?;
    }
    let head = response_head(parts.headers.get(&X_REQUEST_ID).cloned())?;
    Ok(head.map(|()| Full::new(BODY.clone())))
}

/// The client's check of a response head.
pub(crate) fn check_head(
    status: StatusCode,
    headers: &HeaderMap,
    request_id: &str,
) -> anyhow::Result<()> {
    if status != StatusCode::OK {
        bail!("status {status}");
    }
    match headers.get(&X_REQUEST_ID) {
        Some(v) if v.as_bytes() == request_id.as_bytes() => Ok(()),
        other => bail!("x-request-id {other:?}, sent {request_id}"),
    }
}

/// The client's check of a whole response in the `http` types: head, then
/// the body read frame by frame to its end.
pub(crate) async fn check_response<B>(resp: Response<B>, request_id: &str) -> anyhow::Result<()>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    check_head(resp.status(), resp.headers(), request_id)?;
    let mut body = resp.into_body();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.context("response body")?.into_data() {
            len += data.len();
        }
    }
    check_body_len(len)
}

pub(crate) fn check_body_len(len: usize) -> anyhow::Result<()> {
    if len == BODY_LEN {
        Ok(())
    } else {
        bail!("body of {len} bytes, expected {BODY_LEN}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_as_long_as_content_length_says() {
        assert_eq!(BODY.len(), BODY_LEN);
    }
}
