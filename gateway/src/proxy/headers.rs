//! Headers a gateway owns on an HTTP call: the hop-by-hop ones (removed at
//! every hop), `x-forwarded-client-cert` and `x-causeway-principal`
//! (removed from what callers send, set only by the gateway that hands the
//! call to the upstream), the W3C
//! `traceparent` (kept when valid, started otherwise), the request id, and
//! the call's deadline.

use std::time::{Duration, SystemTime};

use causeway_trust::SpiffeId;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use ring::rand::{SecureRandom, SystemRandom};

use crate::config::PrincipalName;
use crate::transport::header::{MAX_REQUEST_ID_LEN, check_text, check_traceparent};

pub const XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The local principal the identity map gave a foreign caller; set only by
/// the gateway that hands an inbound call to the upstream, removed from
/// everything else.
pub const PRINCIPAL: HeaderName = HeaderName::from_static("x-causeway-principal");
/// On a response the gateway made itself: why the call was not carried.
pub const REFUSAL: HeaderName = HeaderName::from_static("x-causeway-refusal");

const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes the hop-by-hop headers, including those named by `Connection`.
/// `te: trailers` is kept: gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(n);
    }
    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("trailers")));
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Removes the identity headers only a gateway may set: XFCC and
/// `x-causeway-principal`, every instance.
pub fn strip_identity(headers: &mut HeaderMap) {
    headers.remove(XFCC);
    headers.remove(PRINCIPAL);
}

/// Sets `x-causeway-principal` to the caller's mapped local principal.
pub fn set_principal(headers: &mut HeaderMap, principal: &PrincipalName) {
    // Principal names are a-z 0-9 . - _: always a valid value.
    if let Ok(v) = HeaderValue::from_str(principal.as_str()) {
        headers.insert(PRINCIPAL, v);
    }
}

/// What the gateway knows of the caller, for XFCC.
#[derive(Debug, Clone)]
pub struct CallerCert {
    pub id: SpiffeId,
    /// SHA-256 of the caller's leaf certificate, when it presented one to
    /// this gateway.
    pub cert_sha256: Option<[u8; 32]>,
}

impl CallerCert {
    pub fn assigned(id: SpiffeId) -> Self {
        Self {
            id,
            cert_sha256: None,
        }
    }

    /// For a caller that presented `leaf` in an mTLS handshake.
    pub fn presented(id: SpiffeId, leaf: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, leaf);
        let mut sha = [0u8; 32];
        sha.copy_from_slice(digest.as_ref());
        Self {
            id,
            cert_sha256: Some(sha),
        }
    }
}

/// Replaces any `x-forwarded-client-cert` with one element in Envoy's
/// format: `By=<this gateway's ID>;Hash=<hex SHA-256 of the caller's
/// certificate>;URI=<caller's SPIFFE ID>` (Hash only when the caller
/// presented its certificate to this gateway).
pub fn set_xfcc(headers: &mut HeaderMap, by: &SpiffeId, caller: &CallerCert) {
    headers.remove(XFCC);
    let mut v = format!("By={by};");
    if let Some(sha) = &caller.cert_sha256 {
        v.push_str("Hash=");
        for b in sha {
            v.push_str(&format!("{b:02x}"));
        }
        v.push(';');
    }
    v.push_str("URI=");
    v.push_str(caller.id.as_str());
    // SPIFFE IDs and hex are visible ASCII: always a valid value.
    if let Ok(v) = HeaderValue::from_str(&v) {
        headers.insert(XFCC, v);
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SystemRandom fails only without an OS entropy source; a fixed
    // non-zero id is still a valid id then.
    if SystemRandom::new().fill(&mut buf).is_err() {
        buf.iter_mut().for_each(|b| *b = 0x5a);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Trace context of a call: the caller's `traceparent` when it is valid
/// W3C, a new one otherwise (its `tracestate` goes with it).
pub fn ensure_trace(headers: &mut HeaderMap) -> (String, Option<String>) {
    let valid = headers
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .filter(|t| check_traceparent(t).is_ok())
        .map(str::to_owned);
    match valid {
        Some(t) => {
            let state = headers
                .get(TRACESTATE)
                .and_then(|v| v.to_str().ok())
                .filter(|s| check_text("tracestate", s, 512).is_ok())
                .map(str::to_owned);
            if state.is_none() {
                headers.remove(TRACESTATE);
            }
            (t, state)
        }
        None => {
            let t = format!("00-{}-{}-01", random_hex(16), random_hex(8));
            headers.remove(TRACESTATE);
            if let Ok(v) = HeaderValue::from_str(&t) {
                headers.insert(TRACEPARENT, v);
            }
            (t, None)
        }
    }
}

/// The caller's `x-request-id` when it is printable and short, a new one
/// otherwise.
pub fn ensure_request_id(headers: &mut HeaderMap) -> String {
    if let Some(id) = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && check_text("request_id", s, MAX_REQUEST_ID_LEN).is_ok())
    {
        return id.to_owned();
    }
    let id = random_hex(16);
    if let Ok(v) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, v);
    }
    id
}

