//! `native-hyper`: the `native` framing with the `http` types on both
//! ends, as a real gateway would use it. The client turns an
//! `http::Request` into the head and streams its body as frames; the
//! server turns the head into an `http::Request` whose body is a
//! [`FrameBody`], hands it to the same handler `h2-per-stream` uses, and
//! streams the `http::Response` back as frames. The client reads the
//! response as an `http::Response<FrameBody>`.

use std::pin::Pin;
use std::task::Poll;

use anyhow::{Context as _, anyhow, bail};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt as _, Empty};
use prost::Message as _;

use crate::call::{self, PORT, SERVICE, TRACEPARENT_H, X_CALLER, X_REQUEST_ID};
use crate::variants::native::validate;
use crate::wire::{
    self, FRAME_DATA, FRAME_RESPONSE, FRAME_TRAILERS, Frame, FrameBody, FrameReader, MAGIC,
    MAX_DATA_LEN, RequestHead, ResponseHead, Trailers,
};

/// The caller's identity, as the server hands it to the handler.
#[derive(Debug, Clone)]
#[expect(
    dead_code,
    reason = "handed on as a gateway would; the benchmark's handler does not read it"
)]
pub(crate) struct Caller(pub(crate) String);

/// The call's deadline (ms since the Unix epoch), likewise.
#[derive(Debug, Clone, Copy)]
#[expect(
    dead_code,
    reason = "handed on as a gateway would; the benchmark's handler does not read it"
)]
pub(crate) struct Deadline(pub(crate) u64);

pub(crate) async fn call(conn: &quinn::Connection, caller: usize, seq: u64) -> anyhow::Result<()> {
    let request_id = call::request_id(caller, seq);
    let req = call::request(&request_id, Empty::<Bytes>::new())?;
    let (mut send, recv) = conn.open_bi().await.context("open_bi")?;
    send_request(&mut send, req).await?;
    let resp = recv_response(recv).await?;
    call::check_response(resp, &request_id).await
}

/// Removes a header and returns its value as a string ("" when absent).
fn take(headers: &mut HeaderMap, name: &HeaderName) -> anyhow::Result<String> {
    match headers.remove(name) {
        None => Ok(String::new()),
        Some(v) => Ok(v.to_str().with_context(|| format!("{name}"))?.to_owned()),
    }
}

/// The sending gateway: the local caller's request as a head and frames.
/// The trace context, request id and caller identity move from headers
/// into fields of their own.
async fn send_request<B>(send: &mut quinn::SendStream, req: Request<B>) -> anyhow::Result<()>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let (mut parts, body) = req.into_parts();
    let traceparent = take(&mut parts.headers, &TRACEPARENT_H)?;
    let request_id = take(&mut parts.headers, &X_REQUEST_ID)?;
    let caller_id = take(&mut parts.headers, &X_CALLER)?;
    let authority = parts
        .uri
        .authority()
        .ok_or_else(|| anyhow!("the request has no authority"))?
        .as_str()
        .to_owned();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let head = RequestHead {
        method: parts.method.as_str().to_owned(),
        authority,
        path,
        headers: wire::from_header_map(&parts.headers),
        service: SERVICE.to_owned(),
        port: PORT.into(),
        caller_id,
        traceparent,
        request_id,
        deadline_unix_ms: call::deadline_unix_ms(),
    };
    let mut buf = BytesMut::new();
    wire::put_prefixed(&mut buf, MAGIC, &head)?;
    send_body(send, buf, body).await
}

/// The client's view of the response: head decoded into `http` types,
/// body still on the stream.
async fn recv_response(recv: quinn::RecvStream) -> anyhow::Result<Response<FrameBody>> {
    let mut reader = FrameReader::new(recv);
    let Some(Frame::Response(head)) = reader.next_frame().await? else {
        bail!("the response does not start with a RESPONSE frame");
    };
    let head = ResponseHead::decode(head).context("response head")?;
    let status = u16::try_from(head.status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| anyhow!("status {}", head.status))?;
    let mut resp = Response::new(FrameBody::new(reader));
    *resp.status_mut() = status;
    *resp.headers_mut() = wire::to_header_map(head.headers)?;
    Ok(resp)
}

