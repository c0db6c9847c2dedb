//! The benchmark's HTTP upstream, its own process (`causeway-bench
//! serve-http-upstream`, hidden), like the TCP one: HTTP/1.1 and h2c (prior
//! knowledge) on one port, hyper's automatic server, every request
//! answered 200 with the same 64-byte body, which costs one `Bytes` clone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::process::ChildGuard;
use super::upstream::{parent_gone, start_this_binary};

/// Size of every response body.
pub(crate) const BODY_BYTES: usize = 64;

/// Serves until stdin closes or the process is signalled. Prints
/// `{"event":"ready","addr":...}` first.
pub(crate) fn serve() -> anyhow::Result<()> {
    let body = Bytes::from(super::load::message(BODY_BYTES));
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the HTTP upstream")?;
        let addr = listener.local_addr().context("HTTP upstream address")?;
        crate::out::say!(
            "{}",
            serde_json::json!({"event": "ready", "addr": addr.to_string()})
        );
        let accept = async {
            loop {
                let (conn, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("HTTP upstream accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = conn.set_nodelay(true);
                let body = body.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        let body = body.clone();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
                    });
                    if let Err(e) = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(conn), svc)
                        .await
                    {
                        tracing::debug!("HTTP upstream connection ended: {e}");
                    }
                });
            }
        };
        tokio::select! {
            () = accept => {}
            () = parent_gone() => {}
        }
        Ok(())
    })
}

/// Starts the HTTP upstream process and returns it with its address.
pub(crate) fn start(dir: &Path) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    start_this_binary("http-upstream", "serve-http-upstream", dir)
}
