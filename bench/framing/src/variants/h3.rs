//! `h3`: the h3 and h3-quinn crates. One HTTP/3 connection over the QUIC
//! connection (control and QPACK streams set up once); each call is one
//! request stream.

use anyhow::Context as _;
use bytes::{Buf, Bytes};

use crate::call::{self, BODY, X_REQUEST_ID};
use crate::variants::ServerStats;

type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// A caller's handle on the client's HTTP/3 connection.
#[derive(Clone)]
pub(crate) struct Client {
    send: SendRequest,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("h3::Client").finish_non_exhaustive()
    }
}

impl Client {
    /// Sets HTTP/3 up on `conn` and spawns its connection driver.
    pub(crate) async fn new(conn: quinn::Connection) -> anyhow::Result<Self> {
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
            .await
            .context("HTTP/3 client setup")?;
        tokio::spawn(async move {
            // Ends when the connection closes.
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self { send })
    }

    pub(crate) async fn call(&mut self, caller: usize, seq: u64) -> anyhow::Result<()> {
        let request_id = call::request_id(caller, seq);
        let req = call::request(&request_id, ())?;
        let mut stream = self
            .send
            .send_request(req)
            .await
            .context("HTTP/3 request")?;
        stream.finish().await.context("finishing the request")?;
        let resp = stream.recv_response().await.context("HTTP/3 response")?;
        call::check_head(resp.status(), resp.headers(), &request_id)?;
        let mut len = 0;
        while let Some(data) = stream.recv_data().await.context("response body")? {
            len += data.remaining();
        }
        // Reads the FIN (or the trailers before it).
        stream.recv_trailers().await.context("response trailers")?;
        call::check_body_len(len)
    }
}

/// The server side of one QUIC connection: the h3 accept loop, one task
/// per request.
pub(crate) async fn serve(conn: quinn::Connection, stats: std::sync::Arc<ServerStats>) {
    let mut h3conn =
        match h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)).await {
            Ok(c) => c,
            Err(e) => return stats.note(&anyhow::Error::from(e).context("HTTP/3 server setup")),
        };
    // Err: the connection closed (the client closes it when the run ends).
    while let Ok(Some(resolver)) = h3conn.accept().await {
        let stats = stats.clone();
        tokio::spawn(async move {
            let result = async {
                let (req, mut stream) = resolver
                    .resolve_request()
                    .await
                    .context("HTTP/3 request head")?;
                while stream.recv_data().await.context("request body")?.is_some() {}
                let head = call::response_head(req.headers().get(&X_REQUEST_ID).cloned())?;
                stream.send_response(head).await.context("response head")?;
                stream
                    .send_data(BODY.clone())
                    .await
                    .context("response body")?;
                stream.finish().await.context("finishing the response")
            }
            .await;
            if let Err(e) = result {
                stats.note(&e);
            }
        });
    }
}
