//! The frames of an HTTP stream between gateways, after the stream header
//! (docs/wire-format.md): the request's body and trailers one way; the
//! response's head, body and trailers the other. The end of each side is
//! the QUIC stream's FIN.
//!
//! ```text
//! type     1 byte        0 DATA, 1 TRAILERS, 2 RESPONSE_HEAD
//! length   QUIC varint   bytes of payload (RFC 9000 section 16)
//! payload  `length`      DATA: body bytes; TRAILERS: causeway.tunnel.v1.Trailers;
//!                        RESPONSE_HEAD: causeway.tunnel.v1.HttpResponseHead
//! ```
//!
//! A DATA frame's payload is handed on as it arrives, whatever its length;
//! a TRAILERS or RESPONSE_HEAD frame is read whole, and refused over the
//! receiver's header size limit. Everything a peer sends is checked here
//! once: a frame of an unknown type, a frame out of order or a head that
//! does not decode is a [`FrameError`], and only that stream is reset.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use causeway_proto::tunnel::v1 as pb;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use prost::Message;

use crate::reason::Reason;

/// Frame types.
pub const DATA: u8 = 0;
pub const TRAILERS: u8 = 1;
pub const RESPONSE_HEAD: u8 = 2;

/// Bytes asked of the stream per read.
const READ_SIZE: usize = 16 * 1024;

/// Why the frames of a stream were refused.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame type {0} is not known")]
    UnknownType(u8),
    #[error("a {what} frame where it cannot be")]
    Unexpected { what: &'static str },
    #[error("a {what} frame of {len} bytes; at most {max} are accepted")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: usize,
    },
    #[error("the stream ended inside a frame")]
    Truncated,
    #[error("the stream ended before the response head")]
    NoHead,
    #[error("{what} does not decode: {detail}")]
    Undecodable { what: &'static str, detail: String },
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },
    #[error(transparent)]
    Read(#[from] quinn::ReadError),
    #[error("reading the stream: {0}")]
    Io(String),
}

impl FrameError {
    /// Its label, from the closed set.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Read(_) | Self::Io(_) => Reason::StreamReset,
            _ => Reason::InvalidFrame,
        }
    }
}

/// A QUIC variable-length integer (RFC 9000 section 16).
pub fn put_varint(buf: &mut BytesMut, v: u64) {
    if v < 1 << 6 {
        buf.put_u8(v as u8);
    } else if v < 1 << 14 {
        buf.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        buf.put_u32(0x8000_0000 | v as u32);
    } else {
        buf.put_u64(0xc000_0000_0000_0000 | (v & 0x3fff_ffff_ffff_ffff));
    }
}

/// A varint from the start of `buf`: its value and length, or `None` when
/// `buf` holds only part of it.
fn get_varint(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let bytes = buf.get(..len)?;
    let mut v = u64::from(first & 0x3f);
    for b in &bytes[1..] {
        v = (v << 8) | u64::from(*b);
    }
    Some((v, len))
}

/// The type and length of a frame, ready to go before its payload.
pub fn frame_header(kind: u8, len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(9);
    b.put_u8(kind);
    put_varint(&mut b, len as u64);
    b.freeze()
}

/// A whole frame whose payload is a protobuf message.
pub fn message_frame(kind: u8, msg: &impl Message) -> Bytes {
    let len = msg.encoded_len();
    let mut b = BytesMut::with_capacity(9 + len);
    b.put_u8(kind);
    put_varint(&mut b, len as u64);
    // A BytesMut grows as needed: encoding cannot run out of room.
    let _ = msg.encode(&mut b);
    b.freeze()
}

