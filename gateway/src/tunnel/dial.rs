//! Dialling peer gateways: one QUIC connection per peer, reused by every
//! stream; on loss, reconnect, trying the peer's gateway addresses in turn;
//! after a failed round, back off before trying again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use causeway_trust::tls::SvidSource;
use causeway_trust::verify::RefusalObserver;
use causeway_trust::{Expected, SharedBundles, SpiffeVerifier};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{GatewayConfig, Limits, Peer};
use crate::tunnel::header::StreamHeader;
use crate::tunnel::quic::{TunnelError, quic_client_config};
use crate::tunnel::udp;

const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Why a stream to a peer could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("no peer named {0:?}")]
    UnknownPeer(String),
    #[error("no gateway of peer {peer:?} answered (last: {last})")]
    Unreachable { peer: String, last: String },
    #[error("peer {peer:?} is in backoff after failures; next try in {wait:?}")]
    BackingOff { peer: String, wait: Duration },
    #[error("opening a stream to peer {peer:?}: {detail}")]
    Stream { peer: String, detail: String },
}

impl DialError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownPeer(_) => "unknown_peer",
            Self::Unreachable { .. } => "peer_unreachable",
            Self::BackingOff { .. } => "peer_backoff",
            Self::Stream { .. } => "peer_stream",
        }
    }
}

#[derive(Debug, Default)]
struct SlotState {
    conn: Option<quinn::Connection>,
    /// Index of the gateway address to try first next time.
    next: usize,
    failures: u32,
    not_before: Option<Instant>,
}

/// One peer's dialling state: its gateways, a client config that accepts
/// only their IDs, and the connection in use. A config that changes the
/// peer gets a new slot (new calls connect anew, verifying the new IDs);
/// the old slot's connection lives on while its streams do.
#[derive(Debug)]
pub struct Slot {
    peer: Peer,
    /// The QUIC transport limits `client` was built with.
    transport: (Duration, u32),
    client: quinn::ClientConfig,
    state: Mutex<SlotState>,
}

/// The dialling state of every configured peer, by peer name: part of the
/// config snapshot in effect.
pub type PeerSlots = BTreeMap<String, Arc<Slot>>;

/// The connections from this gateway to its peers' gateways: one client
/// endpoint, and what a new slot's TLS config needs.
pub struct PeerDialer {
    endpoint: quinn::Endpoint,
    svid: SvidSource,
    bundles: SharedBundles,
    observer: Option<RefusalObserver>,
}

impl std::fmt::Debug for PeerDialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerDialer")
            .field("endpoint", &self.endpoint)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

fn transport_of(limits: &Limits) -> (Duration, u32) {
    (limits.idle_timeout, limits.max_streams_per_connection)
}

impl PeerDialer {
    /// One client endpoint on `bind` (port 0 for any); slots verify peers
    /// with `bundles` and present `svid`.
    pub fn new(
        svid: &SvidSource,
        bundles: &SharedBundles,
        observer: Option<RefusalObserver>,
        bind: SocketAddr,
    ) -> Result<Self, TunnelError> {
        let endpoint = std::net::UdpSocket::bind(bind)
            .and_then(|socket| udp::endpoint(socket, None))
            .map_err(|source| TunnelError::Bind { addr: bind, source })?;
        Ok(Self {
            endpoint,
            svid: svid.clone(),
            bundles: bundles.clone(),
            observer,
        })
    }

