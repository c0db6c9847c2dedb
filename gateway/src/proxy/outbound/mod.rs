//! Where a local caller's connection goes: a local service (checked by the
//! rules here) or an imported service (through a stream to the peer
//! gateway that exports it, whose own rules decide).
//!
//! - [`accept`]: local listeners: who is calling (an assigned identity, or
//!   the SVID of an mTLS caller), then TCP or HTTP;
//! - [`tcp`]: a TCP connection to its listener's one destination;
//! - [`http`]: HTTP/1.1 and h2c calls, routed by Host.

pub mod accept;
pub mod http;
mod tcp;

use std::sync::Arc;
use std::time::SystemTime;

use causeway_trust::SpiffeId;
use tokio::io::Join;
use tokio::net::TcpStream;

use crate::config::{Destination, GatewayConfig, Import};
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::proxy::error::{CallError, Reason};
use crate::state::endpoints::Unavailable;
use crate::state::{Live, Origin, Route, RouteError, Snapshot};
use crate::transport::dial::{DialError, PeerDialer, PeerSlots};
use crate::transport::header::{Protocol, RequestHead, StreamHeader};
use crate::transport::quic::TunnelError;

/// Why a local caller's connection could not be carried.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
    #[error(transparent)]
    Peer(#[from] DialError),
}

impl OutboundError {
    pub fn reason(&self) -> Reason {
        match self {
            Self::Route(e) => e.reason(),
            Self::Unavailable(_) => Reason::Unavailable,
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
    pub tracestate: Option<String>,
    pub deadline: Option<SystemTime>,
}

/// The routing and connecting for local callers.
#[derive(Debug)]
pub struct Outbound {
    /// The config in effect and what hangs on it (endpoints, peer slots).
    pub live: Arc<Live>,
    pub dialer: PeerDialer,
    pub metrics: Arc<Metrics>,
    pub drain: Drain,
}

impl Outbound {
    /// Routing for `config`, dialling peers with `dialer`, with its own
    /// metrics and drain.
    pub fn new(config: Arc<GatewayConfig>, dialer: PeerDialer) -> Result<Self, TunnelError> {
        let slots = dialer.slots(&config, &PeerSlots::new())?;
        let live = Live::new(Snapshot::first(config, slots, Origin::default()));
        Ok(Self::with_parts(live, dialer, Arc::default(), Drain::new()))
    }

    pub fn with_parts(
        live: Arc<Live>,
        dialer: PeerDialer,
        metrics: Arc<Metrics>,
        drain: Drain,
    ) -> Self {
        Self {
            live,
            dialer,
            metrics,
            drain,
        }
    }

    /// The header of a stream to the peer that exports `import`.
    fn header(
        import: &Import,
        caller: &SpiffeId,
        request: Option<RequestHead>,
        ctx: &CallContext,
    ) -> StreamHeader {
        StreamHeader {
            service: import.remote.service.clone(),
            port: import.remote.port,
            caller: caller.clone(),
            traceparent: ctx.traceparent.clone(),
            tracestate: ctx.tracestate.clone(),
            deadline: ctx.deadline,
            request_id: ctx.request_id.clone(),
            protocol: if request.is_some() {
                Protocol::Http
            } else {
                Protocol::Tcp
            },
            request,
        }
    }

    /// Opens a stream to the peer that exports `import` (as of `snap`),
    /// for `caller`'s TCP connection, and writes its header.
    pub async fn open(
        &self,
        snap: &Snapshot,
        import: &Import,
        caller: &SpiffeId,
        ctx: &CallContext,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), DialError> {
        let header = Self::header(import, caller, None, ctx).encode();
        let timeout = snap.config.limits.handshake_timeout;
        self.dialer
            .open(&snap.peers, timeout, &import.peer, header.into())
            .await
    }

    /// Opens a stream for an HTTP call and writes its header, which carries
    /// the request's head: refused (431) when the head is over this
    /// gateway's `max_header_bytes`, which its peers are expected to share.
    pub async fn open_http(
        &self,
        snap: &Snapshot,
        import: &Import,
        caller: &SpiffeId,
        head: RequestHead,
        ctx: &CallContext,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), CallError> {
        let header = Self::header(import, caller, Some(head), ctx).encode();
        let max = snap
            .config
            .limits
            .max_header_bytes
            .min(usize::from(u16::MAX));
        let len = StreamHeader::body_len(&header);
        if len > max {
            return Err(CallError::new(
                Reason::HeadTooLarge,
                format!(
                    "the request's head takes {len} bytes in the stream header; at most {max} are carried"
                ),
            ));
        }
        let timeout = snap.config.limits.handshake_timeout;
        Ok(self
            .dialer
            .open(&snap.peers, timeout, &import.peer, header.into())
            .await?)
    }

    /// Connects `caller` to `dest` for a TCP call, by the config of `snap`.
    pub async fn connect(
        &self,
        snap: &Snapshot,
        caller: &SpiffeId,
        dest: &Destination,
        ctx: &CallContext,
    ) -> Result<Upstream, OutboundError> {
        match snap.route(caller, dest)? {
            Route::Local(rr) => Ok(Upstream::Local(
                rr.connect(dest, snap.config.limits.connect_timeout).await?,
            )),
            Route::Import(import) => {
                let (send, recv) = self.open(snap, import, caller, ctx).await?;
                Ok(Upstream::Peer(tokio::io::join(recv, send)))
            }
        }
    }
}

impl From<OutboundError> for CallError {
    fn from(e: OutboundError) -> Self {
        match e {
            OutboundError::Route(r) => CallError::from(r),
            OutboundError::Unavailable(u) => CallError::new(Reason::Unavailable, u.to_string()),
            OutboundError::Peer(d) => CallError::from(d),
        }
    }
}

impl From<RouteError> for CallError {
    fn from(e: RouteError) -> Self {
        CallError::new(e.reason(), e.to_string())
    }
}

impl From<DialError> for CallError {
    fn from(e: DialError) -> Self {
        CallError::new(e.reason(), e.to_string())
    }
}

crate::io::delegate_io!(Upstream { Local, Peer });
