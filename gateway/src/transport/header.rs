//! The stream header: the first bytes of every proxied stream between two
//! gateways, a trust boundary. Everything in it is checked here, once; a
//! header that fails any check is refused with a typed [`HeaderError`] and
//! only its stream is reset.
//!
//! ```text
//! magic    2 bytes   0xCA 0x57
//! version  1 byte    2 (1: accepted for TCP streams, whose layout it shares)
//! length   2 bytes   big-endian length of the encoded header, 1..=max
//! header   `length`  bytes of causeway.tunnel.v1.StreamHeader (protobuf)
//! ```
//!
//! An HTTP stream's header carries the request's head: method, path and
//! the end-to-end header fields; its body and trailers follow as frames
//! ([`super::frame`]).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_proto::tunnel::v1 as pb;
use causeway_trust::SpiffeId;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::reason::Reason;
use crate::service::ServiceName;
use crate::transport::frame::{from_fields, to_fields};

pub use crate::config::DEFAULT_MAX_HEADER_LEN;

/// The two bytes every stream starts with.
pub const MAGIC: [u8; 2] = [0xCA, 0x57];
/// The header format this gateway writes and reads.
pub const VERSION: u8 = 2;
/// The earlier format, whose TCP streams are laid out as today's.
pub const VERSION_TCP_ONLY: u8 = 1;
/// Bytes before the encoded header: magic, version, length.
pub const PREFIX_LEN: usize = 5;

pub(crate) const MAX_REQUEST_ID_LEN: usize = 128;
pub(crate) const MAX_TRACESTATE_LEN: usize = 512;

/// What the stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The bytes of one TCP connection.
    Tcp,
    /// One HTTP call: the request head is in the header ([`RequestHead`]),
    /// frames follow both ways.
    Http,
}

/// The head of the request an HTTP stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// Origin form: `/path?query`.
    pub path: PathAndQuery,
    /// End-to-end fields only: the sender leaves out hop-by-hop ones.
    pub headers: HeaderMap,
    /// No body follows.
    pub end_stream: bool,
    /// An HTTP/1.1 Upgrade: after a 101 the stream carries the upgraded
    /// bytes, unframed.
    pub upgrade: bool,
}

/// A checked stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// The destination service, as the exporting trust domain names it.
    pub service: ServiceName,
    pub port: u16,
    /// The original caller. The receiving gateway still has to check that it
    /// belongs to the sending gateway's own trust domain.
    pub caller: SpiffeId,
    /// W3C trace context (`traceparent` already checked for its format).
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// Absolute deadline of the call.
    pub deadline: Option<SystemTime>,
    pub request_id: String,
    pub protocol: Protocol,
    /// The request, for [`Protocol::Http`]; `None` for TCP.
    pub request: Option<RequestHead>,
}

/// Why a stream header was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("stream does not start with the causeway magic (got {got:02x?})")]
    BadMagic { got: [u8; 2] },
    #[error(
        "stream header version {got} is not supported (this gateway speaks {VERSION}, and {VERSION_TCP_ONLY} for TCP)"
    )]
    UnsupportedVersion { got: u8 },
    #[error("stream header is {len} bytes; at most {max} are accepted")]
    TooLarge { len: usize, max: usize },
    #[error("stream header is empty")]
    Empty,
    #[error("stream ended inside the header ({got} of {needed} bytes)")]
    Truncated { needed: usize, got: usize },
    #[error("stream header does not decode: {0}")]
    Undecodable(String),
    #[error("stream header field {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("reading the stream header: {0}")]
    Io(#[source] std::io::Error),
}

