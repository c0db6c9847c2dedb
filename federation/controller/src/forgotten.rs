//! Forgetting a gateway that is gone for good (`causeway gateways forget`):
//! one transaction deletes its record (`gateways/<name>`) and writes a
//! tombstone (`forgotten/<name>`), on condition that the gateway is not
//! connected (`connected/<name>` absent) and its record did not change
//! since it was read. Without the record, [`crate::gateways::accountable`]
//! no longer lists it, so `bundles verify` and a rotation's waits stop
//! waiting for it.
//!
//! From then on Renew and the config stream refuse the SVIDs the tombstone
//! covers ([`Tombstone::covers`]): those whose serial it names (the last one
//! issued, from the record), and any other SVID of the name issued before
//! the forget (an older one the gateway may still hold). An SVID issued
//! after the forget, by a Join with a new token, is never covered; that
//! Join also deletes the tombstone.
//!
//! Races: a Renew reads the tombstone's revision before it signs and
//! records the new SVID only if it is unchanged (else it refuses); a stream
//! checks the tombstone when it opens and again after it has written its
//! `connected/` key, which the forget transaction requires absent. Either
//! the forget sees the stream, or the stream sees the tombstone.

use std::sync::Arc;

use causeway_store::{Compare, Revision, Store, Txn};
use causeway_trust::SvidInfo;
use serde::{Deserialize, Serialize};

use crate::error::ControllerError;
use crate::gateways::{self, GatewayRecord, StreamStatus};
use crate::keys;
use crate::tokens::now_unix;

/// Forgets that lost a race with a renewal or a join before giving up.
const ATTEMPTS: usize = 5;

/// `forgotten/<name>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tombstone {
    pub(crate) spiffe_id: String,
    /// The serials of the SVIDs it held, as the record and its holdings
    /// named them (lower-case hex, ':' between bytes).
    pub(crate) svid_serials: Vec<String>,
    /// When the last of them expires (0: unknown).
    pub(crate) svid_expires_unix: i64,
    pub(crate) forgotten_unix: i64,
    pub(crate) forgotten_by: String,
}

impl Tombstone {
    /// Whether `svid` (of this gateway's name) is one of those forgotten:
    /// its serial is named, or it was issued before the forget.
    pub(crate) fn covers(&self, svid: &SvidInfo) -> bool {
        self.svid_serials.contains(&svid.serial) || issued_unix(svid) < self.forgotten_unix
    }

    /// Why an SVID of `name` is refused, for the gateway's log.
    pub(crate) fn refusal(&self, name: &str) -> String {
        format!(
            "gateway {name} was forgotten at {} by {} (`causeway gateways forget`); \
             it must join again with a new token",
            rfc3339(self.forgotten_unix),
            if self.forgotten_by.is_empty() {
                "an operator"
            } else {
                &self.forgotten_by
            }
        )
    }
}

/// When the controller issued `svid`: it backdates `not_before` by the
/// clock skew allowance ([`causeway_trust::Validity::starting_now`]).
fn issued_unix(svid: &SvidInfo) -> i64 {
    let skew = i64::try_from(causeway_trust::ca::CLOCK_SKEW_ALLOWANCE.as_secs()).unwrap_or(0);
    svid.not_before.saturating_add(skew)
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

pub(crate) fn key(name: &str) -> String {
    format!("{}{name}", keys::FORGOTTEN)
}

/// The tombstone of `name`, if any, and the key's revision (0: none), to
/// fence a later write on.
pub(crate) async fn read(
    store: &Arc<dyn Store>,
    name: &str,
) -> Result<(Option<Tombstone>, Revision), ControllerError> {
    let key = key(name);
    match store.get(&key).await?.kv {
        Some(kv) => serde_json::from_slice::<Tombstone>(&kv.value)
            .map(|t| (Some(t), kv.mod_revision))
            .map_err(|e| ControllerError::corrupt(&key, e)),
        None => Ok((None, 0)),
    }
}

/// The tombstone that covers `svid` of gateway `name`, if one does, and the
/// tombstone key's revision.
pub(crate) async fn covering(
    store: &Arc<dyn Store>,
    name: &str,
    svid: &SvidInfo,
) -> Result<(Option<Tombstone>, Revision), ControllerError> {
    let (t, revision) = read(store, name).await?;
    Ok((t.filter(|t| t.covers(svid)), revision))
}

/// Why a forget was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForgetError {
    #[error("{0}")]
    BadName(String),
    #[error("no gateway named {0:?}")]
    Unknown(String),
    #[error("{name} was already forgotten at {} by {by}", rfc3339(*.at))]
    AlreadyForgotten { name: String, at: i64, by: String },
    #[error("{name} is connected (stream on replica {replica}); stop it first")]
    Connected { name: String, replica: String },
    #[error("gateway {0}'s record kept changing (renewing?); try again")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] ControllerError),
}

