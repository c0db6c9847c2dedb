//! Where a local caller's connection goes: a local service (checked by the
//! rules here) or an imported service (through a stream to the peer
//! gateway that exports it, whose own rules decide).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use causeway_trust::SpiffeId;
use tokio::io::{AsyncRead, AsyncWrite, Join, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{Destination, GatewayConfig};
use crate::tunnel::dial::{DialError, PeerDialer};
use crate::tunnel::header::{Protocol, StreamHeader};
use crate::upstream::{LocalUpstreams, Unavailable};

/// Why a local caller's connection could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("{}:{} is neither a local nor an imported service", .0.service, .0.port)]
    NoRoute(Destination),
    #[error("no rule allows {caller} to reach {}:{}", .destination.service, .destination.port)]
    Denied {
        caller: SpiffeId,
        destination: Destination,
    },
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error(transparent)]
    Peer(#[from] DialError),
}

impl OutboundError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoRoute(_) => "no_route",
            Self::Denied { .. } => "denied",
            Self::Unavailable(_) => "unavailable",
            Self::Peer(e) => e.reason(),
        }
    }
}

/// What a call is connected to.
#[derive(Debug)]
pub enum Upstream {
    Local(TcpStream),
    Peer(Join<quinn::RecvStream, quinn::SendStream>),
}

/// A call's metadata, carried to the peer in the stream header.
#[derive(Debug, Clone, Default)]
pub struct CallContext {
    pub request_id: String,
    pub traceparent: Option<String>,
}

/// The routing and connecting for local callers.
#[derive(Debug)]
pub struct Outbound {
    pub config: Arc<GatewayConfig>,
    pub upstreams: LocalUpstreams,
    pub dialer: PeerDialer,
}

impl Outbound {
    /// Connects `caller` to `dest`.
    pub async fn connect(
        &self,
        caller: &SpiffeId,
        dest: &Destination,
        protocol: Protocol,
        ctx: &CallContext,
    ) -> Result<Upstream, OutboundError> {
        if let Some(rr) = self.upstreams.get(dest) {
            if !self.config.authorizes(caller, dest) {
                return Err(OutboundError::Denied {
                    caller: caller.clone(),
                    destination: dest.clone(),
                });
            }
            return Ok(Upstream::Local(
                rr.connect(dest, self.config.limits.connect_timeout).await?,
            ));
        }
        let import = self
            .config
            .imports
            .get(dest)
            .ok_or_else(|| OutboundError::NoRoute(dest.clone()))?;
        let header = StreamHeader {
            service: import.remote.service.clone(),
            port: import.remote.port,
            caller: caller.clone(),
            traceparent: ctx.traceparent.clone(),
            tracestate: None,
            deadline: None,
            request_id: ctx.request_id.clone(),
            protocol,
        };
        let (send, recv) = self.dialer.open(&import.peer, &header).await?;
        Ok(Upstream::Peer(tokio::io::join(recv, send)))
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Local(s) => Pin::new(s).poll_read(cx, buf),
            Self::Peer(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Local(s) => Pin::new(s).poll_write(cx, buf),
            Self::Peer(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Local(s) => Pin::new(s).poll_flush(cx),
            Self::Peer(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Local(s) => Pin::new(s).poll_shutdown(cx),
            Self::Peer(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
