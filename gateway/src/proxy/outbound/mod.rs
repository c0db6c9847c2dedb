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
use crate::proxy::error::CallError;
use crate::state::endpoints::Unavailable;
use crate::state::{Live, Origin, Route, RouteError, Snapshot};
use crate::transport::dial::{DialError, PeerDialer, PeerSlots};
use crate::transport::header::{Protocol, StreamHeader};
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
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Route(e) => e.reason(),
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

    /// Opens a stream to the peer that exports `import` (as of `snap`),
    /// for `caller`.
    pub async fn open(
        &self,
        snap: &Snapshot,
        import: &Import,
        caller: &SpiffeId,
        protocol: Protocol,
        ctx: &CallContext,
    ) -> Result<Join<quinn::RecvStream, quinn::SendStream>, DialError> {
        let header = StreamHeader {
            service: import.remote.service.clone(),
            port: import.remote.port,
            caller: caller.clone(),
            traceparent: ctx.traceparent.clone(),
            tracestate: ctx.tracestate.clone(),
            deadline: ctx.deadline,
            request_id: ctx.request_id.clone(),
            protocol,
        };
        let timeout = snap.config.limits.handshake_timeout;
        let (send, recv) = self
            .dialer
            .open(&snap.peers, timeout, &import.peer, &header)
            .await?;
        Ok(tokio::io::join(recv, send))
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
            Route::Import(import) => Ok(Upstream::Peer(
                self.open(snap, import, caller, Protocol::Tcp, ctx).await?,
            )),
        }
    }
}

impl From<OutboundError> for CallError {
    fn from(e: OutboundError) -> Self {
        match e {
            OutboundError::Route(r) => CallError::from(r),
            OutboundError::Unavailable(u) => CallError::Unavailable {
                reason: "unavailable",
                detail: u.to_string(),
            },
            OutboundError::Peer(d) => CallError::from(d),
        }
    }
}

impl From<DialError> for CallError {
    fn from(e: DialError) -> Self {
        CallError::Unavailable {
            reason: e.reason(),
            detail: e.to_string(),
        }
    }
}

crate::io::delegate_io!(Upstream { Local, Peer });
