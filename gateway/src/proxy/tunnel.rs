//! HTTP over a tunnel stream, the pieces both directions share: a body read
//! from the stream's frames, a body written to them, the bytes of an
//! upgraded connection, and what a peer's reset code means for the caller.
//! The wire format is in `transport::header` and `transport::frame`.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use crate::body::{BodyError, DeadlinePassed};
use crate::proxy::error::{CallError, Reason};
use crate::transport::frame::{self, FrameError, FrameReader, Next};
use crate::transport::quic::codes;

/// A body read from the frames of a tunnel stream: a request's on the
/// inbound side, a response's on the outbound side. Dropping it before its
/// end stops the peer's sending (STOP_SENDING).
#[derive(Debug)]
pub struct StreamBody {
    reader: FrameReader,
    /// From `content-length`, when the head had one.
    length: Option<u64>,
    done: bool,
}

impl StreamBody {
    pub fn new(reader: FrameReader, headers: &HeaderMap) -> Self {
        let length = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Self {
            reader,
            length,
            done: false,
        }
    }
}

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = ready!(self.reader.poll_next(cx));
        Poll::Ready(match next {
            Ok(Next::Data(b)) => Some(Ok(Frame::data(b))),
            Ok(Next::Trailers(t)) => Some(Ok(Frame::trailers(t))),
            Ok(Next::End) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                // Malformed frames: the peer is told why its stream ends.
                if !matches!(e, FrameError::Read(_) | FrameError::Io(_)) {
                    let _ = self.reader.stream().stop(codes::FRAME_INVALID);
                }
                Some(Err(Box::new(e)))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Why a body could not be written to a stream.
#[derive(Debug, thiserror::Error)]
pub enum SendBodyError {
    /// Reading the body failed: the call's other side went away or broke.
    #[error("reading the body: {0}")]
    Body(BodyError),
    /// The peer stopped reading, or the connection is gone.
    #[error("writing the stream: {0}")]
    Stream(#[from] quinn::WriteError),
}

/// A stream's sending half that is reset (CANCELLED) when dropped before it
/// was finished. A dropped `quinn::SendStream` finishes its stream, which
/// would pass a body cut short (a call abandoned, a task aborted) off as a
/// whole one.
#[derive(Debug)]
pub struct Sending(Option<quinn::SendStream>);

impl Sending {
    pub fn new(stream: quinn::SendStream) -> Self {
        Self(Some(stream))
    }

    /// FIN: this side is complete. A stream the peer already stopped
    /// cannot be finished; there is nothing more to tell it then.
    pub fn finish(&mut self) {
        if let Some(mut s) = self.0.take() {
            let _ = s.finish();
        }
    }

    /// Ends the side with `code` instead of FIN.
    pub fn reset(&mut self, code: quinn::VarInt) {
        if let Some(mut s) = self.0.take() {
            let _ = s.reset(code);
        }
    }

    /// The stream, for whoever ends it next (an upgraded connection's
    /// copy); `None` once finished or reset.
    pub fn take(&mut self) -> Option<quinn::SendStream> {
        self.0.take()
    }

    /// Writes one buffer.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), quinn::WriteError> {
        self.write_chunks(&mut [chunk]).await
    }

    async fn write_chunks(&mut self, chunks: &mut [Bytes]) -> Result<(), quinn::WriteError> {
        match self.0.as_mut() {
            Some(s) => s.write_all_chunks(chunks).await,
            None => Err(quinn::WriteError::ClosedStream),
        }
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        self.reset(codes::CANCELLED);
    }
}

/// Writes `body` as DATA and TRAILERS frames, then FIN. When the body
/// fails, the stream is reset (DEADLINE when the call's deadline cut it,
/// CANCELLED otherwise), so that the other side does not take a cut body
/// for a whole one.
pub async fn send_body<B>(mut body: B, send: &mut Sending) -> Result<(), SendBodyError>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let e: BodyError = e.into();
                send.reset(if e.is::<DeadlinePassed>() {
                    codes::DEADLINE
                } else {
                    codes::CANCELLED
                });
                return Err(SendBodyError::Body(e));
            }
        };
        match frame.into_data() {
            Ok(data) => {
                if !data.is_empty() {
                    let mut chunks = [frame::frame_header(frame::DATA, data.len()), data];
                    send.write_chunks(&mut chunks).await?;
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    send.write_chunks(&mut [frame::trailers(&t)]).await?;
                }
            }
        }
    }
    send.finish();
    Ok(())
}

