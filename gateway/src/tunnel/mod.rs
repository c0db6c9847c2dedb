//! The tunnel between gateways: one QUIC connection per peer gateway, one
//! bidirectional stream per proxied connection or request, each opened by a
//! [`header::StreamHeader`] and checked by [`inbound::check`].

pub mod dial;
pub mod header;
pub mod inbound;
pub mod quic;
pub mod serve;
pub mod udp;
