//! # causeway-proto
//!
//! Causeway's wire formats, generated at build time from `proto/` with
//! protox, so that no system `protoc` is needed: the tunnel stream header
//! (see docs/wire-format.md) and the gRPC APIs between gateways,
//! controllers and the CLI. With the `testing` feature, also a small gRPC
//! service with every call kind, for end-to-end tests.

/// The header that opens every proxied stream between gateways.
pub mod tunnel {
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/causeway.tunnel.v1.rs"));
    }
}

/// The controller's APIs: for gateways (join, renew, config stream) and for
/// the CLI (apply, peers, tokens, bundles).
pub mod controller {
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/causeway.controller.v1.rs"));
    }
}

/// Between the controllers of peered trust domains: bundle and export
/// announcements, and what each holds of the other.
pub mod federation {
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/causeway.federation.v1.rs"));
    }
}

/// A gRPC service with one method of each call kind, for end-to-end tests
/// of the gateway's HTTP/2 path (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing {
    pub mod v1 {
        #![allow(missing_docs, unreachable_pub, clippy::all)]
        include!(concat!(env!("OUT_DIR"), "/causeway.testing.v1.rs"));
    }
}