/// The call's two sides joined once it is upgraded (HTTP/1.1 Upgrade after
/// a 101): the caller's (or the upstream's) connection and the tunnel
/// stream, bytes both ways until both close. `early` are bytes read from
/// the stream with the frames before the 101 was seen.
pub async fn bridge_stream(
    upgraded: OnUpgrade,
    send: quinn::SendStream,
    reader: FrameReader,
) -> std::io::Result<(u64, u64)> {
    let upgraded = upgraded
        .await
        .map_err(|e| std::io::Error::other(format!("upgrade: {e}")))?;
    let mut io = TokioIo::new(upgraded);
    let (recv, early) = reader.into_parts();
    if !early.is_empty() {
        io.write_all(&early).await?;
    }
    let mut stream = tokio::io::join(recv, send);
    let r = tokio::io::copy_bidirectional(&mut io, &mut stream).await;
    debug!("upgraded connection over the tunnel done: {r:?}");
    r
}

/// Two upgraded connections joined (a local hop: caller and upstream).
pub async fn bridge_local(caller: OnUpgrade, upstream: OnUpgrade) -> std::io::Result<(u64, u64)> {
    let up = |e: hyper::Error| std::io::Error::other(format!("upgrade: {e}"));
    let (a, b): (Upgraded, Upgraded) =
        tokio::try_join!(async { caller.await.map_err(up) }, async {
            upstream.await.map_err(up)
        })?;
    let r = tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b)).await;
    debug!("upgraded connection done: {r:?}");
    r
}

/// What a failure to read the peer's answer means for the caller: a reset
/// code is the peer's reason; a lost connection may be retried elsewhere.
pub fn from_frame_error(e: &FrameError) -> CallError {
    match e {
        FrameError::Read(quinn::ReadError::Reset(code)) => from_reset(*code),
        FrameError::Read(quinn::ReadError::ConnectionLost(why)) => CallError::new(
            Reason::PeerConnectionLost,
            format!("the connection to the peer gateway was lost: {why}"),
        ),
        other => CallError::new(Reason::PeerError, format!("the peer's answer: {other}")),
    }
}

/// The caller's view of a peer's reset code.
pub fn from_reset(code: quinn::VarInt) -> CallError {
    let (reason, what) = match code {
        c if c == codes::REFUSED => (Reason::PeerRefused, "the peer gateway refused the call"),
        c if c == codes::UNAVAILABLE => (
            Reason::PeerUnavailable,
            "no endpoint of the service answered at the peer",
        ),
        c if c == codes::DRAINING => (Reason::PeerDraining, "the peer gateway is shutting down"),
        c if c == codes::OVERLOADED => (
            Reason::PeerOverloaded,
            "the peer gateway has as many streams from us as it takes",
        ),
        c if c == codes::HEADER_INVALID => (
            Reason::PeerHeaderInvalid,
            "the peer gateway refused the stream header",
        ),
        c if c == codes::VERSION_UNSUPPORTED => (
            Reason::PeerVersionUnsupported,
            "the peer gateway does not speak this stream header version",
        ),
        c if c == codes::FRAME_INVALID => (
            Reason::PeerError,
            "the peer gateway refused the stream's frames",
        ),
        c if c == codes::DEADLINE => (
            Reason::PeerTimeout,
            "the call's deadline passed at the peer",
        ),
        _ => (Reason::PeerError, "the peer gateway reset the stream"),
    };
    CallError::new(reason, format!("{what} (code {code})"))
}