impl HeaderError {
    /// Its label, from the closed set.
    pub fn reason(&self) -> Reason {
        match self {
            Self::BadMagic { .. } => Reason::BadMagic,
            Self::UnsupportedVersion { .. } => Reason::UnsupportedVersion,
            Self::TooLarge { .. } => Reason::TooLarge,
            Self::Empty => Reason::Empty,
            Self::Truncated { .. } => Reason::Truncated,
            Self::Undecodable(_) => Reason::Undecodable,
            Self::Invalid { .. } => Reason::InvalidField,
            Self::Io(_) => Reason::HeaderIo,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> HeaderError {
    HeaderError::Invalid {
        field,
        reason: reason.into(),
    }
}

impl StreamHeader {
    /// The header as it goes on the wire: prefix, then the protobuf.
    pub fn encode(&self) -> Vec<u8> {
        let msg = self.to_proto();
        let len = msg.encoded_len();
        let mut out = Vec::with_capacity(PREFIX_LEN + len);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        // A header built from checked fields is far below 64 KiB.
        out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
        msg.encode(&mut out).unwrap_or_default();
        out
    }

    /// Decodes a header from the start of `buf`; returns it and how many
    /// bytes it took. The proxied bytes follow.
    pub fn decode(buf: &[u8], max_len: usize) -> Result<(Self, usize), HeaderError> {
        let prefix: &[u8; PREFIX_LEN] = buf
            .get(..PREFIX_LEN)
            .and_then(|p| p.try_into().ok())
            .ok_or(HeaderError::Truncated {
                needed: PREFIX_LEN,
                got: buf.len(),
            })?;
        let len = check_prefix(prefix, max_len)?;
        let body = buf
            .get(PREFIX_LEN..PREFIX_LEN + len)
            .ok_or(HeaderError::Truncated {
                needed: PREFIX_LEN + len,
                got: buf.len(),
            })?;
        let h = Self::from_body(body)?;
        check_version(prefix[2], &h)?;
        Ok((h, PREFIX_LEN + len))
    }

    /// Reads exactly one header from a stream, and nothing after it. The
    /// caller bounds the time it may take.
    pub async fn read<R: AsyncRead + Unpin>(
        r: &mut R,
        max_len: usize,
    ) -> Result<Self, HeaderError> {
        let mut prefix = [0u8; PREFIX_LEN];
        read_exact(r, &mut prefix, 0).await?;
        let len = check_prefix(&prefix, max_len)?;
        let mut body = vec![0u8; len];
        read_exact(r, &mut body, PREFIX_LEN).await?;
        let h = Self::from_body(&body)?;
        check_version(prefix[2], &h)?;
        Ok(h)
    }

    /// What a receiver compares with its `max_header_bytes`, from an
    /// encoded header. [`Self::encode`] writes a correct length only up to
    /// 65,535 (the prefix's length field): senders check this first.
    pub fn body_len(encoded: &[u8]) -> usize {
        encoded.len().saturating_sub(PREFIX_LEN)
    }

    fn from_body(body: &[u8]) -> Result<Self, HeaderError> {
        let msg =
            pb::StreamHeader::decode(body).map_err(|e| HeaderError::Undecodable(e.to_string()))?;
        Self::from_proto(msg)
    }

    /// Checks every field of a decoded header.
    pub fn from_proto(msg: pb::StreamHeader) -> Result<Self, HeaderError> {
        let service =
            ServiceName::new(&msg.service).map_err(|e| invalid("service", e.to_string()))?;
        let port = u16::try_from(msg.port)
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid("port", format!("{} is not a port (1..=65535)", msg.port)))?;
        let caller =
            SpiffeId::workload(&msg.caller_id).map_err(|e| invalid("caller_id", e.to_string()))?;
        let traceparent = non_empty(msg.traceparent)
            .map(|t| check_traceparent(&t).map(|()| t))
            .transpose()?;
        let tracestate = non_empty(msg.tracestate)
            .map(|t| check_text("tracestate", &t, MAX_TRACESTATE_LEN).map(|()| t))
            .transpose()?;
        check_text("request_id", &msg.request_id, MAX_REQUEST_ID_LEN)?;
        let deadline = match msg.deadline_unix_ms {
            0 => None,
            ms => Some(
                UNIX_EPOCH
                    .checked_add(Duration::from_millis(ms))
                    .ok_or_else(|| invalid("deadline_unix_ms", "out of range"))?,
            ),
        };
        let protocol = match pb::Protocol::try_from(msg.protocol) {
            Ok(pb::Protocol::Tcp) => Protocol::Tcp,
            Ok(pb::Protocol::Http) => Protocol::Http,
            Ok(pb::Protocol::Http2) => {
                return Err(invalid(
                    "protocol",
                    "PROTOCOL_HTTP2 (an HTTP/2 connection per stream) is version 1 only",
                ));
            }
            _ => {
                return Err(invalid(
                    "protocol",
                    format!("unknown protocol {}", msg.protocol),
                ));
            }
        };
        let request = match (protocol, msg.request) {
            (Protocol::Http, Some(r)) => Some(request_from_proto(r)?),
            (Protocol::Http, None) => {
                return Err(invalid(
                    "request",
                    "an HTTP stream without its request head",
                ));
            }
            (Protocol::Tcp, Some(_)) => {
                return Err(invalid("request", "a TCP stream with a request head"));
            }
            (Protocol::Tcp, None) => None,
        };
        Ok(Self {
            service,
            port,
            caller,
            traceparent,
            tracestate,
            deadline,
            request_id: msg.request_id,
            protocol,
            request,
        })
    }

    pub fn to_proto(&self) -> pb::StreamHeader {
        pb::StreamHeader {
            service: self.service.as_str().to_owned(),
            port: u32::from(self.port),
            caller_id: self.caller.as_str().to_owned(),
            traceparent: self.traceparent.clone().unwrap_or_default(),
            tracestate: self.tracestate.clone().unwrap_or_default(),
            deadline_unix_ms: self
                .deadline
                .and_then(|d| d.duration_since(UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            request_id: self.request_id.clone(),
            protocol: match self.protocol {
                Protocol::Tcp => pb::Protocol::Tcp,
                Protocol::Http => pb::Protocol::Http,
            } as i32,
            request: self.request.as_ref().map(|r| pb::HttpRequestHead {
                method: r.method.as_str().to_owned(),
                path: r.path.as_str().to_owned(),
                headers: to_fields(&r.headers),
                end_stream: r.end_stream,
                upgrade: r.upgrade,
            }),
        }
    }
}

fn request_from_proto(r: pb::HttpRequestHead) -> Result<RequestHead, HeaderError> {
    let method = Method::from_bytes(r.method.as_bytes())
        .map_err(|_| invalid("request.method", format!("{:?} is not a method", r.method)))?;
    if method == Method::CONNECT {
        return Err(invalid("request.method", "CONNECT is not carried"));
    }
    let origin_form = r.path.starts_with('/') || (r.path == "*" && method == Method::OPTIONS);
    if !origin_form {
        return Err(invalid(
            "request.path",
            format!("{:?} is not an origin-form target", r.path),
        ));
    }
    let path = PathAndQuery::try_from(r.path.as_str())
        .map_err(|e| invalid("request.path", format!("{:?}: {e}", r.path)))?;
    let headers = from_fields("request head", r.headers)
        .map_err(|e| invalid("request.headers", e.to_string()))?;
    Ok(RequestHead {
        method,
        path,
        headers,
        end_stream: r.end_stream,
        upgrade: r.upgrade,
    })
}

/// Version 1 is accepted for TCP streams only: their layout is today's.
fn check_version(version: u8, h: &StreamHeader) -> Result<(), HeaderError> {
    if version == VERSION || (version == VERSION_TCP_ONLY && h.protocol == Protocol::Tcp) {
        Ok(())
    } else {
        Err(HeaderError::UnsupportedVersion { got: version })
    }
}

fn check_prefix(prefix: &[u8; PREFIX_LEN], max_len: usize) -> Result<usize, HeaderError> {
    if prefix[..2] != MAGIC {
        return Err(HeaderError::BadMagic {
            got: [prefix[0], prefix[1]],
        });
    }
    if prefix[2] != VERSION && prefix[2] != VERSION_TCP_ONLY {
        return Err(HeaderError::UnsupportedVersion { got: prefix[2] });
    }
    let len = usize::from(u16::from_be_bytes([prefix[3], prefix[4]]));
    if len == 0 {
        return Err(HeaderError::Empty);
    }
    if len > max_len {
        return Err(HeaderError::TooLarge { len, max: max_len });
    }
    Ok(len)
}

async fn read_exact<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
    before: usize,
) -> Result<(), HeaderError> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]).await {
            Ok(0) => {
                return Err(HeaderError::Truncated {
                    needed: before + buf.len(),
                    got: before + got,
                });
            }
            Ok(n) => got += n,
            Err(e) => return Err(HeaderError::Io(e)),
        }
    }
    Ok(())
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// Printable ASCII only, so that it can go into logs as it is.
pub(crate) fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), HeaderError> {
    if s.len() > max {
        return Err(invalid(field, format!("{} bytes; at most {max}", s.len())));
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(invalid(
            field,
            format!("character {c:?} is not printable ASCII"),
        ));
    }
    Ok(())
}

