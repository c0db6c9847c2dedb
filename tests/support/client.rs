//! A plain HTTP client for the end-to-end tests: one request on a fresh
//! connection, HTTP/1.1 or h2c (prior knowledge), over TCP or any stream.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What came back.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) trailers: Option<HeaderMap>,
}

impl Answer {
    /// A response header as text, or "".
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A request to `host` (the Host header, or :authority for h2) at `path`.
pub(crate) fn request(host: &str, path: &str, body: &[u8]) -> Request<Full<Bytes>> {
    Request::builder()
        .method(if body.is_empty() { "GET" } else { "POST" })
        .uri(format!("http://{host}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap()
}

/// Sends `req` on a new TCP connection to `addr`.
pub(crate) async fn send(addr: SocketAddr, req: Request<Full<Bytes>>, h2: bool) -> Answer {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    send_on(tcp, req, h2).await
}

/// Sends `req` on an established stream.
pub(crate) async fn send_on<IO>(io: IO, mut req: Request<Full<Bytes>>, h2: bool) -> Answer
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let resp = if h2 {
        req.headers_mut().remove("host");
        let (mut tx, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await.unwrap()
    } else {
        // HTTP/1.1 requests go in origin form; Host carries the name.
        let pq = req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        *req.uri_mut() = pq.parse().unwrap();
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .unwrap();
        tokio::spawn(conn);
        tx.send_request(req).await.unwrap()
    };
    collect(resp).await
}

/// A response, read to its end.
pub(crate) async fn collect(resp: Response<Incoming>) -> Answer {
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

/// A new h2c connection (prior knowledge) to `addr`, for as many requests
/// at once as the server allows.
pub(crate) async fn h2c(addr: SocketAddr) -> http2::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (tx, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    tx
}