/// Writes `head` (bytes already framed) and then `body` as DATA frames and
/// a TRAILERS frame, coalescing everything that is ready into one write,
/// then the FIN.
async fn send_body<B>(send: &mut quinn::SendStream, head: BytesMut, body: B) -> anyhow::Result<()>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let mut body = body;
    let mut framing = head;
    let mut chunks: Vec<Bytes> = Vec::with_capacity(3);
    while !body.is_end_stream() {
        // Take the next frame if it is ready now; otherwise send what is
        // pending before waiting for it.
        let ready =
            std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        let frame = match ready {
            Poll::Ready(f) => f,
            Poll::Pending => {
                flush(send, &mut framing, &mut chunks).await?;
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        match frame.context("body")?.into_data() {
            Ok(mut data) => {
                while !data.is_empty() {
                    let piece = data.split_to(data.len().min(MAX_DATA_LEN));
                    wire::put_frame_header(&mut framing, FRAME_DATA, piece.len());
                    chunks.push(framing.split().freeze());
                    chunks.push(piece);
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let t = Trailers {
                        headers: wire::from_header_map(&trailers),
                    };
                    wire::put_message_frame(&mut framing, FRAME_TRAILERS, &t);
                    break;
                }
            }
        }
    }
    flush(send, &mut framing, &mut chunks).await?;
    send.finish().context("finishing the stream")
}

async fn flush(
    send: &mut quinn::SendStream,
    framing: &mut BytesMut,
    chunks: &mut Vec<Bytes>,
) -> anyhow::Result<()> {
    if !framing.is_empty() {
        chunks.push(framing.split().freeze());
    }
    if !chunks.is_empty() {
        send.write_all_chunks(chunks)
            .await
            .context("writing frames")?;
        chunks.clear();
    }
    Ok(())
}

/// The receiving gateway: head into an `http::Request` over the stream's
/// frames, the shared handler, the `http::Response` back as frames.
pub(crate) async fn serve_stream(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) -> anyhow::Result<()> {
    let mut reader = FrameReader::new(recv);
    let head = reader.read_prefixed(MAGIC).await?;
    let head = RequestHead::decode(head).context("request head")?;
    validate(&head)?;
    let req = to_request(head, FrameBody::new(reader))?;
    let resp = call::handle(req).await?;
    let (parts, body) = resp.into_parts();
    let head = ResponseHead {
        status: parts.status.as_u16().into(),
        headers: wire::from_header_map(&parts.headers),
    };
    let mut buf = BytesMut::with_capacity(head.encoded_len() + 8);
    wire::put_message_frame(&mut buf, FRAME_RESPONSE, &head);
    send_body(&mut send, buf, body).await
}

fn to_request(head: RequestHead, body: FrameBody) -> anyhow::Result<Request<FrameBody>> {
    let uri = Uri::builder()
        .scheme("https")
        .authority(head.authority)
        .path_and_query(head.path)
        .build()
        .context("request target")?;
    let mut req = Request::new(body);
    *req.method_mut() = Method::from_bytes(head.method.as_bytes()).context("method")?;
    *req.uri_mut() = uri;
    let mut headers = wire::to_header_map(head.headers)?;
    if !head.traceparent.is_empty() {
        headers.insert(
            TRACEPARENT_H.clone(),
            HeaderValue::try_from(head.traceparent).context("traceparent")?,
        );
    }
    headers.insert(
        X_REQUEST_ID.clone(),
        HeaderValue::try_from(head.request_id).context("request id")?,
    );
    *req.headers_mut() = headers;
    req.extensions_mut().insert(Caller(head.caller_id));
    req.extensions_mut().insert(Deadline(head.deadline_unix_ms));
    Ok(req)
}
