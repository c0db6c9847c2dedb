//! # causeway-controller
//!
//! The federation controller of one trust domain: `causeway controller
//! --config FILE`. Several replicas may share one store (etcd); one leads.
//!
//! - [`config`]: the config file, validated at load;
//! - `ca`: the root (created once by the leader, or from files) and the
//!   published bundle; `identity`: the controller's own serving SVID;
//! - `tokens`: one-time join tokens; `issuance`: Join and Renew;
//!   `forgotten`: gateways forgotten by an operator, whose SVIDs are
//!   refused;
//! - `snapshot`: compiling Services and Peerings into the gateways'
//!   `ConfigSnapshot`; `stream`: the config stream with ACK/NACK and
//!   holdings; `leader`: leader-gated writes;
//! - `admin`: the CLI's API on a Unix socket; `health`: `/metrics`,
//!   `/healthz`, `/readyz`;
//! - [`client`]: clients of both APIs; `testing` (feature `testing`).
//!
//! Every replica serves reads, signs CSRs and serves config streams; only
//! the leader writes derived state (root creation, bundle publication,
//! config versions, peer bundle records), each write fenced by its
//! leadership. The store layout is in `keys.rs`.

mod admin;
mod api;
pub mod ca;
pub mod client;
pub mod config;
mod error;
mod federate;
mod federation;
mod follow;
mod forgotten;
mod front;
pub mod gateways;
mod health;
mod identity;
mod issuance;
mod keys;
mod leader;
pub mod metrics;
mod peers;
mod rotation;
mod server;
pub mod snapshot;
mod stored;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod tokens;
mod verify;
mod view;

pub use causeway_exchange::RefreshPolicy;
pub use config::{CaSource, ConfigError, ControllerConfig, StoreConfig};
pub use error::ControllerError;
pub use server::{Running, StartOptions, start};
