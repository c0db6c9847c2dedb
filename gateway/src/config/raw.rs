//! The gateway config as written in YAML: plain serde structs, no meaning
//! checked yet. [`super::GatewayConfig::from_raw`] turns them into the
//! validated model; the controller's config stream will fill the same
//! structs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This gateway's trust domain.
    pub trust_domain: String,
    /// This gateway's SPIFFE ID; its SVID must carry it. Derived under a
    /// controller.
    #[serde(default)]
    pub id: String,
    /// Derived under a controller; required otherwise.
    #[serde(default)]
    pub svid: RawSvid,
    /// Set when a federation controller runs this gateway.
    #[serde(default)]
    pub controller: Option<super::control::RawController>,
    /// Bundles held: the own trust domain's and every peer's.
    #[serde(default)]
    pub bundles: Vec<RawBundle>,
    #[serde(default)]
    pub admin: Option<RawAdmin>,
    /// The QUIC listener for peer gateways.
    #[serde(default)]
    pub peer_listener: Option<RawPeerListener>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub services: Vec<RawService>,
    #[serde(default)]
    pub imports: Vec<RawImport>,
    #[serde(default)]
    pub peers: Vec<RawPeer>,
    #[serde(default)]
    pub authorization: Vec<RawRule>,
    /// Foreign callers mapped to local principals on inbound.
    #[serde(default)]
    pub identity_map: Vec<RawIdentityRule>,
    #[serde(default)]
    pub limits: RawLimits,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSvid {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBundle {
    pub trust_domain: String,
    pub file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerListener {
    pub listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub listen: String,
    /// `http` (HTTP/1.1 and h2c, routed by Host) or `tcp`.
    pub protocol: String,
    /// For `tcp`: the service (local or imported) every connection goes to.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// Who the callers are.
    pub caller: RawCaller,
}

/// Exactly one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaller {
    /// Every caller on this listener is this identity (a sidecar or node
    /// proxy on a trusted address).
    #[serde(default)]
    pub identity: Option<String>,
    /// Callers present an X.509-SVID; their identity is taken from it.
    #[serde(default)]
    pub mtls: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: String,
    pub port: u16,
    /// What the port's endpoints speak: `http` (HTTP/1.1, the default),
    /// `http2` (h2c: HTTP/2 without TLS, as gRPC servers do) or `tcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImport {
    /// The name local callers use.
    pub name: String,
    pub port: u16,
    /// The peer that exports it.
    pub peer: String,
    /// The service's name and port at the peer (default: same as local).
    #[serde(default)]
    pub remote_service: Option<String>,
    #[serde(default)]
    pub remote_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeer {
    pub name: String,
    pub trust_domain: String,
    pub gateways: Vec<RawPeerGateway>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPeerGateway {
    pub address: String,
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// A local service name, or "*" for all.
    pub service: String,
    /// Ports the rule covers; empty for all.
    #[serde(default)]
    pub ports: Vec<u16>,
    pub allow: Vec<RawPrincipal>,
}

/// Exactly one field set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrincipal {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// A SPIFFE ID pattern (`*` one segment, a final `**` the rest).
    #[serde(default)]
    pub pattern: Option<String>,
    /// A local principal that the identity map gives foreign callers.
    #[serde(default)]
    pub principal: Option<String>,
}

/// Callers that gateways of `peer_trust_domain` assert, matching
/// `pattern`, are `principal` here.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentityRule {
    pub peer_trust_domain: String,
    pub pattern: String,
    pub principal: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    #[serde(default)]
    pub max_streams_per_connection: Option<u32>,
    #[serde(default)]
    pub max_streams_per_peer: Option<u32>,
    #[serde(default)]
    pub request_timeout: Option<String>,
    #[serde(default)]
    pub connect_timeout: Option<String>,
    #[serde(default)]
    pub idle_timeout: Option<String>,
    #[serde(default)]
    pub handshake_timeout: Option<String>,
}
