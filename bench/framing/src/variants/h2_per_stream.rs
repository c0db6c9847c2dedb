//! `h2-per-stream`, today's design: per call a fresh bidirectional stream
//! carrying the stream header (prefix + protobuf) and then a whole HTTP/2
//! connection (preface, SETTINGS both ways, a hyper connection task on each
//! side) for one request.

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use http_body_util::Empty;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;

use crate::call::{self, CALLER_ID, PORT, SERVICE, TRACEPARENT, TRACESTATE};
use crate::wire::{self, MAX_HEAD_LEN, PREFIX_LEN, STREAM_HEADER_MAGIC, StreamHeader};

pub(crate) async fn call(conn: &quinn::Connection, caller: usize, seq: u64) -> anyhow::Result<()> {
    let request_id = call::request_id(caller, seq);
    let mut blob = BytesMut::new();
    wire::put_prefixed(
        &mut blob,
        STREAM_HEADER_MAGIC,
        &stream_header(request_id.clone()),
    )?;
    let (mut send, recv) = conn.open_bi().await.context("open_bi")?;
    send.write_all(&blob)
        .await
        .context("writing the stream header")?;
    let io = TokioIo::new(tokio::io::join(recv, send));
    let (mut sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await
        .context("HTTP/2 handshake")?;
    tokio::spawn(async move {
        // Ends once the response is read and the sender dropped.
        let _ = connection.await;
    });
    let req = call::request(&request_id, Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await.context("HTTP/2 request")?;
    drop(sender);
    call::check_response(resp, &request_id).await
}

/// Today's stream header of a call, as the HTTP path fills it in.
fn stream_header(request_id: String) -> StreamHeader {
    StreamHeader {
        service: SERVICE.to_owned(),
        port: PORT.into(),
        caller_id: CALLER_ID.to_owned(),
        traceparent: TRACEPARENT.to_owned(),
        tracestate: TRACESTATE.to_owned(),
        deadline_unix_ms: call::deadline_unix_ms(),
        request_id,
        protocol: wire::PROTOCOL_HTTP2,
    }
}

/// Bytes of the prefix + stream header blob of a call.
pub(crate) fn header_bytes() -> usize {
    PREFIX_LEN + stream_header(call::request_id(1, 1)).encoded_len()
}

pub(crate) async fn serve_stream(
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> anyhow::Result<()> {
    let mut prefix = [0u8; PREFIX_LEN];
    recv.read_exact(&mut prefix)
        .await
        .context("reading the stream header prefix")?;
    if prefix[..2] != STREAM_HEADER_MAGIC || prefix[2] != wire::VERSION {
        bail!("bad stream header prefix {prefix:02x?}");
    }
    let len = usize::from(u16::from_be_bytes([prefix[3], prefix[4]]));
    if len == 0 || len > MAX_HEAD_LEN {
        bail!("stream header of {len} bytes");
    }
    let mut buf = vec![0u8; len];
    recv.read_exact(&mut buf)
        .await
        .context("reading the stream header")?;
    let header = StreamHeader::decode(&buf[..]).context("decoding the stream header")?;
    if header.service.is_empty()
        || !header.caller_id.starts_with("spiffe://")
        || header.request_id.is_empty()
        || header.request_id.len() > 128
        || header.protocol != wire::PROTOCOL_HTTP2
    {
        bail!("invalid stream header {header:?}");
    }
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_concurrent_streams(1)
        .serve_connection(
            TokioIo::new(tokio::io::join(recv, send)),
            service_fn(call::handle),
        )
        .await
        .context("serving the stream's HTTP/2 connection")
}
