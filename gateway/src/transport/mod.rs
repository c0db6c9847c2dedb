//! The tunnel between gateways: one QUIC connection per peer gateway, one
//! bidirectional stream per proxied connection or HTTP call, each opened by
//! a [`header::StreamHeader`] (docs/wire-format.md).
//!
//! - [`header`]: the stream header, a trust boundary, checked once;
//! - [`quic`]: QUIC configs (mTLS with SPIFFE verification, ALPN), stream
//!   error codes, the peer listener's endpoint;
//! - [`udp`]: the UDP socket under both QUIC endpoints;
//! - [`dial`]: this gateway's connections to its peers' gateways.

pub mod dial;
pub mod frame;
pub mod header;
pub mod quic;
pub mod udp;
