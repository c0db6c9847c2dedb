//! Gateways as the controller knows them: their names and SPIFFE IDs, the
//! last SVID issued to each, and what each connected one reports.

use causeway_trust::{IdError, SpiffeId, TrustDomain};
use serde::{Deserialize, Serialize};

/// The path every gateway ID has: `spiffe://<td>/causeway/gateway/<name>`.
pub const GATEWAY_PATH: &str = "/causeway/gateway/";
/// The controller's own ID path.
pub const CONTROLLER_PATH: &str = "/causeway/controller";

/// Written at join and at every renewal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GatewayRecord {
    pub(crate) spiffe_id: String,
    pub(crate) joined_unix: i64,
    pub(crate) svid_serial: String,
    pub(crate) svid_expires_unix: i64,
}

/// A connected gateway's stream, under the serving replica's lease: it
/// disappears when the stream ends or the replica dies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StreamStatus {
    pub(crate) spiffe_id: String,
    pub(crate) sent_version: u64,
    pub(crate) acked_version: u64,
    /// The last NACK's reason; empty after an ACK.
    pub(crate) last_error: String,
    pub(crate) holdings: Holdings,
    /// The node ID of the replica serving the stream; empty from replicas
    /// that do not write it.
    #[serde(default)]
    pub(crate) replica: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Holdings {
    pub(crate) bundles: Vec<HeldBundle>,
    pub(crate) svid_serial: String,
    pub(crate) svid_expires_unix: i64,
    /// SHA-256 (hex) of the own root the SVID chains to (root rotation
    /// waits on it); empty from gateways that do not report it.
    #[serde(default)]
    pub(crate) svid_root: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct HeldBundle {
    pub(crate) trust_domain: String,
    pub(crate) sequence: u64,
    pub(crate) digest: String,
}

impl From<&causeway_proto::controller::v1::Holdings> for Holdings {
    fn from(h: &causeway_proto::controller::v1::Holdings) -> Self {
        Self {
            bundles: h
                .bundles
                .iter()
                .map(|b| HeldBundle {
                    trust_domain: b.trust_domain.clone(),
                    sequence: b.sequence,
                    digest: b.digest.clone(),
                })
                .collect(),
            svid_serial: h.svid_serial.clone(),
            svid_expires_unix: h.svid_expires_unix,
            svid_root: h.svid_root.clone(),
        }
    }
}

/// A gateway name: 1 to 63 of `a-z 0-9 -`, not starting or ending with `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "gateway name {name:?}: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'"
        ))
    }
}

pub fn gateway_id(td: &TrustDomain, name: &str) -> Result<SpiffeId, IdError> {
    td.workload_id(&format!("{GATEWAY_PATH}{name}"))
}

/// The gateway name in a gateway ID of `td`.
pub fn name_of(td: &TrustDomain, id: &SpiffeId) -> Option<String> {
    if !id.is_member_of(td) {
        return None;
    }
    let name = id.path().strip_prefix(GATEWAY_PATH)?;
    check_name(name).ok()?;
    Some(name.to_owned())
}

/// The gateways someone must vouch for: every one whose last SVID has not
/// expired, with its stream status when it is connected (`None`: not
/// connected). What `bundles verify` and a rotation's waits go through.
pub(crate) async fn accountable(
    store: &std::sync::Arc<dyn causeway_store::Store>,
) -> Result<std::collections::BTreeMap<String, Option<StreamStatus>>, causeway_store::StoreError> {
    let now = crate::tokens::now_unix();
    let mut gateways = std::collections::BTreeMap::new();
    for kv in store.list(crate::keys::GATEWAYS).await?.kvs {
        if let Ok(r) = serde_json::from_slice::<GatewayRecord>(&kv.value)
            && r.svid_expires_unix > now
        {
            gateways.insert(
                kv.key.trim_start_matches(crate::keys::GATEWAYS).to_owned(),
                None,
            );
        }
    }
    for kv in store.list(crate::keys::CONNECTED).await?.kvs {
        if let Ok(s) = serde_json::from_slice::<StreamStatus>(&kv.value) {
            gateways.insert(
                kv.key.trim_start_matches(crate::keys::CONNECTED).to_owned(),
                Some(s),
            );
        }
    }
    Ok(gateways)
}
