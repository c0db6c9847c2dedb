//! # causeway-resources
//!
//! The declarative resources a network team applies with
//! `causeway apply -f FILE`, and their admission. Pure: no store, no RPC, no
//! socket; it reads only the files it is given (a resource file and the
//! first bundle a peering names).
//!
//! - [`raw`]: the YAML documents as serde structs (unknown fields refused);
//! - [`resource`]: reading a file of documents into validated resources,
//!   every problem reported at once with file, field and reason;
//! - [`peering`], [`service`]: the two kinds, `Peering` and `Service`;
//! - [`pattern`]: the SPIFFE ID pattern language (`*`, final `**`), matching
//!   and overlap;
//! - [`caller`]: caller selectors (ID, pattern, trust domain, principal);
//! - [`admission`]: whether the store's set plus the incoming resources may
//!   stand together, and the resulting set;
//! - [`plan`]: what an apply would create or update (`--dry-run`);
//! - [`identity_map`]: the compiled identity map a gateway applies on
//!   inbound;
//! - [`names`], [`address`]: names, `host:port` and URLs.
//!
//! A typical apply:
//!
//! ```no_run
//! # use std::path::Path;
//! # use causeway_resources::{admission, plan::Plan, resource, ResourceSet};
//! # fn f(local: &causeway_trust::TrustDomain, stored: ResourceSet) -> Result<(), causeway_resources::ResourceError> {
//! let incoming = resource::load_file(Path::new("peering-west.yaml"))?;
//! let plan = Plan::new(&stored, &incoming);
//! let admitted = admission::admit(local, &stored, incoming)?;
//! // print `plan`; unless --dry-run, write `admitted` to the store.
//! # let _ = (plan, admitted); Ok(()) }
//! ```

pub mod address;
pub mod admission;
pub mod caller;
pub mod identity_map;
pub mod names;
pub mod pattern;
pub mod peering;
pub mod plan;
pub mod problem;
pub mod raw;
pub mod resource;
pub mod service;

pub use admission::{ResourceSet, admit};
pub use identity_map::IdentityMap;
pub use pattern::{IdPattern, PatternError};
pub use peering::Peering;
pub use plan::Plan;
pub use problem::{Origin, Problem, ResourceError};
pub use raw::API_VERSION;
pub use resource::{Entry, Kind, Resource, load_file, parse_str};
pub use service::Service;
