//! # causeway-gateway
//!
//! Causeway's data plane. A gateway takes calls from in-cluster callers on
//! local listeners and from peer gateways of other trust domains on a QUIC
//! listener, checks them, and carries them to local endpoints or to a peer
//! gateway.
//!
//! Modules, each depending only on those above it:
//!
//! - [`service`], [`metrics`], [`drain`]: service names; every metric, in a
//!   registry passed in; open calls counted so that a shutdown waits;
//! - [`config`]: the validated config model, from YAML or the control plane;
//! - [`creds`]: the owner of the live SVID and bundles: loading, file
//!   watch and reload, expiry warnings;
//! - [`transport`]: the tunnel between gateways: the stream header and
//!   the HTTP frames after it (wire format in docs/wire-format.md), QUIC
//!   configs, our UDP socket, dialling peers;
//! - [`state`]: the one owner of the config in effect: an atomically
//!   swapped snapshot of everything a call reads (config, endpoints, peer
//!   slots, HTTP pools), and where a destination is served;
//! - [`proxy`]: the data path, by direction: [`proxy::outbound`] (local
//!   callers, to local services or peers) and [`proxy::inbound`] (peer
//!   gateways' streams, checked, to local services);
//! - [`apply`]: a new config put in effect in a running gateway (SIGHUP,
//!   the controller), or refused with the fields that cannot change live;
//! - [`admin`]: the admin listener: /metrics, /healthz, /readyz,
//!   /config_dump;
//! - [`runtime`]: a running gateway: credentials, listeners, tasks, drain;
//! - [`control`]: the control client of a gateway run by a controller:
//!   join, SVID renewal, the config stream, the last good config on disk;
//! - [`controlled`]: a gateway started and reconfigured by its controller.

pub mod admin;
pub mod apply;
pub mod body;
pub mod config;
pub mod control;
pub mod controlled;
pub mod creds;
pub mod drain;
mod io;
pub mod metrics;
pub mod proxy;
pub mod reason;
pub mod runtime;
pub mod service;
pub mod state;
pub mod transport;
