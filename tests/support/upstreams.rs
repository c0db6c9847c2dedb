//! Real upstreams on loopback for the end-to-end tests: an HTTP server
//! (HTTP/1.1 and h2c) that reports what it received, a gRPC server (the
//! standard health service), a TCP echo, a WebSocket echo, one that never
//! answers, and an address where nothing listens.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// An HTTP server named `name`: it answers every request with the request
/// body, and reports in response headers what it saw: `x-seen-by` (its
/// name), `x-seen-xfcc` (every XFCC value, joined with ` | `),
/// `x-seen-principal` (`x-causeway-principal`), `x-seen-traceparent`,
/// `x-seen-request-id`, `x-seen-version`,
/// `x-seen-method`, `x-seen-path`. With `x-want-trailers` in the request, the
/// response ends with a trailer `x-body-len`.
pub(crate) async fn http_upstream(name: &'static str) -> SocketAddr {
    http_upstream_speaking(name, Versions::Both).await
}

/// The HTTP versions an upstream accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Versions {
    /// HTTP/1.1 and h2c (prior knowledge), told apart by the preface.
    Both,
    /// `hyper::server::conn::http1`: an HTTP/2 preface is a malformed
    /// request and ends the connection.
    Http1Only,
    /// `hyper::server::conn::http2`: an HTTP/1.1 request is not the HTTP/2
    /// preface and ends the connection.
    Http2Only,
}

/// [`http_upstream`], accepting only `versions`.
pub(crate) async fn http_upstream_speaking(name: &'static str, versions: Versions) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let svc = service_fn(move |req: Request<Incoming>| async move {
                Ok::<_, Infallible>(answer(name, req).await)
            });
            let io = TokioIo::new(tcp);
            tokio::spawn(async move {
                let _ = match versions {
                    Versions::Both => {
                        auto::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await
                    }
                    Versions::Http1Only => hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await
                        .map_err(Into::into),
                    Versions::Http2Only => {
                        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(io, svc)
                            .await
                            .map_err(Into::into)
                    }
                };
            });
        }
    });
    addr
}

async fn answer(name: &'static str, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let seen = |h: &HeaderMap, n: &str| {
        h.get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let resp = Response::builder()
        .header("x-seen-by", name)
        .header(
            "x-seen-xfcc",
            seen(&parts.headers, "x-forwarded-client-cert"),
        )
        .header(
            "x-seen-principal",
            seen(&parts.headers, "x-causeway-principal"),
        )
        .header("x-seen-traceparent", seen(&parts.headers, "traceparent"))
        .header("x-seen-request-id", seen(&parts.headers, "x-request-id"))
        .header("x-seen-version", format!("{:?}", parts.version))
        .header("x-seen-method", parts.method.as_str())
        .header(
            "x-seen-path",
            parts.uri.path_and_query().map_or("", |p| p.as_str()),
        );
    if parts.headers.contains_key("x-want-trailers") {
        let mut trailers = HeaderMap::new();
        trailers.insert("x-body-len", HeaderValue::from(body.len()));
        return resp
            .body(DataThenTrailers(Some(body), Some(trailers)).boxed())
            .unwrap();
    }
    resp.body(Full::new(body).boxed()).unwrap()
}

/// A body of one data frame, then trailers.
struct DataThenTrailers(Option<Bytes>, Option<HeaderMap>);

impl http_body::Body for DataThenTrailers {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.0.take() {
            Some(d) => Some(Frame::data(d)),
            None => self.1.take().map(Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }
}

/// A gRPC server: the standard `grpc.health.v1.Health` service, reporting
/// SERVING for the server as a whole and for `causeway.test`.
pub(crate) async fn grpc_upstream() -> SocketAddr {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("causeway.test", tonic_health::ServingStatus::Serving)
        .await;
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(l);
    tokio::spawn(async move {
        let _keep = reporter;
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await;
    });
    addr
}

/// A TCP server that answers `<name>|` then echoes until the caller closes.
pub(crate) async fn tcp_echo(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                if tcp.write_all(format!("{name}|").as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tcp.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

/// A server that accepts connections and never answers.
pub(crate) async fn silent() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = l.accept().await {
            held.push(tcp);
        }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    addr
}

/// An address where nothing listens (bound, then closed).
pub(crate) fn nothing() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A TCP upstream on its own threads, for tests without a tokio runtime:
/// answers every connection with "payments|", then echoes until the caller
/// closes its side.
pub(crate) fn payments_blocking() -> SocketAddr {
    use std::io::Write;
    use std::net::Shutdown;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                if w.write_all(b"payments|").is_ok() {
                    let _ = std::io::copy(&mut conn, &mut w);
                    let _ = w.shutdown(Shutdown::Write);
                }
            });
        }
    });
    addr
}

/// How one WebSocket connection to [`ws_echo`] ended: the close frame the
/// client sent, once the close handshake is done; otherwise why not.
pub(crate) type WsEnd = Result<Option<CloseFrame>, String>;

/// A WebSocket server (tokio-tungstenite, over HTTP/1.1 Upgrade) that
/// echoes every text and binary message, and answers the upgrade with
/// `x-seen-xfcc`, the `x-forwarded-client-cert` it received. Reports how
/// each connection ended on the returned channel.
pub(crate) async fn ws_echo() -> (SocketAddr, mpsc::UnboundedReceiver<WsEnd>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                #[allow(
                    clippy::result_large_err,
                    reason = "tungstenite's handshake callback returns its ErrorResponse by value"
                )]
                let seen = |req: &Request, mut resp: Response| {
                    let xfcc = req
                        .headers()
                        .get("x-forwarded-client-cert")
                        .cloned()
                        .unwrap_or(HeaderValue::from_static(""));
                    resp.headers_mut().insert("x-seen-xfcc", xfcc);
                    Ok(resp)
                };
                let mut ws = match tokio_tungstenite::accept_hdr_async(tcp, seen).await {
                    Ok(ws) => ws,
                    Err(e) => {
                        let _ = tx.send(Err(format!("handshake: {e}")));
                        return;
                    }
                };
                let mut close = None;
                // After the client's Close, tungstenite answers it; the
                // stream then ends once the handshake is complete.
                let end = loop {
                    match ws.next().await {
                        None => break close.ok_or_else(|| "ended without a close frame".into()),
                        Some(Ok(Message::Close(frame))) => close = Some(frame),
                        Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                            if let Err(e) = ws.send(m).await {
                                break Err(format!("echo: {e}"));
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => break Err(format!("read: {e}")),
                    }
                };
                let _ = tx.send(end);
            });
        }
    });
    (addr, rx)
}
