//! `native`: per call a fresh bidirectional stream; the request is one
//! buffer (5-byte prefix + protobuf head) and a FIN, the response one
//! RESPONSE frame and one DATA frame in one write and a FIN. No HTTP
//! library on either side: fields are checked and used as bytes.

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use prost::Message as _;

use crate::call::{
    self, AUTHORITY, BODY, CALLER_ID, PATH, PLAIN_HEADERS, PORT, SERVICE, TRACEPARENT,
};
use crate::wire::{
    self, FRAME_DATA, FRAME_RESPONSE, Field, Frame, FrameReader, MAGIC, MAX_FIELDS, RequestHead,
    ResponseHead, Trailers,
};

pub(crate) async fn call(conn: &quinn::Connection, caller: usize, seq: u64) -> anyhow::Result<()> {
    let request_id = call::request_id(caller, seq);
    let head = request_head(request_id.clone());
    let mut buf = BytesMut::new();
    wire::put_prefixed(&mut buf, MAGIC, &head)?;
    let (mut send, recv) = conn.open_bi().await.context("open_bi")?;
    send.write_chunk(buf.freeze())
        .await
        .context("writing the request")?;
    send.finish().context("finishing the request")?;

    let mut reader = FrameReader::new(recv);
    let Some(Frame::Response(head)) = reader.next_frame().await? else {
        bail!("the response does not start with a RESPONSE frame");
    };
    let head = ResponseHead::decode(head).context("response head")?;
    if head.status != 200 {
        bail!("status {}", head.status);
    }
    match head.headers.iter().find(|f| f.name == "x-request-id") {
        Some(f) if f.value == request_id.as_bytes() => {}
        other => bail!("x-request-id {other:?}, sent {request_id}"),
    }
    let len = drain_body(&mut reader).await?;
    call::check_body_len(len)
}

/// The head of a call.
fn request_head(request_id: String) -> RequestHead {
    RequestHead {
        method: "GET".to_owned(),
        authority: AUTHORITY.to_owned(),
        path: PATH.to_owned(),
        headers: PLAIN_HEADERS
            .iter()
            .map(|(n, v)| Field {
                name: Bytes::from_static(n.as_bytes()),
                value: Bytes::from_static(v.as_bytes()),
            })
            .collect(),
        service: SERVICE.to_owned(),
        port: PORT.into(),
        caller_id: CALLER_ID.to_owned(),
        traceparent: TRACEPARENT.to_owned(),
        request_id,
        deadline_unix_ms: call::deadline_unix_ms(),
    }
}

/// Bytes of the request buffer of a call (prefix + head).
pub(crate) fn request_bytes() -> usize {
    wire::PREFIX_LEN + request_head(call::request_id(1, 1)).encoded_len()
}

/// Reads DATA frames and optional TRAILERS up to the FIN: the body's length.
async fn drain_body(reader: &mut FrameReader) -> anyhow::Result<usize> {
    let mut len = 0;
    loop {
        match reader.next_frame().await? {
            None => return Ok(len),
            Some(Frame::Data(b)) => len += b.len(),
            Some(Frame::Trailers(t)) => {
                let t = Trailers::decode(t).context("trailers")?;
                if t.headers.len() > MAX_FIELDS {
                    bail!("{} trailer fields", t.headers.len());
                }
                if reader.next_frame().await?.is_some() {
                    bail!("a frame after TRAILERS");
                }
                return Ok(len);
            }
            Some(Frame::Response(_)) => bail!("RESPONSE frame inside a body"),
        }
    }
}

/// The checks a receiving gateway makes on a request head before using it.
pub(crate) fn validate(head: &RequestHead) -> anyhow::Result<()> {
    if head.method.is_empty() || head.method.len() > 16 {
        bail!("method {:?}", head.method);
    }
    if !head.path.starts_with('/') {
        bail!("path {:?}", head.path);
    }
    if head.authority.is_empty() || head.service.is_empty() || head.port > 65_535 {
        bail!(
            "destination {:?} {:?}:{}",
            head.authority,
            head.service,
            head.port
        );
    }
    if !head.caller_id.starts_with("spiffe://") {
        bail!("caller {:?}", head.caller_id);
    }
    if head.request_id.is_empty() || head.request_id.len() > 128 {
        bail!("request id of {} bytes", head.request_id.len());
    }
    if head.headers.len() > MAX_FIELDS {
        bail!("{} header fields", head.headers.len());
    }
    Ok(())
}

pub(crate) async fn serve_stream(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> anyhow::Result<()> {
    let mut reader = FrameReader::new(recv);
    let head = reader.read_prefixed(MAGIC).await?;
    let head = RequestHead::decode(head).context("request head")?;
    validate(&head)?;
    drain_body(&mut reader).await?;

    let resp = ResponseHead {
        status: 200,
        headers: vec![
            field("content-type", "application/json"),
            field("content-length", "64"),
            field("cache-control", "no-store"),
            field("server", "causeway-bench"),
            Field {
                name: Bytes::from_static(b"x-request-id"),
                value: Bytes::from(head.request_id),
            },
        ],
    };
    let mut buf = BytesMut::with_capacity(resp.encoded_len() + 8);
    wire::put_message_frame(&mut buf, FRAME_RESPONSE, &resp);
    wire::put_frame_header(&mut buf, FRAME_DATA, BODY.len());
    send.write_all_chunks(&mut [buf.freeze(), BODY.clone()])
        .await
        .context("writing the response")?;
    send.finish().context("finishing the response")
}

fn field(name: &'static str, value: &'static str) -> Field {
    Field {
        name: Bytes::from_static(name.as_bytes()),
        value: Bytes::from_static(value.as_bytes()),
    }
}
