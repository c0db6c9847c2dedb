//! The data path, by direction.
//!
//! ```text
//! outbound: local caller ─► accept (assigned identity or mTLS) ─► tcp: the listener's
//!           destination │ http: route by Host ─► local service (rules here) or import
//!           (a stream to the peer gateway that exports it)
//! inbound:  peer gateway ─► accept (mTLS, a configured peer gateway) ─► per stream:
//!           header ─► checks ─► local service
//! ```
//!
//! - [`outbound`], [`inbound`]: the two directions;
//! - [`local`]: HTTP to a local service's endpoints, shared by both;
//! - [`headers`]: the headers a gateway owns (XFCC, trace, request id);
//! - [`error`]: why a call was not carried, and the answer the caller gets.

pub mod error;
pub mod headers;
pub mod inbound;
pub mod local;
pub mod outbound;
pub mod tunnel;
