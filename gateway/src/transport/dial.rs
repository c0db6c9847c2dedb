//! Dialling peer gateways: one QUIC connection per peer, reused by every
//! stream; on loss, reconnect, trying the peer's gateway addresses in turn;
//! after a failed round, back off before trying again.
//!
//! A connection is no better than the certificates it was authenticated
//! with (ours and the peer's): it takes no new stream once either has
//! expired, so an SVID that was not renewed is refused by the next
//! handshake instead of living on in a connection. A little before that
//! expiry a new handshake is made, which presents the SVIDs renewed
//! meanwhile; if it brings nothing later, the connection is used up to
//! the expiry itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use causeway_trust::tls::SvidSource;
use causeway_trust::verify::RefusalObserver;
use causeway_trust::{Expected, SharedBundles, SpiffeVerifier};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::{GatewayConfig, Limits, Peer};
use crate::reason::Reason;
use crate::transport::quic::{TunnelError, quic_client_config};
use crate::transport::udp;

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
    /// Its label, from the closed set.
    pub fn reason(&self) -> Reason {
        match self {
            Self::UnknownPeer(_) => Reason::UnknownPeer,
            Self::Unreachable { .. } => Reason::PeerUnreachable,
            Self::BackingOff { .. } => Reason::PeerBackoff,
            Self::Stream { .. } => Reason::PeerStream,
        }
    }
}

#[derive(Debug, Default)]
struct SlotState {
    conn: Option<quinn::Connection>,
    /// When `conn` stops taking new streams (Unix ms).
    use_until_ms: i64,
    /// When the certificates `conn` was authenticated with expire: the
    /// first millisecond a verifier refuses the earlier of the two.
    expires_ms: i64,
    /// Index of the gateway address to try first next time.
    next: usize,
    failures: u32,
    not_before: Option<Instant>,
}

impl SlotState {
    /// Records the expiry of a new connection's certificates. It takes
    /// streams until a little before it when it is later than the last
    /// connection's (a new handshake then may bring later ones still), up
    /// to the expiry itself when not (a new handshake would bring the same).
    fn set_expiry(&mut self, expires_ms: i64, now_ms: i64) {
        let margin = if expires_ms > self.expires_ms {
            ((expires_ms - now_ms) / 10).max(REFRESH_MARGIN_MIN_MS)
        } else {
            0
        };
        self.use_until_ms = expires_ms - margin;
        self.expires_ms = expires_ms;
    }

    /// Goes on with `conn` until its certificates expire.
    fn keep_to_expiry(&mut self, conn: quinn::Connection) -> quinn::Connection {
        self.use_until_ms = self.expires_ms;
        self.conn = Some(conn.clone());
        conn
    }
}

/// The shortest time before its certificates expire at which a connection
/// is replaced by a new handshake (a tenth of what they have left when it
/// is made, when that is longer).
const REFRESH_MARGIN_MIN_MS: i64 = 1000;

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// When the certificates a connection was authenticated with expire (Unix
/// ms): the earlier of our SVID's `own_not_after` and the peer's leaf's,
/// plus the second a verifier still accepts (`now > not_after` refuses).
pub(crate) fn credentials_expiry_ms(conn: &quinn::Connection, own_not_after: i64) -> i64 {
    let peer = peer_not_after(conn).unwrap_or(own_not_after);
    own_not_after
        .min(peer)
        .saturating_add(1)
        .saturating_mul(1000)
}

/// The `not_after` of the peer's leaf certificate, as verified.
pub(crate) fn peer_not_after(conn: &quinn::Connection) -> Option<i64> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls_pki_types::CertificateDer<'static>>>()
        .ok()?;
    let leaf = certs.first()?;
    causeway_trust::svid::check_leaf(leaf)
        .ok()
        .map(|i| i.not_after)
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

    /// Opens a stream to `peer` (one of `slots`) and writes `header` (an
    /// encoded stream header) on it; a new connection must finish its
    /// handshake within `handshake_timeout`.
    pub async fn open(
        &self,
        slots: &PeerSlots,
        handshake_timeout: Duration,
        peer: &str,
        header: Bytes,
    ) -> Result<(quinn::SendStream, quinn::RecvStream), DialError> {
        let slot = slots
            .get(peer)
            .ok_or_else(|| DialError::UnknownPeer(peer.to_owned()))?;
        // Two tries: the held connection may turn out to be dead.
        for _ in 0..2 {
            let conn = self.connection(peer, slot, handshake_timeout).await?;
            match conn.open_bi().await {
                Ok((mut send, recv)) => {
                    send.write_chunk(header.clone())
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
        // A connection whose credentials are about to expire, kept in case
        // a new one cannot be made.
        let mut expiring = None;
        if let Some(c) = st.conn.take()
            && c.close_reason().is_none()
        {
            let now = unix_ms();
            if now < st.use_until_ms {
                st.conn = Some(c.clone());
                return Ok(c);
            }
            if now < st.expires_ms {
                expiring = Some(c);
            } else {
                info!(
                    peer = name,
                    "the certificates of the connection to the peer expired; connecting anew"
                );
            }
        }
        if let Some(t) = st.not_before {
            let now = Instant::now();
            if now < t {
                if let Some(c) = expiring {
                    return Ok(st.keep_to_expiry(c));
                }
                return Err(DialError::BackingOff {
                    peer: name.to_owned(),
                    wait: t - now,
                });
            }
        }
        let own_not_after = self.svid.svid().info().not_after;
        let n = slot.peer.gateways.len();
        let mut last = String::from("no gateways");
        for i in 0..n {
            let idx = (st.next + i) % n;
            let gw = &slot.peer.gateways[idx];
            match self.connect_one(slot, gw.addr, handshake_timeout).await {
                Ok(conn) => {
                    info!(peer = name, gateway = %gw.id, addr = %gw.addr, "connected to peer gateway");
                    let own = own_not_after.min(self.svid.svid().info().not_after);
                    st.set_expiry(credentials_expiry_ms(&conn, own), unix_ms());
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
        if let Some(c) = expiring {
            warn!(
                peer = name,
                "keeping the connection to the peer until its certificates expire: {last}"
            );
            return Ok(st.keep_to_expiry(c));
        }
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

#[cfg(test)]
mod tests {
    use super::SlotState;

    #[test]
    fn a_connection_is_replaced_before_its_certificates_expire_unless_that_brought_nothing() {
        let mut st = SlotState::default();
        // Certificates with 20 s left: replaced 2 s (a tenth) before.
        st.set_expiry(120_000, 100_000);
        assert_eq!((st.use_until_ms, st.expires_ms), (118_000, 120_000));
        // The new handshake brought the same certificates: used to the end.
        st.set_expiry(120_000, 118_000);
        assert_eq!(st.use_until_ms, 120_000);
        // Renewed ones: replaced early again, at least a second before.
        st.set_expiry(125_000, 120_000);
        assert_eq!(st.use_until_ms, 124_000);
    }
}
