//! Resources as written in YAML: plain serde structs with no meaning checked
//! beyond their shape (unknown fields are refused). [`crate::peering`] and
//! [`crate::service`] turn them into validated resources and back.
//!
//! Every document is
//!
//! ```yaml
//! apiVersion: causeway.dev/v1alpha1
//! kind: Peering        # or Service
//! name: west
//! spec: { ... }
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The one API version this crate reads and writes.
pub const API_VERSION: &str = "causeway.dev/v1alpha1";

/// One document: its header and a spec of the kind it names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawDocument<S> {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub spec: S,
}

/// `kind: Peering`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPeeringSpec {
    /// The peer's trust domain.
    pub trust_domain: String,
    pub bundle_endpoint: RawBundleEndpoint,
    /// The peer's bundle as we first trust it, before any refresh.
    pub first_bundle: RawFirstBundle,
    /// The peer's gateways.
    pub gateways: Vec<RawPeerGateway>,
    /// Our services the peer may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<RawExport>,
    /// The peer's services our callers may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<RawImport>,
    /// Foreign identities to local principals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_map: Vec<RawIdentityRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawBundleEndpoint {
    /// `https://host[:port]/path`.
    pub url: String,
    /// The SPIFFE ID the endpoint's server certificate carries.
    pub spiffe_id: String,
}

/// Exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawFirstBundle {
    /// A file written by `causeway bundle export` on the peer's side (the
    /// SPIFFE bundle JSON document), relative to the peering file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// The SPIFFE bundle document itself, as the store keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawPeerGateway {
    /// `host:port` of the gateway's QUIC listener.
    pub address: String,
    /// The gateway's SPIFFE ID.
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawExport {
    /// A local Service's name.
    pub service: String,
    /// Its ports the peer may reach.
    pub ports: Vec<u16>,
    /// Which of the peer's callers may call it; absent: every caller of the
    /// peer's domain (the Service's own authorization rules still apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callers: Option<Vec<RawCaller>>,
}

/// Exactly one field set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawCaller {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawImport {
    /// The service's name at the peer.
    pub service: String,
    pub ports: Vec<u16>,
    /// The name local callers use; default: the same as `service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawIdentityRule {
    /// A SPIFFE ID or pattern of the peer's trust domain.
    pub from: String,
    /// The local principal it maps to.
    pub principal: String,
    /// Whether other rules may map to the same principal (every rule
    /// naming it must say so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

/// `kind: Service`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawServiceSpec {
    pub ports: Vec<RawServicePort>,
    /// `host:port` of the service's instances, for every port that does not
    /// list its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Allow rules; whatever no rule allows is denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization: Vec<RawAuthorizationRule>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawServicePort {
    /// The port callers and peers name.
    pub port: u16,
    /// `tcp`, `http` (HTTP/1.1 and h2c) or `http2`.
    pub protocol: String,
    /// Instances serving this port, when they differ from the service's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAuthorizationRule {
    /// Ports the rule covers; empty: every port of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    pub allow: Vec<RawAllow>,
}

/// Exactly one field set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAllow {
    /// A local principal, as identity maps produce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
}
