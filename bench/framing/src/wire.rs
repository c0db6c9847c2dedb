//! The wire formats of the candidates that are not HTTP/2 or HTTP/3: the
//! `native` framing and, for `h2-per-stream`, today's stream header.
//!
//! `native`, request direction:
//!
//! ```text
//! magic    2 bytes   0xCA 0x48
//! version  1 byte    1
//! length   2 bytes   big-endian length of the encoded head, 1..=MAX_HEAD_LEN
//! head     `length`  bytes of RequestHead (protobuf)
//! frames   until the stream's FIN: type u8, length QUIC varint, payload
//!          0 DATA      body bytes
//!          1 TRAILERS  protobuf Trailers; the last frame if present
//! ```
//!
//! Response direction: frames only, the first a `2 RESPONSE` (protobuf
//! ResponseHead), then DATA frames and at most one TRAILERS, then FIN.
//!
//! Everything read is bounded and checked; nothing read is unwrapped.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The two bytes a `native` request stream starts with.
pub(crate) const MAGIC: [u8; 2] = [0xCA, 0x48];
pub(crate) const VERSION: u8 = 1;
pub(crate) const PREFIX_LEN: usize = 5;
/// Largest request head, response head or trailers block accepted.
pub(crate) const MAX_HEAD_LEN: usize = 16 * 1024;
/// Largest DATA frame accepted (a sender splits larger bodies).
pub(crate) const MAX_DATA_LEN: usize = 64 * 1024;
/// Most header fields in one head or trailers block.
pub(crate) const MAX_FIELDS: usize = 128;
/// Largest chunk taken from quinn in one read.
const READ_CHUNK: usize = 16 * 1024;

pub(crate) const FRAME_DATA: u8 = 0;
pub(crate) const FRAME_TRAILERS: u8 = 1;
pub(crate) const FRAME_RESPONSE: u8 = 2;

/// Today's stream header (`causeway.tunnel.v1.StreamHeader`), for the
/// `h2-per-stream` variant; same field numbers as the real proto.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct StreamHeader {
    #[prost(string, tag = "1")]
    pub(crate) service: String,
    #[prost(uint32, tag = "2")]
    pub(crate) port: u32,
    #[prost(string, tag = "3")]
    pub(crate) caller_id: String,
    #[prost(string, tag = "4")]
    pub(crate) traceparent: String,
    #[prost(string, tag = "5")]
    pub(crate) tracestate: String,
    #[prost(uint64, tag = "6")]
    pub(crate) deadline_unix_ms: u64,
    #[prost(string, tag = "7")]
    pub(crate) request_id: String,
    #[prost(int32, tag = "8")]
    pub(crate) protocol: i32,
}

