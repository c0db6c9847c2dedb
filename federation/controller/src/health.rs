//! The metrics listener: `/metrics` (Prometheus text), `/healthz`,
//! `/readyz`. Gauges read from the store (connected gateways, peers and
//! the age of their bundles) are refreshed at each scrape.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use causeway_store::Store;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::peers;
use crate::tokens::now_unix;

#[derive(Debug)]
pub(crate) struct HealthState {
    pub(crate) registry: Registry,
    pub(crate) metrics: Metrics,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ready: AtomicBool,
    /// Our bundle, for its roots' expiry.
    pub(crate) own: tokio::sync::watch::Receiver<causeway_trust::TrustBundle>,
}

pub(crate) fn spawn(listener: TcpListener, state: Arc<HealthState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(handle(&state, &req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    })
}

async fn handle(state: &HealthState, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" if state.ready.load(Ordering::Relaxed) => text(StatusCode::OK, "ready\n".into()),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n".into()),
        "/metrics" => {
            refresh(state).await;
            let mut buf = Vec::new();
            match TextEncoder::new().encode(&state.registry.gather(), &mut buf) {
                Ok(()) => text(StatusCode::OK, String::from_utf8_lossy(&buf).into_owned()),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

async fn refresh(state: &HealthState) {
    let m = &state.metrics;
    if let Ok(list) = state.store.list(crate::keys::CONNECTED).await {
        m.connected_gateways
            .set(i64::try_from(list.kvs.len()).unwrap_or(i64::MAX));
    }
    m.root_expiry.reset();
    let now = now_unix();
    #[allow(clippy::cast_precision_loss, reason = "a gauge in seconds")]
    let expiry = |td: &str, bundle: &causeway_trust::TrustBundle| {
        if let Some(at) = bundle.earliest_expiry() {
            m.root_expiry
                .with_label_values(&[td])
                .set((at - now) as f64);
        }
    };
    let own = state.own.borrow().clone();
    expiry(own.trust_domain().as_str(), &own);
    if let Ok(held) = peers::read_all(&state.store).await {
        m.peers.set(i64::try_from(held.len()).unwrap_or(i64::MAX));
        m.peer_bundle_age.reset();
        for (name, h) in held {
            if let Some(b) = causeway_trust::TrustDomain::new(&h.trust_domain)
                .ok()
                .and_then(|td| h.bundle(&td))
            {
                expiry(&h.trust_domain, &b);
            }
            #[allow(clippy::cast_precision_loss, reason = "a gauge in seconds")]
            m.peer_bundle_age
                .with_label_values(&[name.as_str()])
                .set((now - h.since_unix) as f64);
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}
