//! The tunnel between gateways: one QUIC connection per peer gateway, one
//! bidirectional stream per proxied connection or request, each opened by a
//! [`header::StreamHeader`].

pub mod header;
