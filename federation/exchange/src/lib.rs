//! # causeway-exchange
//!
//! How trust domains learn each other's roots after the first bundle, which
//! comes out of band (`causeway bundle export` on one side, referenced by
//! the peering file on the other):
//!
//! - [`endpoint`]: a SPIFFE bundle endpoint with the `https_spiffe`
//!   profile. It serves the trust domain's current bundle as the standard
//!   JSON document (with `spiffe_sequence` and `spiffe_refresh_hint`) over
//!   TLS, presenting an X.509-SVID of the domain, so that SPIRE servers and
//!   other SPIFFE implementations can federate with Causeway.
//! - [`fetch`]: the client side. It fetches a peer's bundle from the peer's
//!   endpoint, authenticating the endpoint with the bundle it already holds
//!   for that peer and the endpoint's configured SPIFFE ID, and refuses a
//!   document for another trust domain or one older than the one held.
//! - [`refresh`]: the loop that keeps a peer's bundle current, at the
//!   peer's refresh hint, with backoff on failure, never replacing the last
//!   good bundle with anything that did not verify.

pub mod endpoint;
pub mod fetch;
pub mod refresh;

pub use endpoint::{BundleEndpoint, PublishedBundle};
pub use fetch::{FetchError, fetch_bundle};
pub use refresh::{RefreshPolicy, Refresher};
