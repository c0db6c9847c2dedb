//! Shared by the gateway's tests: upstreams on loopback.

#![allow(clippy::unwrap_used, dead_code, reason = "test support")]

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A TCP upstream on loopback that answers every connection with
/// "payments|" and then echoes what it reads.
pub(crate) async fn payments_upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                if w.write_all(b"payments|").await.is_ok() {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
        }
    });
    addr
}
