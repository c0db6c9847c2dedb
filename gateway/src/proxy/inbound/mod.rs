//! Calls from peer gateways: each stream of a peer's QUIC connection is
//! read, checked and carried on its own; a bad stream is reset and the
//! others go on.
//!
//! ```text
//! accept connection (mTLS) ─► accept stream ─► read header (bounded in
//! size and time) ─► check (peer, caller, identity map, service, rules)
//!   ─► tcp:  connect a local endpoint, copy both ways
//!   ─► http: the request to a local endpoint, the response back
//! ```

pub mod accept;
pub mod check;
mod http;
mod tcp;

pub use accept::{Inbound, StreamError};
pub use check::{Admitted, Refusal, check};
