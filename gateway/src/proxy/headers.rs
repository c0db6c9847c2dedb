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

/// Hop-by-hop fields (RFC 9110 section 7.6.1), and `expect`: each gateway
/// answers `100-continue` itself, as it reads the body.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::EXPECT,
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

/// Removes a response's hop-by-hop fields; a 101 keeps its `upgrade`.
pub fn strip_response<B>(resp: &mut http::Response<B>) {
    let upgrade = (resp.status() == http::StatusCode::SWITCHING_PROTOCOLS)
        .then(|| resp.headers().get(header::UPGRADE).cloned())
        .flatten();
    strip_hop_by_hop(resp.headers_mut());
    if let Some(u) = upgrade {
        set_upgrade(resp.headers_mut(), &u);
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
    const HEX: &[u8; 16] = b"0123456789abcdef";
    headers.remove(XFCC);
    let mut v = String::with_capacity(
        16 + by.as_str().len()
            + caller.id.as_str().len()
            + if caller.cert_sha256.is_some() { 70 } else { 0 },
    );
    v.push_str("By=");
    v.push_str(by.as_str());
    v.push(';');
    if let Some(sha) = &caller.cert_sha256 {
        v.push_str("Hash=");
        for b in sha {
            v.push(char::from(HEX[usize::from(b >> 4)]));
            v.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        v.push(';');
    }
    v.push_str("URI=");
    v.push_str(caller.id.as_str());
    // SPIFFE IDs and hex are visible ASCII: always a valid value.
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(v)) {
        headers.insert(XFCC, v);
    }
}

/// `bytes` random bytes as lower-case hex, for trace and request ids. A
/// per-thread generator (xoshiro256++) seeded once from the OS: ids must
/// be unique and unguessable enough to not collide, not secret, and a
/// system call per id would cost more than the rest of the header work.
fn random_hex(bytes: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes * 2);
    RNG.with(|rng| {
        let mut rng = rng.borrow_mut();
        let mut left = bytes;
        while left > 0 {
            let word = rng.next().to_le_bytes();
            for b in word.iter().take(left) {
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            left = left.saturating_sub(8);
        }
    });
    out
}

thread_local! {
    static RNG: std::cell::RefCell<Xoshiro> = std::cell::RefCell::new(Xoshiro::seeded());
}

/// xoshiro256++ (Blackman and Vigna).
struct Xoshiro([u64; 4]);

impl Xoshiro {
    fn seeded() -> Self {
        let mut seed = [0u8; 32];
        // Without an OS entropy source, the clock and the thread keep ids
        // apart well enough.
        if SystemRandom::new().fill(&mut seed).is_err() {
            let t = SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            seed[..16].copy_from_slice(&t.to_le_bytes());
            seed[16] = 0x5a;
        }
        let mut s = [0u64; 4];
        for (i, w) in s.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&seed[i * 8..i * 8 + 8]);
            *w = u64::from_le_bytes(b);
        }
        if s == [0; 4] {
            s[0] = 1;
        }
        Self(s)
    }

    fn next(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }
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

/// When a call must be over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The response's head must have arrived by then: the configured
    /// `request_timeout`, or the call's deadline when sooner.
    pub head: tokio::time::Instant,
    /// The whole call, body and trailers included, when the caller set a
    /// deadline (`grpc-timeout`) or a previous hop carried one.
    pub call: Option<tokio::time::Instant>,
}

impl Deadlines {
    /// The call's deadline as the stream header carries it.
    pub fn call_unix(&self) -> Option<SystemTime> {
        let now = tokio::time::Instant::now();
        self.call
            .map(|c| SystemTime::now() + c.saturating_duration_since(now))
    }
}

/// The call's deadlines: the caller's `grpc-timeout` and a deadline carried
/// from the previous hop bound the whole call; the configured `limit`
/// bounds the wait for the response's head.
pub fn deadlines(headers: &HeaderMap, limit: Duration, carried: Option<SystemTime>) -> Deadlines {
    let now = tokio::time::Instant::now();
    let mut call: Option<Duration> = grpc_timeout(headers);
    if let Some(c) = carried {
        let left = c
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        call = Some(call.map_or(left, |g| g.min(left)));
    }
    Deadlines {
        head: now + call.map_or(limit, |c| c.min(limit)),
        call: call.map(|c| now + c),
    }
}

/// Rewrites a `grpc-timeout` the caller sent to what is left of the call,
/// so that the upstream's own deadline matches the one the gateways hold.
pub fn refresh_grpc_timeout(headers: &mut HeaderMap, d: &Deadlines) {
    if let Some(call) = d.call
        && headers.contains_key(GRPC_TIMEOUT)
    {
        let left = call.saturating_duration_since(tokio::time::Instant::now());
        let ms = left.as_millis().clamp(1, 99_999_999);
        if let Ok(v) = HeaderValue::from_str(&format!("{ms}m")) {
            headers.insert(GRPC_TIMEOUT, v);
        }
    }
}

/// The `Upgrade` value of an HTTP/1.1 request that asks for one (its
/// `Connection` names `upgrade`), before the hop-by-hop fields go.
pub fn upgrade_of(version: http::Version, headers: &HeaderMap) -> Option<HeaderValue> {
    if version != http::Version::HTTP_11 {
        return None;
    }
    let asks = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

/// Puts an upgrade back on a request (or a 101 response) after the
/// hop-by-hop fields were removed.
pub fn set_upgrade(headers: &mut HeaderMap, upgrade: &HeaderValue) {
    headers.insert(header::UPGRADE, upgrade.clone());
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
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
