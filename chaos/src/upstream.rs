//! The HTTP upstream each trust domain exports: it answers every request
//! with 200 and names itself in `x-seen-by`, so a load generator knows the
//! answer came from the right domain's service.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Starts an upstream named `name` on 127.0.0.1 (a port from the OS) on
/// the current runtime; it serves until the runtime ends.
pub async fn http_upstream(name: String) -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind an upstream")?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let name = name.clone();
            let svc = service_fn(move |_req: Request<Incoming>| {
                let name = name.clone();
                async move {
                    let mut resp = Response::new(Full::new(Bytes::from_static(b"ok\n")));
                    if let Ok(v) = http::HeaderValue::from_str(&name) {
                        resp.headers_mut().insert("x-seen-by", v);
                    }
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
