//! # causeway-trust
//!
//! Causeway's trust model, with no network, store or RPC in it:
//!
//! - [`id`]: SPIFFE IDs and trust domains, parsed by the SPIFFE ID spec;
//! - [`svid`]: the X.509-SVID leaf rules and the SVID credential;
//! - [`ca`]: a trust domain's CA (root, intermediate, issuance from CSRs);
//! - [`bundle`]: trust bundles in the SPIFFE bundle format and PEM;
//! - [`verify`]: peer verification against the bundles, typed refusals, and
//!   the rustls verifier built on it;
//! - [`tls`]: the one crypto provider and mTLS configs with swappable SVIDs;
//! - [`files`]: the on-disk layout of a CA directory (PKI as code).
//!
//! Everything that comes from a file or the network is parsed into these
//! types once, with an error that says what is wrong; the rest of Causeway
//! trusts them.

pub mod bundle;
pub mod ca;
pub mod files;
pub mod hash;
pub mod id;
pub mod pem;
pub mod pinned;
pub mod svid;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod verify;

pub use bundle::{BundleError, TrustBundle};
pub use ca::{Authority, Ca, CaError, IssuedSvid, Validity};
pub use id::{IdError, SpiffeId, TrustDomain};
pub use svid::{ShapeError, Svid, SvidInfo};
pub use verify::{BundleSet, Expected, PeerRole, SharedBundles, SpiffeVerifier, VerifyError};
