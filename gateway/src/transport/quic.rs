//! QUIC between gateways: quinn with the trust core's mTLS, ALPN
//! `causeway/1`, one connection per peer gateway and one bidirectional
//! stream per proxied connection or request.

use std::sync::Arc;

use causeway_trust::SpiffeVerifier;
use causeway_trust::tls::{SvidSource, TlsError, client_config, server_config};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::config::Limits;

/// The ALPN protocol of the tunnel; a client offering anything else is
/// refused in the handshake.
pub const ALPN: &[u8] = b"causeway/1";

/// Application error codes on streams and connections.
pub mod codes {
    use quinn::VarInt;
    /// The stream header was malformed; only this stream is reset.
    pub const HEADER_INVALID: VarInt = VarInt::from_u32(0x10);
    /// The call was refused (peer, caller or policy); only this stream.
    pub const REFUSED: VarInt = VarInt::from_u32(0x11);
    /// The destination could not be reached.
    pub const UNAVAILABLE: VarInt = VarInt::from_u32(0x12);
    /// The peer already has as many streams open as it may.
    pub const OVERLOADED: VarInt = VarInt::from_u32(0x13);
    /// The stream header's version is not one this gateway speaks.
    pub const VERSION_UNSUPPORTED: VarInt = VarInt::from_u32(0x14);
    /// The call's deadline passed while its response was under way.
    pub const DEADLINE: VarInt = VarInt::from_u32(0x15);
    /// The frames after the header were malformed (HTTP).
    pub const FRAME_INVALID: VarInt = VarInt::from_u32(0x16);
    /// The other side of the call went away (its caller or its upstream).
    pub const CANCELLED: VarInt = VarInt::from_u32(0x17);
    /// The gateway is shutting down.
    pub const DRAINING: VarInt = VarInt::from_u32(0x20);
    /// The peer's certificate expired: the connection it authenticated
    /// ends; a new one needs a valid certificate.
    pub const EXPIRED: VarInt = VarInt::from_u32(0x21);
}

/// Why a tunnel endpoint could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("QUIC needs TLS 1.3 with an initial cipher suite: {0}")]
    Quic(String),
    #[error("cannot bind the QUIC endpoint on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

fn transport(limits: &Limits) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(limits.max_streams_per_connection));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    // An idle timeout that does not fit QUIC's range falls back to quinn's.
    if let Ok(idle) = IdleTimeout::try_from(limits.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    // Keep the connection to a peer alive well inside the idle timeout.
    t.keep_alive_interval(Some(limits.idle_timeout / 3));
    Arc::new(t)
}

/// The server side: peer gateways connect here.
pub fn quic_server_config(
    svid: &SvidSource,
    verifier: Arc<SpiffeVerifier>,
    limits: &Limits,
) -> Result<quinn::ServerConfig, TunnelError> {
    let tls = server_config(svid, verifier, &[ALPN])?;
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| TunnelError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport(limits));
    Ok(config)
}

/// The client side: this gateway dialling a peer gateway.
pub fn quic_client_config(
    svid: &SvidSource,
    verifier: Arc<SpiffeVerifier>,
    limits: &Limits,
) -> Result<quinn::ClientConfig, TunnelError> {
    let tls = client_config(svid, verifier, &[ALPN])?;
    let crypto =
        QuicClientConfig::try_from(Arc::new(tls)).map_err(|e| TunnelError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport(limits));
    Ok(config)
}
