//! Pooled HTTP clients to local upstreams, part of the config snapshot:
//! connections are reused across calls and kept across applies that do
//! not change the connect timeout.

use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::body::Body;

/// Pooled clients to local upstreams: one for HTTP/1.1, one for h2c.
#[derive(Debug, Clone)]
pub struct HttpClients {
    pub(crate) h1: Client<HttpConnector, Body>,
    pub(crate) h2: Client<HttpConnector, Body>,
}

impl HttpClients {
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let builder = |h2: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(Duration::from_secs(90));
            if h2 {
                b.http2_only(true);
            }
            b.build(connector.clone())
        };
        Self {
            h1: builder(false),
            h2: builder(true),
        }
    }
}
