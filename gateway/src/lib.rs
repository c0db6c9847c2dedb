//! # causeway-gateway
//!
//! Causeway's data plane. A gateway takes calls from in-cluster callers on
//! local listeners and from peer gateways of other trust domains on a QUIC
//! listener, checks them, and carries them to local endpoints or to a peer
//! gateway.
//!
//! - [`admin`]: the admin listener: /metrics, /healthz, /readyz, /config_dump;
//! - [`apply`]: a new config put in effect in a running gateway (SIGHUP,
//!   the controller), or refused with the fields that cannot change live;
//! - [`config`]: the validated config model, from YAML or the control plane;
//! - [`control`]: the control client of a gateway run by a controller:
//!   join, SVID renewal, the config stream, the last good config on disk;
//! - [`drain`]: open calls counted, so that a shutdown waits for them;
//! - [`http`]: HTTP calls: routing by Host, the headers a gateway owns,
//!   pooled upstream clients, HTTP over tunnel streams, the answers a
//!   gateway gives itself (403/404/502/503/504);
//! - [`listener`]: local listeners (TCP or HTTP; assigned or mTLS callers);
//! - [`live`]: the one owner of the config in effect: an atomically swapped
//!   snapshot of everything a call reads (config, endpoints, peer slots);
//! - [`metrics`]: every metric, in a registry passed in;
//! - [`outbound`]: routing a local caller to a local or imported service;
//! - [`reload`]: the owner of the live SVID and bundles: file reload, expiry
//!   warnings;
//! - [`runtime`]: a running gateway: credentials, listeners, tasks, drain;
//! - [`service`]: service names, as configs and stream headers carry them;
//! - [`tunnel`]: the stream header that opens every proxied stream between
//!   gateways (wire format in docs/wire-format.md), QUIC configs, the inbound
//!   checks and the inbound stream server;
//! - [`upstream`]: local endpoints, round robin over the healthy ones with a
//!   connect timeout.

pub mod admin;
pub mod apply;
pub mod config;
pub mod control;
pub mod drain;
pub mod http;
mod io;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod outbound;
pub mod reload;
pub mod runtime;
pub mod service;
pub mod tunnel;
pub mod upstream;