/// W3C Trace Context `traceparent`: `vv-<32 hex>-<16 hex>-<2 hex>`, lower
/// case, IDs not all zero, version not `ff`.
pub(crate) fn check_traceparent(t: &str) -> Result<(), HeaderError> {
    let bad = || invalid("traceparent", format!("{t:?} is not a W3C traceparent"));
    let b = t.as_bytes();
    // vv-<32 hex>-<16 hex>-<2 hex>: 55 bytes, dashes at 2, 35 and 52.
    if b.len() != 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return Err(bad());
    }
    let hex =
        |r: std::ops::Range<usize>| b[r].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |r: std::ops::Range<usize>| b[r].iter().all(|c| *c == b'0');
    if !hex(0..2) || !hex(3..35) || !hex(36..52) || !hex(53..55) {
        return Err(bad());
    }
    if &b[0..2] == b"ff" || zeros(3..35) || zeros(36..52) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StreamHeader {
        StreamHeader {
            service: ServiceName::new("payments").unwrap(),
            port: 8080,
            caller: SpiffeId::new("spiffe://east.acme.example/ns/shop/sa/frontend").unwrap(),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            tracestate: None,
            deadline: Some(UNIX_EPOCH + Duration::from_millis(1_800_000_000_123)),
            request_id: "req-1".into(),
            protocol: Protocol::Http,
            request: Some(RequestHead {
                method: Method::POST,
                path: PathAndQuery::from_static("/pay?x=1"),
                headers: {
                    let mut h = HeaderMap::new();
                    h.insert("content-type", "application/json".parse().unwrap());
                    h.append("x-multi", "a".parse().unwrap());
                    h.append("x-multi", "b".parse().unwrap());
                    h
                },
                end_stream: false,
                upgrade: false,
            }),
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let mut wire = h.encode();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (back, used) = StreamHeader::decode(&wire, DEFAULT_MAX_HEADER_LEN).unwrap();
        assert_eq!(back, h);
        assert_eq!(&wire[used..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn prefix_refusals() {
        let wire = sample().encode();
        let max = DEFAULT_MAX_HEADER_LEN;
        let mut bad = wire.clone();
        bad[0] = b'G';
        assert!(matches!(
            StreamHeader::decode(&bad, max),
            Err(HeaderError::BadMagic { .. })
        ));
        let mut bad = wire.clone();
        bad[2] = 9;
        assert!(matches!(
            StreamHeader::decode(&bad, max),
            Err(HeaderError::UnsupportedVersion { got: 9 })
        ));
        // Version 1 carried TCP as today; its HTTP was another layout.
        let mut v1 = wire.clone();
        v1[2] = 1;
        assert!(matches!(
            StreamHeader::decode(&v1, max),
            Err(HeaderError::UnsupportedVersion { got: 1 })
        ));
        let mut tcp = sample();
        tcp.protocol = Protocol::Tcp;
        tcp.request = None;
        let mut v1 = tcp.encode();
        v1[2] = 1;
        assert_eq!(StreamHeader::decode(&v1, max).unwrap().0, tcp);
        assert!(matches!(
            StreamHeader::decode(&wire, 10),
            Err(HeaderError::TooLarge { .. })
        ));
        assert!(matches!(
            StreamHeader::decode(&wire[..wire.len() - 1], max),
            Err(HeaderError::Truncated { .. })
        ));
        assert!(matches!(
            StreamHeader::decode(&[0xCA, 0x57, 1, 0, 0], max),
            Err(HeaderError::Empty)
        ));
    }

    #[test]
    fn field_refusals_name_the_field() {
        type Mutation = Box<dyn Fn(&mut pb::StreamHeader)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("service", Box::new(|m| m.service = "Bad Name".into())),
            ("port", Box::new(|m| m.port = 0)),
            ("port", Box::new(|m| m.port = 70000)),
            (
                "caller_id",
                Box::new(|m| m.caller_id = "spiffe://east".into()),
            ),
            (
                "caller_id",
                Box::new(|m| m.caller_id = "https://x/y".into()),
            ),
            ("traceparent", Box::new(|m| m.traceparent = "00-xyz".into())),
            (
                "traceparent",
                Box::new(|m| {
                    m.traceparent = "00-00000000000000000000000000000000-00f067aa0ba902b7-01".into()
                }),
            ),
            ("request_id", Box::new(|m| m.request_id = "a\nb".into())),
            ("request_id", Box::new(|m| m.request_id = "x".repeat(129))),
            ("protocol", Box::new(|m| m.protocol = 9)),
            ("protocol", Box::new(|m| m.protocol = 3)),
            ("request", Box::new(|m| m.request = None)),
            (
                "request.method",
                Box::new(|m| m.request.as_mut().unwrap().method = "G ET".into()),
            ),
            (
                "request.method",
                Box::new(|m| m.request.as_mut().unwrap().method = "CONNECT".into()),
            ),
            (
                "request.path",
                Box::new(|m| m.request.as_mut().unwrap().path = "http://x/".into()),
            ),
            (
                "request.headers",
                Box::new(|m| {
                    m.request.as_mut().unwrap().headers.push(pb::HeaderField {
                        name: "bad name".into(),
                        value: bytes::Bytes::from_static(b"x"),
                    })
                }),
            ),
            (
                "request.headers",
                Box::new(|m| {
                    m.request.as_mut().unwrap().headers.push(pb::HeaderField {
                        name: "x-ok".into(),
                        value: bytes::Bytes::from_static(b"a\nb"),
                    })
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut m = sample().to_proto();
            mutate(&mut m);
            match StreamHeader::from_proto(m) {
                Err(HeaderError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn read_takes_the_header_and_leaves_the_payload() {
        let h = sample();
        let mut wire = h.encode();
        wire.extend_from_slice(b"payload");
        let mut r = &wire[..];
        let back = StreamHeader::read(&mut r, DEFAULT_MAX_HEADER_LEN)
            .await
            .unwrap();
        assert_eq!(back, h);
        assert_eq!(r, b"payload");
        let mut short = &wire[..3];
        assert!(matches!(
            StreamHeader::read(&mut short, DEFAULT_MAX_HEADER_LEN).await,
            Err(HeaderError::Truncated { needed: 5, got: 3 })
        ));
    }
}