/// Header fields as the wire carries them.
pub fn to_fields(headers: &HeaderMap) -> Vec<pb::HeaderField> {
    headers
        .iter()
        .map(|(n, v)| pb::HeaderField {
            name: n.as_str().to_owned(),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect()
}

/// Header fields from the wire, each name and value checked.
pub fn from_fields(
    what: &'static str,
    fields: Vec<pb::HeaderField>,
) -> Result<HeaderMap, FrameError> {
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| FrameError::Invalid {
            what,
            detail: format!("{:?} is not a header name", f.name),
        })?;
        let value = HeaderValue::from_maybe_shared(f.value).map_err(|_| FrameError::Invalid {
            what,
            detail: format!("the value of {name} is not a header value"),
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// The response head frame of a response.
pub fn response_head(status: StatusCode, headers: &HeaderMap, end_stream: bool) -> Bytes {
    message_frame(
        RESPONSE_HEAD,
        &pb::HttpResponseHead {
            status: u32::from(status.as_u16()),
            headers: to_fields(headers),
            end_stream,
        },
    )
}

/// A trailers frame.
pub fn trailers(fields: &HeaderMap) -> Bytes {
    message_frame(
        TRAILERS,
        &pb::Trailers {
            fields: to_fields(fields),
        },
    )
}

/// A checked response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub end_stream: bool,
}

/// What comes next on a stream's body side.
#[derive(Debug)]
pub enum Next {
    Data(Bytes),
    Trailers(HeaderMap),
    /// FIN: the side is complete.
    End,
}

/// Reads frames off a QUIC receive stream. Poll-based, so that it can sit
/// under an `http_body::Body`.
#[derive(Debug)]
pub struct FrameReader {
    recv: quinn::RecvStream,
    buf: BytesMut,
    /// Payload bytes of the current DATA frame not handed on yet.
    data_left: u64,
    /// Largest TRAILERS or RESPONSE_HEAD frame accepted.
    max_block: usize,
    /// A block frame whose header is read and whose payload is not all in.
    block: Option<(u8, u64)>,
    /// The trailers were read: nothing may follow.
    trailers_seen: bool,
    fin: bool,
}

impl FrameReader {
    pub fn new(recv: quinn::RecvStream, max_block: usize) -> Self {
        Self {
            recv,
            buf: BytesMut::new(),
            data_left: 0,
            block: None,
            max_block,
            trailers_seen: false,
            fin: false,
        }
    }

    /// The stream underneath, with the bytes read ahead of the frames
    /// (after a 101 response: the first upgraded bytes).
    pub fn into_parts(self) -> (quinn::RecvStream, Bytes) {
        (self.recv, self.buf.freeze())
    }

    pub fn stream(&mut self) -> &mut quinn::RecvStream {
        &mut self.recv
    }

    /// Reads more bytes into the buffer; `Ok(false)` at FIN.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, FrameError>> {
        if self.fin {
            return Poll::Ready(Ok(false));
        }
        self.buf.reserve(READ_SIZE);
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.recv),
            cx,
            &mut self.buf
        ))
        .map_err(read_error)?;
        if n == 0 {
            self.fin = true;
        }
        Poll::Ready(Ok(n > 0))
    }

    /// The next frame's type and payload length, once its header is in.
    fn poll_frame_header(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<(u8, u64)>, FrameError>> {
        if let Some(h) = self.block.take() {
            return Poll::Ready(Ok(Some(h)));
        }
        loop {
            if let Some(&kind) = self.buf.first()
                && let Some((len, n)) = get_varint(&self.buf[1..])
            {
                self.buf.advance(1 + n);
                return Poll::Ready(Ok(Some((kind, len))));
            }
            if !ready!(self.poll_fill(cx))? {
                return Poll::Ready(if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                });
            }
        }
    }

    /// A whole block frame's payload (`len` bytes).
    fn poll_block(
        &mut self,
        cx: &mut Context<'_>,
        what: &'static str,
        len: u64,
    ) -> Poll<Result<Bytes, FrameError>> {
        let n = usize::try_from(len)
            .ok()
            .filter(|n| *n <= self.max_block)
            .ok_or(FrameError::TooLarge {
                what,
                len,
                max: self.max_block,
            })?;
        while self.buf.len() < n {
            if !ready!(self.poll_fill(cx))? {
                return Poll::Ready(Err(FrameError::Truncated));
            }
        }
        Poll::Ready(Ok(self.buf.split_to(n).freeze()))
    }

    /// The response head: the first frame of the response side.
    pub fn poll_response_head(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<ResponseHead, FrameError>> {
        let (kind, len) = match ready!(self.poll_frame_header(cx))? {
            Some(h) => h,
            None => return Poll::Ready(Err(FrameError::NoHead)),
        };
        if kind != RESPONSE_HEAD {
            return Poll::Ready(Err(if kind > RESPONSE_HEAD {
                FrameError::UnknownType(kind)
            } else {
                FrameError::Unexpected {
                    what: kind_name(kind),
                }
            }));
        }
        let block = match self.poll_block(cx, "response head", len) {
            Poll::Ready(r) => r?,
            Poll::Pending => {
                self.block = Some((kind, len));
                return Poll::Pending;
            }
        };
        let msg = pb::HttpResponseHead::decode(block).map_err(|e| FrameError::Undecodable {
            what: "response head",
            detail: e.to_string(),
        })?;
        let status = u16::try_from(msg.status)
            .ok()
            .and_then(|s| StatusCode::from_u16(s).ok())
            .filter(|s| !s.is_informational() || *s == StatusCode::SWITCHING_PROTOCOLS)
            .ok_or_else(|| FrameError::Invalid {
                what: "response head",
                detail: format!("{} is not a final status", msg.status),
            })?;
        Poll::Ready(Ok(ResponseHead {
            status,
            headers: from_fields("response head", msg.headers)?,
            end_stream: msg.end_stream,
        }))
    }

    /// The next piece of the body side: data as it arrives, the trailers,
    /// or the end.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Next, FrameError>> {
        loop {
            if self.data_left > 0 {
                if self.buf.is_empty() && !ready!(self.poll_fill(cx))? {
                    return Poll::Ready(Err(FrameError::Truncated));
                }
                let take = self
                    .buf
                    .len()
                    .min(usize::try_from(self.data_left).unwrap_or(usize::MAX));
                self.data_left -= take as u64;
                return Poll::Ready(Ok(Next::Data(self.buf.split_to(take).freeze())));
            }
            let Some((kind, len)) = ready!(self.poll_frame_header(cx))? else {
                return Poll::Ready(Ok(Next::End));
            };
            if self.trailers_seen {
                return Poll::Ready(Err(FrameError::Unexpected {
                    what: kind_name(kind),
                }));
            }
            match kind {
                DATA => self.data_left = len,
                TRAILERS => {
                    let block = match self.poll_block(cx, "trailers", len) {
                        Poll::Ready(r) => r?,
                        Poll::Pending => {
                            self.block = Some((kind, len));
                            return Poll::Pending;
                        }
                    };
                    let msg = pb::Trailers::decode(block).map_err(|e| FrameError::Undecodable {
                        what: "trailers",
                        detail: e.to_string(),
                    })?;
                    self.trailers_seen = true;
                    return Poll::Ready(Ok(Next::Trailers(from_fields("trailers", msg.fields)?)));
                }
                RESPONSE_HEAD => {
                    return Poll::Ready(Err(FrameError::Unexpected {
                        what: "response head",
                    }));
                }
                other => return Poll::Ready(Err(FrameError::UnknownType(other))),
            }
        }
    }

    /// Awaits the response head.
    pub async fn response_head(&mut self) -> Result<ResponseHead, FrameError> {
        std::future::poll_fn(|cx| self.poll_response_head(cx)).await
    }

    /// Awaits the next piece of the body side.
    pub async fn next(&mut self) -> Result<Next, FrameError> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

fn kind_name(kind: u8) -> &'static str {
    match kind {
        DATA => "data",
        TRAILERS => "trailers",
        RESPONSE_HEAD => "response head",
        _ => "unknown",
    }
}

/// The QUIC error under an I/O error of the stream, or the I/O error.
fn read_error(e: std::io::Error) -> FrameError {
    match e
        .get_ref()
        .and_then(|i| i.downcast_ref::<quinn::ReadError>())
    {
        Some(q) => FrameError::Read(q.clone()),
        None => FrameError::Io(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for v in [
            0u64,
            63,
            64,
            16_383,
            16_384,
            (1 << 30) - 1,
            1 << 30,
            (1 << 62) - 1,
        ] {
            let mut b = BytesMut::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&b), Some((v, b.len())), "{v}");
            assert_eq!(get_varint(&b[..b.len() - 1]), None, "{v} cut short");
        }
    }
}
