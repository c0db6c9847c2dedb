//! # causeway-proto
//!
//! Causeway's wire formats, generated at build time from `proto/` with
//! protox, so that no system `protoc` is needed: the tunnel stream header
//! (see docs/wire-format.md) and, as they come, the gRPC APIs between
//! gateways, controllers and the CLI.

/// The header that opens every proxied stream between gateways.
pub mod tunnel {
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/causeway.tunnel.v1.rs"));
    }
}