/// gRPC's `grpc-timeout`: up to 8 digits and a unit (H M S m u n).
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The call's deadline: the sooner of the configured limit, the caller's
/// `grpc-timeout` and a deadline carried from the previous hop.
pub fn deadline(
    headers: &HeaderMap,
    limit: Duration,
    carried: Option<SystemTime>,
) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    let mut wait = limit;
    if let Some(g) = grpc_timeout(headers) {
        wait = wait.min(g);
    }
    if let Some(c) = carried {
        wait = wait.min(
            c.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        );
    }
    now + wait
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn hop_by_hop_goes_and_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none() && h.get(header::CONNECTION).is_none());
        assert!(h.get("keep-alive").is_none());
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert_eq!(h.get("x-app").unwrap(), "kept");
    }

    #[test]
    fn xfcc_replaces_what_the_caller_sent() {
        let mut h = HeaderMap::new();
        h.append(XFCC, HeaderValue::from_static("URI=spiffe://evil/admin"));
        h.append(XFCC, HeaderValue::from_static("URI=spiffe://evil/root"));
        let by = SpiffeId::workload("spiffe://east.example/gateway/east-1").unwrap();
        let caller =
            CallerCert::assigned(SpiffeId::workload("spiffe://east.example/sa/web").unwrap());
        set_xfcc(&mut h, &by, &caller);
        let all: Vec<_> = h.get_all(XFCC).iter().collect();
        assert_eq!(
            all,
            ["By=spiffe://east.example/gateway/east-1;URI=spiffe://east.example/sa/web"]
        );
        let with_cert = CallerCert::presented(caller.id.clone(), b"der");
        set_xfcc(&mut h, &by, &with_cert);
        let v = h.get(XFCC).unwrap().to_str().unwrap();
        assert!(v.contains(";Hash=") && v.len() > 64 + 60, "{v}");
    }

    #[test]
    fn trace_is_kept_when_valid_and_started_otherwise() {
        let mut h = HeaderMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert(TRACEPARENT, HeaderValue::from_static(tp));
        assert_eq!(ensure_trace(&mut h).0, tp);
        h.insert(TRACEPARENT, HeaderValue::from_static("00-zz-yy-01"));
        let (started, _) = ensure_trace(&mut h);
        assert_ne!(started, tp);
        assert!(check_traceparent(&started).is_ok());
        assert_eq!(h.get(TRACEPARENT).unwrap(), started.as_str());
    }

    #[test]
    fn grpc_timeouts_parse() {
        let mut h = HeaderMap::new();
        for (v, d) in [
            ("5S", Some(Duration::from_secs(5))),
            ("100m", Some(Duration::from_millis(100))),
            ("1H", Some(Duration::from_secs(3600))),
            ("S", None),
            ("123456789S", None),
            ("5x", None),
        ] {
            h.insert(GRPC_TIMEOUT, HeaderValue::from_static(v));
            assert_eq!(grpc_timeout(&h), d, "{v}");
        }
    }
}