/// Today's stream header prefix: magic `CA 57`, version 1, u16 length.
pub(crate) const STREAM_HEADER_MAGIC: [u8; 2] = [0xCA, 0x57];
/// `PROTOCOL_HTTP2` in today's proto.
pub(crate) const PROTOCOL_HTTP2: i32 = 3;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Field {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) name: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) value: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RequestHead {
    #[prost(string, tag = "1")]
    pub(crate) method: String,
    #[prost(string, tag = "2")]
    pub(crate) authority: String,
    #[prost(string, tag = "3")]
    pub(crate) path: String,
    #[prost(message, repeated, tag = "4")]
    pub(crate) headers: Vec<Field>,
    #[prost(string, tag = "5")]
    pub(crate) service: String,
    #[prost(uint32, tag = "6")]
    pub(crate) port: u32,
    #[prost(string, tag = "7")]
    pub(crate) caller_id: String,
    #[prost(string, tag = "8")]
    pub(crate) traceparent: String,
    #[prost(string, tag = "9")]
    pub(crate) request_id: String,
    /// Absolute deadline, milliseconds since the Unix epoch; 0 for none.
    #[prost(uint64, tag = "10")]
    pub(crate) deadline_unix_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ResponseHead {
    #[prost(uint32, tag = "1")]
    pub(crate) status: u32,
    #[prost(message, repeated, tag = "2")]
    pub(crate) headers: Vec<Field>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Trailers {
    #[prost(message, repeated, tag = "1")]
    pub(crate) headers: Vec<Field>,
}

#[derive(Debug)]
pub(crate) enum WireError {
    BadMagic([u8; 2]),
    BadVersion(u8),
    HeadLength(usize),
    FrameTooLarge { kind: u8, len: u64 },
    UnknownFrame(u8),
    Unexpected(&'static str),
    Truncated,
    Decode(prost::DecodeError),
    Field(String),
    Read(quinn::ReadError),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::BadMagic(m) => write!(f, "stream does not start with the magic (got {m:02x?})"),
            Self::BadVersion(v) => write!(f, "version {v} is not supported"),
            Self::HeadLength(n) => write!(f, "head length {n} is out of 1..={MAX_HEAD_LEN}"),
            Self::FrameTooLarge { kind, len } => write!(f, "frame type {kind} of {len} bytes"),
            Self::UnknownFrame(t) => write!(f, "unknown frame type {t}"),
            Self::Unexpected(what) => write!(f, "unexpected frame: {what}"),
            Self::Truncated => f.write_str("stream ended inside a frame"),
            Self::Decode(e) => write!(f, "protobuf: {e}"),
            Self::Field(e) => write!(f, "header field: {e}"),
            Self::Read(e) => write!(f, "reading the stream: {e}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<prost::DecodeError> for WireError {
    fn from(e: prost::DecodeError) -> Self {
        Self::Decode(e)
    }
}

/// Appends a QUIC variable-length integer (RFC 9000 §16). `v` must be
/// below 2^62; every length written here is far below.
pub(crate) fn put_varint(out: &mut BytesMut, v: u64) {
    if v < 1 << 6 {
        out.put_u8(v as u8);
    } else if v < 1 << 14 {
        out.put_u16(0x4000 | v as u16);
    } else if v < 1 << 30 {
        out.put_u32(0x8000_0000 | v as u32);
    } else {
        out.put_u64(0xC000_0000_0000_0000 | (v & 0x3FFF_FFFF_FFFF_FFFF));
    }
}

/// Reads a QUIC varint at the start of `b`: `(value, bytes used)`, or
/// `None` when `b` is too short.
pub(crate) fn get_varint(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(..len)?;
    let mut v = u64::from(first & 0x3F);
    for byte in bytes.iter().skip(1) {
        v = (v << 8) | u64::from(*byte);
    }
    Some((v, len))
}

/// Appends a frame header (type, varint length).
pub(crate) fn put_frame_header(out: &mut BytesMut, kind: u8, len: usize) {
    out.put_u8(kind);
    put_varint(out, len as u64);
}

/// Appends a protobuf message as one frame.
pub(crate) fn put_message_frame(out: &mut BytesMut, kind: u8, msg: &impl prost::Message) {
    let len = msg.encoded_len();
    put_frame_header(out, kind, len);
    out.reserve(len);
    // Cannot fail: `reserve` made room for `encoded_len` bytes.
    let _ = msg.encode(out);
}

/// Appends `magic, version, u16 length, message`. Fails when the encoded
/// message is empty or longer than `MAX_HEAD_LEN`.
pub(crate) fn put_prefixed(
    out: &mut BytesMut,
    magic: [u8; 2],
    msg: &impl prost::Message,
) -> Result<(), WireError> {
    let len = msg.encoded_len();
    if len == 0 || len > MAX_HEAD_LEN {
        return Err(WireError::HeadLength(len));
    }
    out.reserve(PREFIX_LEN + len);
    out.put_slice(&magic);
    out.put_u8(VERSION);
    out.put_u16(len as u16);
    // Cannot fail: room reserved above.
    let _ = msg.encode(out);
    Ok(())
}

/// Header fields from the wire into a `HeaderMap`, each name and value
/// checked by the `http` crate.
pub(crate) fn to_header_map(fields: Vec<Field>) -> Result<HeaderMap, WireError> {
    if fields.len() > MAX_FIELDS {
        return Err(WireError::Field(format!("{} fields", fields.len())));
    }
    let mut map = HeaderMap::with_capacity(fields.len());
    for f in fields {
        let name = HeaderName::from_bytes(&f.name).map_err(|e| WireError::Field(e.to_string()))?;
        let value =
            HeaderValue::from_maybe_shared(f.value).map_err(|e| WireError::Field(e.to_string()))?;
        map.append(name, value);
    }
    Ok(map)
}

/// A `HeaderMap` as wire fields (one copy of each name and value).
pub(crate) fn from_header_map(map: &HeaderMap) -> Vec<Field> {
    map.iter()
        .map(|(n, v)| Field {
            name: Bytes::copy_from_slice(n.as_str().as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect()
}

/// One frame read from a stream.
#[derive(Debug)]
pub(crate) enum Frame {
    Data(Bytes),
    Trailers(Bytes),
    Response(Bytes),
}

/// Frames from a quinn receive stream, read with `read_chunk` (no copy
/// unless a frame straddles two chunks).
#[derive(Debug)]
pub(crate) struct FrameReader {
    recv: quinn::RecvStream,
    pending: Bytes,
    finished: bool,
}

impl FrameReader {
    pub(crate) fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            pending: Bytes::new(),
            finished: false,
        }
    }

    /// Takes one more chunk from quinn: `true` if one came, `false` at
    /// the stream's FIN.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, WireError>> {
        if self.finished {
            return Poll::Ready(Ok(false));
        }
        // `read_chunk` is cancel-safe and its future holds no state of its
        // own: polling a fresh one each time is how to poll it by hand.
        let read = pin!(self.recv.read_chunk(READ_CHUNK, true));
        match ready!(read.poll(cx)) {
            Ok(Some(chunk)) => {
                if self.pending.is_empty() {
                    self.pending = chunk.bytes;
                } else {
                    let mut joined =
                        BytesMut::with_capacity(self.pending.len() + chunk.bytes.len());
                    joined.put_slice(&self.pending);
                    joined.put_slice(&chunk.bytes);
                    self.pending = joined.freeze();
                }
                Poll::Ready(Ok(true))
            }
            Ok(None) => {
                self.finished = true;
                Poll::Ready(Ok(false))
            }
            Err(e) => Poll::Ready(Err(WireError::Read(e))),
        }
    }

    /// Until at least `n` bytes are pending; `false` if FIN came first.
    fn poll_ensure(&mut self, cx: &mut Context<'_>, n: usize) -> Poll<Result<bool, WireError>> {
        while self.pending.len() < n {
            if !ready!(self.poll_fill(cx))? {
                return Poll::Ready(Ok(false));
            }
        }
        Poll::Ready(Ok(true))
    }

    /// The request prefix and head: the encoded head's bytes.
    pub(crate) async fn read_prefixed(&mut self, magic: [u8; 2]) -> Result<Bytes, WireError> {
        std::future::poll_fn(|cx| self.poll_prefixed(cx, magic)).await
    }

    fn poll_prefixed(
        &mut self,
        cx: &mut Context<'_>,
        magic: [u8; 2],
    ) -> Poll<Result<Bytes, WireError>> {
        if !ready!(self.poll_ensure(cx, PREFIX_LEN))? {
            return Poll::Ready(Err(WireError::Truncated));
        }
        let p = &self.pending;
        let got = [p[0], p[1]];
        if got != magic {
            return Poll::Ready(Err(WireError::BadMagic(got)));
        }
        if p[2] != VERSION {
            return Poll::Ready(Err(WireError::BadVersion(p[2])));
        }
        let len = usize::from(u16::from_be_bytes([p[3], p[4]]));
        if len == 0 || len > MAX_HEAD_LEN {
            return Poll::Ready(Err(WireError::HeadLength(len)));
        }
        if !ready!(self.poll_ensure(cx, PREFIX_LEN + len))? {
            return Poll::Ready(Err(WireError::Truncated));
        }
        let head = self.pending.slice(PREFIX_LEN..PREFIX_LEN + len);
        self.pending = self.pending.slice(PREFIX_LEN + len..);
        Poll::Ready(Ok(head))
    }

    /// The next frame, or `None` at a FIN between frames.
    pub(crate) async fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        std::future::poll_fn(|cx| self.poll_frame(cx)).await
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Option<Frame>, WireError>> {
        if !ready!(self.poll_ensure(cx, 1))? {
            return Poll::Ready(Ok(None));
        }
        let kind = self.pending[0];
        let limit = match kind {
            FRAME_DATA => MAX_DATA_LEN,
            FRAME_TRAILERS | FRAME_RESPONSE => MAX_HEAD_LEN,
            other => return Poll::Ready(Err(WireError::UnknownFrame(other))),
        };
        if !ready!(self.poll_ensure(cx, 2))? {
            return Poll::Ready(Err(WireError::Truncated));
        }
        // The varint's length is in its first byte's top two bits.
        let varint_len = 1usize << (self.pending[1] >> 6);
        if !ready!(self.poll_ensure(cx, 1 + varint_len))? {
            return Poll::Ready(Err(WireError::Truncated));
        }
        let Some((len, used)) = get_varint(&self.pending[1..]) else {
            return Poll::Ready(Err(WireError::Truncated));
        };
        if len > limit as u64 {
            return Poll::Ready(Err(WireError::FrameTooLarge { kind, len }));
        }
        // Bounded by `limit` just above.
        let len = len as usize;
        let start = 1 + used;
        if !ready!(self.poll_ensure(cx, start + len))? {
            return Poll::Ready(Err(WireError::Truncated));
        }
        let payload = self.pending.slice(start..start + len);
        self.pending = self.pending.slice(start + len..);
        Poll::Ready(Ok(Some(match kind {
            FRAME_DATA => Frame::Data(payload),
            FRAME_TRAILERS => Frame::Trailers(payload),
            _ => Frame::Response(payload),
        })))
    }

    /// Whether the FIN has been read and nothing is left.
    pub(crate) fn is_end(&self) -> bool {
        self.finished && self.pending.is_empty()
    }
}

/// A streamed body over `native` frames: DATA frames, then optional
/// TRAILERS, then FIN. The `http_body::Body` both `native-hyper` sides
/// hand to the HTTP layer.
#[derive(Debug)]
pub(crate) struct FrameBody {
    reader: FrameReader,
    trailers_seen: bool,
    done: bool,
}

impl FrameBody {
    pub(crate) fn new(reader: FrameReader) -> Self {
        Self {
            reader,
            trailers_seen: false,
            done: false,
        }
    }
}

impl http_body::Body for FrameBody {
    type Data = Bytes;
    type Error = WireError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, WireError>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let frame = match ready!(this.reader.poll_frame(cx)) {
            Ok(f) => f,
            Err(e) => {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
        };
        let out = match frame {
            None => {
                this.done = true;
                return Poll::Ready(None);
            }
            Some(_) if this.trailers_seen => Err(WireError::Unexpected("a frame after TRAILERS")),
            Some(Frame::Data(b)) => Ok(http_body::Frame::data(b)),
            Some(Frame::Trailers(b)) => {
                this.trailers_seen = true;
                <Trailers as prost::Message>::decode(b)
                    .map_err(WireError::from)
                    .and_then(|t| to_header_map(t.headers))
                    .map(http_body::Frame::trailers)
            }
            Some(Frame::Response(_)) => Err(WireError::Unexpected("RESPONSE inside a body")),
        };
        if out.is_err() {
            this.done = true;
        }
        Poll::Ready(Some(out))
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.reader.is_end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
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
            assert_eq!(get_varint(&b[..b.len() - 1]), None, "{v} truncated");
        }
    }

    /// A `FrameReader` over a real quinn stream whose peer wrote `bytes`
    /// and finished.
    async fn reader_over(bytes: &[u8]) -> (FrameReader, quinn::Endpoint, quinn::Connection) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let identity = crate::quic::Identity::self_signed().unwrap();
        let server = crate::quic::server(&identity, &[b"t"]).unwrap();
        let addr = server.local_addr().unwrap();
        let client = crate::quic::client().unwrap();
        let config = crate::quic::client_config(&identity.cert, b"t").unwrap();
        let connecting = client
            .connect_with(config, addr, crate::quic::SERVER_NAME)
            .unwrap();
        let incoming = server.accept().await.unwrap();
        let (conn, server_conn) = tokio::join!(connecting, incoming);
        let conn = conn.unwrap();
        let server_conn = server_conn.unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let (_send, recv) = server_conn.accept_bi().await.unwrap();
        (FrameReader::new(recv), client, conn)
    }

    fn prefixed(head: &[u8]) -> Vec<u8> {
        let mut v = MAGIC.to_vec();
        v.push(VERSION);
        v.extend_from_slice(&(head.len() as u16).to_be_bytes());
        v.extend_from_slice(head);
        v
    }

    #[tokio::test]
    async fn a_well_formed_request_reads_to_its_end() {
        let mut bytes = prefixed(b"head");
        bytes.extend_from_slice(&[FRAME_DATA, 5]);
        bytes.extend_from_slice(b"hello");
        // A 2-byte varint for an empty TRAILERS frame: still well formed.
        bytes.extend_from_slice(&[FRAME_TRAILERS, 0x40, 0x00]);
        let (mut r, _c, _conn) = reader_over(&bytes).await;
        assert_eq!(&r.read_prefixed(MAGIC).await.unwrap()[..], b"head");
        assert!(matches!(r.next_frame().await, Ok(Some(Frame::Data(b))) if &b[..] == b"hello"));
        assert!(matches!(r.next_frame().await, Ok(Some(Frame::Trailers(b))) if b.is_empty()));
        assert!(matches!(r.next_frame().await, Ok(None)));
        assert!(r.is_end());
    }

    #[tokio::test]
    async fn bad_prefixes_are_refused() {
        let (mut r, _c, _conn) = reader_over(&[0xCA, 0x57, 1, 0, 1, 0]).await;
        assert!(matches!(
            r.read_prefixed(MAGIC).await,
            Err(WireError::BadMagic(_))
        ));
        let (mut r, _c, _conn) = reader_over(&[0xCA, 0x48, 9, 0, 1, 0]).await;
        assert!(matches!(
            r.read_prefixed(MAGIC).await,
            Err(WireError::BadVersion(9))
        ));
        let (mut r, _c, _conn) = reader_over(&[0xCA, 0x48, 1, 0, 0]).await;
        assert!(matches!(
            r.read_prefixed(MAGIC).await,
            Err(WireError::HeadLength(0))
        ));
        let (mut r, _c, _conn) = reader_over(&[0xCA, 0x48, 1, 0xFF, 0xFF]).await;
        assert!(matches!(
            r.read_prefixed(MAGIC).await,
            Err(WireError::HeadLength(65_535))
        ));
        let (mut r, _c, _conn) = reader_over(&[0xCA, 0x48, 1, 0, 10, 1, 2, 3]).await;
        assert!(matches!(
            r.read_prefixed(MAGIC).await,
            Err(WireError::Truncated)
        ));
        let (mut r, _c, _conn) = reader_over(&[0xCA, 0x48]).await;
        assert!(matches!(
            r.read_prefixed(MAGIC).await,
            Err(WireError::Truncated)
        ));
    }

    #[tokio::test]
    async fn bad_frames_are_refused() {
        let (mut r, _c, _conn) = reader_over(&[9, 0]).await;
        assert!(matches!(
            r.next_frame().await,
            Err(WireError::UnknownFrame(9))
        ));
        // DATA of 2^20 bytes (4-byte varint): over the limit, refused
        // before anything is buffered.
        let (mut r, _c, _conn) = reader_over(&[FRAME_DATA, 0x80, 0x10, 0x00, 0x00]).await;
        assert!(matches!(
            r.next_frame().await,
            Err(WireError::FrameTooLarge {
                kind: 0,
                len: 1_048_576
            })
        ));
        let (mut r, _c, _conn) = reader_over(&[FRAME_RESPONSE, 0xC0, 0, 0]).await;
        assert!(matches!(r.next_frame().await, Err(WireError::Truncated)));
        let (mut r, _c, _conn) = reader_over(&[FRAME_DATA, 4, b'a', b'b']).await;
        assert!(matches!(r.next_frame().await, Err(WireError::Truncated)));
        let (mut r, _c, _conn) = reader_over(&[FRAME_DATA]).await;
        assert!(matches!(r.next_frame().await, Err(WireError::Truncated)));
    }
}
