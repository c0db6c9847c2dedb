//! Large bodies, streamed and never held whole: a deterministic byte
//! pattern produced chunk by chunk, a checksum computed as bytes go by, and
//! an upstream that counts what it is sent and produces what it is asked
//! for.
//!
//! Byte `i` of every pattern is the same whatever the total length, so a
//! body of any length has one expected checksum, and a byte lost,
//! duplicated or moved changes it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// The pattern's chunk size.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Chunk `k` of the pattern (splitmix64 seeded by the chunk's index), its
/// first `len` bytes.
fn chunk(k: u64, len: usize) -> Bytes {
    let mut state = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut out = Vec::with_capacity(CHUNK);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// A count of bytes and their FNV-1a hash, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checksum {
    pub(crate) bytes: u64,
    pub(crate) fnv: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Self {
            bytes: 0,
            fnv: 0xCBF2_9CE4_8422_2325,
        }
    }
}

impl Checksum {
    pub(crate) fn update(&mut self, data: &[u8]) {
        for b in data {
            self.fnv = (self.fnv ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.bytes += data.len() as u64;
    }

    /// The checksum of the first `len` bytes of the pattern.
    pub(crate) fn of_pattern(len: u64) -> Self {
        let mut c = Self::default();
        let mut body = Pattern::new(len, true);
        while let Some(data) = body.next_chunk() {
            c.update(&data);
        }
        c
    }

    /// `count=<bytes> fnv=<hex>`, as the upstream reports it.
    pub(crate) fn header(&self) -> String {
        format!("count={} fnv={:016x}", self.bytes, self.fnv)
    }
}

/// The first `len` bytes of the pattern as a body, one chunk per frame,
/// each made when asked for. With `known_length` its size hint is exact
/// (HTTP/1.1 sends a Content-Length); without, it is unknown (chunked).
#[derive(Debug)]
pub(crate) struct Pattern {
    len: u64,
    sent: u64,
    known_length: bool,
}

impl Pattern {
    pub(crate) fn new(len: u64, known_length: bool) -> Self {
        Self {
            len,
            sent: 0,
            known_length,
        }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        let left = self.len - self.sent;
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left.min(CHUNK as u64)).unwrap();
        let data = chunk(self.sent / CHUNK as u64, n);
        self.sent += n as u64;
        Some(data)
    }
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.next_chunk().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.known_length && self.sent == self.len
    }

    fn size_hint(&self) -> SizeHint {
        if self.known_length {
            SizeHint::with_exact(self.len - self.sent)
        } else {
            SizeHint::default()
        }
    }
}

/// Reads a body frame by frame, keeping only its checksum.
pub(crate) async fn checksum<B>(mut body: B) -> Result<Checksum, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut c = Checksum::default();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            c.update(&data);
        }
    }
    Ok(c)
}

/// An HTTP/1.1 and h2c upstream: `POST` (any path) reads the request body
/// as it comes and answers 200 with its [`Checksum::header`] in
/// `x-received`; `GET /produce/<n>` answers with the first `n` bytes of the
/// pattern, with a Content-Length.
pub(crate) async fn bulk_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let svc = service_fn(|req: Request<Incoming>| async move {
                Ok::<_, Infallible>(bulk_answer(req).await)
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn bulk_answer(req: Request<Incoming>) -> Response<BoxBody<Bytes, Infallible>> {
    let empty = || http_body_util::Empty::new().boxed();
    if req.method() == http::Method::POST {
        return match checksum(req.into_body()).await {
            Ok(c) => Response::builder()
                .header("x-received", c.header())
                .body(empty())
                .unwrap(),
            Err(e) => Response::builder()
                .status(500)
                .header("x-error", e.to_string())
                .body(empty())
                .unwrap(),
        };
    }
    match req
        .uri()
        .path()
        .strip_prefix("/produce/")
        .and_then(|n| n.parse().ok())
    {
        Some(n) => Response::new(Pattern::new(n, true).boxed()),
        None => Response::builder().status(404).body(empty()).unwrap(),
    }
}