    /// The slots of `config`'s peers. A peer unchanged since `prev` (same
    /// gateways, same QUIC limits) keeps its slot and its connection.
    pub fn slots(
        &self,
        config: &GatewayConfig,
        prev: &PeerSlots,
    ) -> Result<PeerSlots, TunnelError> {
        let transport = transport_of(&config.limits);
        let mut slots = BTreeMap::new();
        for (name, peer) in &config.peers {
            if let Some(old) = prev.get(name)
                && old.peer == *peer
                && old.transport == transport
            {
                slots.insert(name.clone(), old.clone());
                continue;
            }
            let mut verifier = SpiffeVerifier::new(
                self.bundles.clone(),
                Expected::ids(peer.gateways.iter().map(|g| g.id.clone())),
            );
            if let Some(o) = &self.observer {
                verifier = verifier.with_observer(o.clone());
            }
            let client = quic_client_config(&self.svid, Arc::new(verifier), &config.limits)?;
            slots.insert(
                name.clone(),
                Arc::new(Slot {
                    peer: peer.clone(),
                    transport,
                    client,
                    state: Mutex::new(SlotState::default()),
                }),
            );
        }
        Ok(slots)
    }

    /// Opens a stream to `peer` (one of `slots`) and writes `header` on it;
    /// a new connection must finish its handshake within
    /// `handshake_timeout`.
    pub async fn open(
        &self,
        slots: &PeerSlots,
        handshake_timeout: Duration,
        peer: &str,
        header: &StreamHeader,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), DialError> {
        let slot = slots
            .get(peer)
            .ok_or_else(|| DialError::UnknownPeer(peer.to_owned()))?;
        // Two tries: the held connection may turn out to be dead.
        for _ in 0..2 {
            let conn = self.connection(peer, slot, handshake_timeout).await?;
            match conn.open_bi().await {
                Ok((mut send, recv)) => {
                    send.write_all(&header.encode())
                        .await
                        .map_err(|e| DialError::Stream {
                            peer: peer.to_owned(),
                            detail: e.to_string(),
                        })?;
                    return Ok((send, recv));
                }
                Err(e) => {
                    warn!(peer, "connection to peer lost: {e}");
                    slot.state.lock().await.conn = None;
                }
            }
        }
        Err(DialError::Stream {
            peer: peer.to_owned(),
            detail: "connection lost twice".into(),
        })
    }

    /// The live connection to a peer, connecting if there is none.
    async fn connection(
        &self,
        name: &str,
        slot: &Slot,
        handshake_timeout: Duration,
    ) -> Result<quinn::Connection, DialError> {
        let mut st = slot.state.lock().await;
        if let Some(c) = &st.conn
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        if let Some(t) = st.not_before {
            let now = Instant::now();
            if now < t {
                return Err(DialError::BackingOff {
                    peer: name.to_owned(),
                    wait: t - now,
                });
            }
        }
        let n = slot.peer.gateways.len();
        let mut last = String::from("no gateways");
        for i in 0..n {
            let idx = (st.next + i) % n;
            let gw = &slot.peer.gateways[idx];
            match self.connect_one(slot, gw.addr, handshake_timeout).await {
                Ok(conn) => {
                    info!(peer = name, gateway = %gw.id, addr = %gw.addr, "connected to peer gateway");
                    st.conn = Some(conn.clone());
                    st.next = idx;
                    st.failures = 0;
                    st.not_before = None;
                    return Ok(conn);
                }
                Err(e) => {
                    warn!(peer = name, gateway = %gw.id, addr = %gw.addr, "peer gateway unreachable: {e}");
                    last = format!("{}: {e}", gw.addr);
                }
            }
        }
        st.failures = st.failures.saturating_add(1);
        let backoff = BACKOFF_START
            .saturating_mul(1 << st.failures.min(8))
            .min(BACKOFF_MAX);
        st.not_before = Some(Instant::now() + backoff);
        st.next = (st.next + 1) % n.max(1);
        Err(DialError::Unreachable {
            peer: name.to_owned(),
            last,
        })
    }

    async fn connect_one(
        &self,
        slot: &Slot,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<quinn::Connection, String> {
        let connecting = self
            .endpoint
            .connect_with(slot.client.clone(), addr, "peer.gateway.causeway.invalid")
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(timeout, connecting).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no handshake within {timeout:?}")),
        }
    }
}
