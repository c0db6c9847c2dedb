//! The benchmark's TCP upstream, run as its own process (`causeway-bench
//! serve-upstream`, hidden) so that it does not share a scheduler with the
//! load generator: client, proxies and server are separate processes, as in
//! production, in every scenario including the direct one.
//!
//! The first byte of a connection picks its mode:
//! - `E`: echo, whatever arrives is written back (the request/response
//!   scenarios: one small message out, the same message back);
//! - `S`: sink, everything is read and counted until the client closes its
//!   side, then the count goes back as 8 bytes, big-endian (bulk transfer).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::process::ChildGuard;

pub(crate) const MODE_ECHO: u8 = b'E';
pub(crate) const MODE_SINK: u8 = b'S';

/// Serves until stdin closes (the benchmark ended, however it ended) or
/// the process is signalled. Prints `{"event":"ready","addr":...}` first.
pub(crate) fn serve() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the upstream")?;
        let addr = listener.local_addr().context("upstream address")?;
        crate::out::say!(
            "{}",
            serde_json::json!({"event": "ready", "addr": addr.to_string()})
        );
        let accept = async {
            loop {
                let (conn, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("upstream accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                tokio::spawn(async move {
                    if let Err(e) = serve_conn(conn).await {
                        tracing::debug!("upstream connection ended: {e}");
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

async fn serve_conn(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mode = conn.read_u8().await?;
    match mode {
        MODE_ECHO => loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return conn.shutdown().await;
            }
            conn.write_all(&buf[..n]).await?;
        },
        MODE_SINK => {
            let mut total: u64 = 0;
            loop {
                let n = conn.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            conn.write_all(&total.to_be_bytes()).await?;
            conn.shutdown().await
        }
        other => Err(std::io::Error::other(format!("unknown mode byte {other}"))),
    }
}

/// Starts the upstream process (this executable, `serve-upstream`) and
/// returns it with its address.
pub(crate) fn start(dir: &Path) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    start_this_binary("upstream", "serve-upstream", dir)
}

/// Starts this executable with a hidden `subcommand` that serves on a port
/// from the OS and prints `{"event":"ready","addr":...}`; returns the
/// process and that address. The child exits when its stdin closes.
pub(crate) fn start_this_binary(
    name: &str,
    subcommand: &str,
    dir: &Path,
) -> anyhow::Result<(ChildGuard, SocketAddr)> {
    let exe = std::env::current_exe().context("locating the causeway-bench executable")?;
    let mut cmd = Command::new(exe);
    cmd.arg(subcommand);
    let mut child = ChildGuard::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
    let line = child.ready_line(Duration::from_secs(10))?;
    let ready: serde_json::Value =
        serde_json::from_str(&line).with_context(|| format!("{name}: ready line {line:?}"))?;
    let addr = ready
        .get("addr")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no address in the {name}'s ready line {line:?}"))?;
    Ok((child, addr))
}

/// Resolves when stdin closes: the benchmark that started this process is
/// gone, however it ended.
pub(crate) async fn parent_gone() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}
