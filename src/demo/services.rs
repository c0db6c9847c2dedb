//! The sample services behind the gateways: an HTTP service that answers
//! with who called (the caller's SPIFFE ID from the gateway's
//! `x-forwarded-client-cert`, and the principal the identity map gave it),
//! and a TCP echo. One is started for each endpoint of each Service file,
//! by the Service's protocol.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The response headers the HTTP service answers with.
pub(crate) const SERVED_BY: &str = "x-served-by";
pub(crate) const CALLER: &str = "x-caller";

/// A running sample service; dropping it does not stop it ([`Self::stop`]).
#[derive(Debug)]
pub(crate) struct Sample {
    pub(crate) service: String,
    pub(crate) protocol: &'static str,
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Sample {
    pub(crate) fn stop(&self) {
        self.task.abort();
    }
}

/// An HTTP/1.1 and h2c service named `service` of trust domain `td`, on
/// `bind` (port 0: one from the system).
pub(crate) async fn http(service: &str, td: &str, bind: SocketAddr) -> anyhow::Result<Sample> {
    let l = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding sample service {service} on {bind}"))?;
    let addr = l.local_addr().context("sample service address")?;
    let (name, domain) = (service.to_owned(), td.to_owned());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (name, domain) = (name.clone(), domain.clone());
            let svc = service_fn(move |req: Request<Incoming>| {
                let answer = answer(&name, &domain, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(Sample {
        service: service.to_owned(),
        protocol: "http",
        addr,
        task,
    })
}

/// `payments at west.globex.example: GET /x from spiffe://... (principal p)`.
fn answer(name: &str, td: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let caller = caller_of(req.headers()).unwrap_or_else(|| "an unknown caller".to_owned());
    let principal = req
        .headers()
        .get("x-causeway-principal")
        .and_then(|v| v.to_str().ok())
        .map(|p| format!(" (principal {p})"))
        .unwrap_or_default();
    let body = format!(
        "{name} at {td}: {} {} from {caller}{principal}\n",
        req.method(),
        req.uri().path()
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    let h = resp.headers_mut();
    if let Ok(v) = name.parse() {
        h.insert(SERVED_BY, v);
    }
    if let Ok(v) = caller.parse() {
        h.insert(CALLER, v);
    }
    if let Ok(v) = "text/plain; charset=utf-8".parse() {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

/// The caller's SPIFFE ID: `URI=` of the last element of the last
/// `x-forwarded-client-cert` (the one the nearest gateway set).
pub(crate) fn caller_of(headers: &HeaderMap) -> Option<String> {
    let xfcc = headers
        .get_all("x-forwarded-client-cert")
        .iter()
        .next_back()?
        .to_str()
        .ok()?;
    let element = xfcc.rsplit(',').next()?;
    element.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        k.eq_ignore_ascii_case("uri")
            .then(|| v.trim_matches('"').to_owned())
    })
}

/// A TCP service on `bind` that answers `<service>|`, then echoes until
/// the caller closes.
pub(crate) async fn tcp_echo(service: &str, bind: SocketAddr) -> anyhow::Result<Sample> {
    let l = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding sample service {service} on {bind}"))?;
    let addr = l.local_addr().context("sample service address")?;
    let greeting = format!("{service}|");
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            let greeting = greeting.clone();
            tokio::spawn(async move {
                if tcp.write_all(greeting.as_bytes()).await.is_err() {
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
    Ok(Sample {
        service: service.to_owned(),
        protocol: "tcp",
        addr,
        task,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn the_caller_is_the_uri_the_nearest_gateway_set() {
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-client-cert",
            "By=spiffe://west.globex.example/causeway/gateway/west-1;URI=spiffe://east.acme.example/ns/shop/sa/frontend"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            caller_of(&h).as_deref(),
            Some("spiffe://east.acme.example/ns/shop/sa/frontend")
        );
        assert_eq!(caller_of(&HeaderMap::new()), None);
    }
}