impl From<causeway_store::StoreError> for ForgetError {
    fn from(e: causeway_store::StoreError) -> Self {
        Self::Store(e.into())
    }
}

impl From<ForgetError> for tonic::Status {
    fn from(e: ForgetError) -> Self {
        let message = e.to_string();
        match e {
            ForgetError::BadName(_) => Self::invalid_argument(message),
            ForgetError::Unknown(_) | ForgetError::AlreadyForgotten { .. } => {
                Self::not_found(message)
            }
            ForgetError::Connected { .. } => Self::failed_precondition(message),
            ForgetError::Conflict(_) => Self::aborted(message),
            ForgetError::Store(e) => e.into(),
        }
    }
}

/// Forgets gateway `name`: deletes its record and writes its tombstone,
/// unless it is connected. Returns the tombstone written.
pub(crate) async fn forget(
    store: &Arc<dyn Store>,
    name: &str,
    by: &str,
) -> Result<Tombstone, ForgetError> {
    gateways::check_name(name).map_err(ForgetError::BadName)?;
    let by = if by.is_empty() { "unknown" } else { by };
    let record_key = format!("{}{name}", keys::GATEWAYS);
    let connected_key = format!("{}{name}", keys::CONNECTED);
    for _ in 0..ATTEMPTS {
        if let Some(kv) = store.get(&connected_key).await?.kv {
            let replica = serde_json::from_slice::<StreamStatus>(&kv.value)
                .ok()
                .map(|s| s.replica)
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| "unknown".to_owned());
            return Err(ForgetError::Connected {
                name: name.to_owned(),
                replica,
            });
        }
        let Some(kv) = store.get(&record_key).await?.kv else {
            return Err(match read(store, name).await?.0 {
                Some(t) => ForgetError::AlreadyForgotten {
                    name: name.to_owned(),
                    at: t.forgotten_unix,
                    by: t.forgotten_by,
                },
                None => ForgetError::Unknown(name.to_owned()),
            });
        };
        // A record that cannot be read back still goes: the tombstone
        // then covers every SVID of the name issued before now.
        let record = match serde_json::from_slice::<GatewayRecord>(&kv.value) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(gateway = name, error = %e, "unreadable gateway record; forgetting it anyway");
                None
            }
        };
        let tombstone = Tombstone {
            spiffe_id: record
                .as_ref()
                .map(|r| r.spiffe_id.clone())
                .unwrap_or_default(),
            svid_serials: record
                .as_ref()
                .map(|r| r.svid_serial.clone())
                .filter(|s| !s.is_empty())
                .into_iter()
                .collect(),
            svid_expires_unix: record.as_ref().map_or(0, |r| r.svid_expires_unix),
            forgotten_unix: now_unix(),
            forgotten_by: by.to_owned(),
        };
        let value =
            serde_json::to_vec(&tombstone).map_err(|e| ControllerError::corrupt(&key(name), e))?;
        let txn = Txn::new()
            .when(Compare::ModRevision(record_key.clone(), kv.mod_revision))
            .when(Compare::Absent(connected_key.clone()))
            .delete(record_key.clone())
            .put(key(name), value);
        if store.txn(txn).await?.applied {
            tracing::info!(gateway = name, by, serials = ?tombstone.svid_serials, "gateway forgotten");
            return Ok(tombstone);
        }
        tracing::info!(
            gateway = name,
            "forget raced a renewal or a stream; reading again"
        );
    }
    Err(ForgetError::Conflict(name.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn svid(serial: &str, issued_unix: i64) -> SvidInfo {
        SvidInfo {
            spiffe_id: causeway_trust::SpiffeId::new(
                "spiffe://east.acme.example/causeway/gateway/east-1",
            )
            .unwrap(),
            serial: serial.to_owned(),
            not_before: issued_unix - 60,
            not_after: issued_unix + 3600,
            issuer: String::new(),
            subject: String::new(),
        }
    }

    #[test]
    fn covers_the_named_serials_and_whatever_was_issued_before() {
        let t = Tombstone {
            spiffe_id: String::new(),
            svid_serials: vec!["0b".into()],
            svid_expires_unix: 0,
            forgotten_unix: 1000,
            forgotten_by: "ops".into(),
        };
        assert!(t.covers(&svid("0b", 1000)), "named, whenever issued");
        assert!(t.covers(&svid("0a", 999)), "an older SVID it may hold");
        assert!(
            !t.covers(&svid("0c", 1000)),
            "issued in the forget's second, unnamed"
        );
        assert!(!t.covers(&svid("0c", 1001)), "issued after: a re-join");
        assert!(
            t.refusal("east-1")
                .contains("forgotten at 1970-01-01T00:16:40Z by ops")
        );
    }
}
