//! The candidate framings, their clients and their server sides.

pub(crate) mod h2_per_stream;
pub(crate) mod h3;
pub(crate) mod native;
pub(crate) mod native_hyper;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use rustls_pki_types::CertificateDer;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Variant {
    /// Today's design: stream header, then a whole HTTP/2 connection.
    #[value(name = "h2-per-stream")]
    H2PerStream,
    /// HTTP/3 with the h3 and h3-quinn crates.
    #[value(name = "h3")]
    H3,
    /// Prefix + protobuf head, type/length frames, no HTTP library.
    #[value(name = "native")]
    Native,
    /// `native` with `http::Request`/`Response` and `http_body::Body` on
    /// both ends.
    #[value(name = "native-hyper")]
    NativeHyper,
}

impl Variant {
    pub(crate) const ALL: [Variant; 4] = [
        Variant::H2PerStream,
        Variant::H3,
        Variant::Native,
        Variant::NativeHyper,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::H2PerStream => "h2-per-stream",
            Variant::H3 => "h3",
            Variant::Native => "native",
            Variant::NativeHyper => "native-hyper",
        }
    }

    /// Each variant has a QUIC connection of its own, told apart on the
    /// server by its ALPN: HTTP/3 owns every stream of its connection.
    pub(crate) fn alpn(self) -> &'static [u8] {
        match self {
            Variant::H2PerStream => b"causeway-bench-h2-per-stream",
            Variant::H3 => b"h3",
            Variant::Native => b"causeway-bench-native",
            Variant::NativeHyper => b"causeway-bench-native-hyper",
        }
    }

    fn from_alpn(alpn: &[u8]) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.alpn() == alpn)
    }
}

/// One caller's handle on its variant's connection.
#[derive(Clone, Debug)]
pub(crate) enum Client {
    H2PerStream(quinn::Connection),
    H3(h3::Client),
    Native(quinn::Connection),
    NativeHyper(quinn::Connection),
}

impl Client {
    /// Connects `variant`'s QUIC connection (and HTTP/3 on it for `h3`);
    /// the connection is returned too, to close it at the end.
    pub(crate) async fn connect(
        endpoint: &quinn::Endpoint,
        server: std::net::SocketAddr,
        cert: &CertificateDer<'static>,
        variant: Variant,
    ) -> anyhow::Result<(Self, quinn::Connection)> {
        let config = crate::quic::client_config(cert, variant.alpn())?;
        let conn = endpoint
            .connect_with(config, server, crate::quic::SERVER_NAME)
            .context("connect")?
            .await
            .with_context(|| format!("QUIC handshake for {}", variant.name()))?;
        let client = match variant {
            Variant::H2PerStream => Client::H2PerStream(conn.clone()),
            Variant::H3 => Client::H3(h3::Client::new(conn.clone()).await?),
            Variant::Native => Client::Native(conn.clone()),
            Variant::NativeHyper => Client::NativeHyper(conn.clone()),
        };
        Ok((client, conn))
    }

    /// One complete, checked call.
    pub(crate) async fn call(&mut self, caller: usize, seq: u64) -> anyhow::Result<()> {
        match self {
            Client::H2PerStream(c) => h2_per_stream::call(c, caller, seq).await,
            Client::H3(c) => c.call(caller, seq).await,
            Client::Native(c) => native::call(c, caller, seq).await,
            Client::NativeHyper(c) => native_hyper::call(c, caller, seq).await,
        }
    }
}

/// Errors the server sides met: any is a failed run.
#[derive(Debug, Default)]
pub(crate) struct ServerStats {
    errors: AtomicU64,
    first: Mutex<Option<String>>,
}

impl ServerStats {
    pub(crate) fn note(&self, e: &anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert_with(|| format!("{e:#}"));
        }
    }

    /// The error count and the first error's text.
    pub(crate) fn errors(&self) -> (u64, Option<String>) {
        let first = self.first.lock().ok().and_then(|f| f.clone());
        (self.errors.load(Ordering::Relaxed), first)
    }
}

/// The server side of one accepted QUIC connection, by its ALPN.
pub(crate) async fn serve(conn: quinn::Connection, stats: std::sync::Arc<ServerStats>) {
    let Some(variant) = crate::quic::alpn_of(&conn).and_then(|a| Variant::from_alpn(&a)) else {
        conn.close(1u32.into(), b"unknown ALPN");
        return;
    };
    if variant == Variant::H3 {
        return h3::serve(conn, stats).await;
    }
    // Err: the connection closed (the client closes it when the run ends).
    while let Ok((send, recv)) = conn.accept_bi().await {
        let stats = stats.clone();
        match variant {
            Variant::H2PerStream => spawn_noted(h2_per_stream::serve_stream(send, recv), stats),
            Variant::Native => spawn_noted(native::serve_stream(send, recv), stats),
            Variant::NativeHyper => spawn_noted(native_hyper::serve_stream(send, recv), stats),
            Variant::H3 => {}
        }
    }
}

/// Serves one stream in a task of its own; an error is noted.
fn spawn_noted(
    serve: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    stats: std::sync::Arc<ServerStats>,
) {
    tokio::spawn(async move {
        if let Err(e) = serve.await {
            stats.note(&e);
        }
    });
}
