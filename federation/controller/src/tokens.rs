//! Join tokens: one-time, short-lived, kept hashed in the store.
//!
//! Format: `cw1.<id>.<secret>.<pin>`: `id` names the store record, only the
//! SHA-256 of `secret` is stored, and `pin` is the lower-case hex SHA-256 of
//! the trust domain's root certificate (DER), with which the gateway
//! authenticates the controller before it sends the token. A token is used
//! by deleting its record with a compare on the revision read, so of two
//! concurrent joins with one token exactly one wins; the loser, and any
//! later use, is refused as reused (a tombstone remembers the use).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_store::{Compare, Revision, Store, StoreError, Txn};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::ca::{hex, sha256_hex};
use crate::keys;

pub const TOKEN_PREFIX: &str = "cw1";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredToken {
    pub(crate) gateway: String,
    pub(crate) secret_sha256: String,
    pub(crate) expires_unix: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct UsedToken {
    gateway: String,
    used_unix: i64,
    /// When the token would have expired (0 in older records: the time of
    /// use stands in).
    #[serde(default)]
    expires_unix: i64,
}

/// Why a token is refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    /// Unknown id, wrong secret, or a pin of another root: the same answer
    /// for all, so a guesser learns nothing.
    #[error("the token is not valid here")]
    Unknown,
    #[error("the token was already used")]
    Reused,
    #[error("the token expired")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TokenError {
    /// The refusal's metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed | Self::Unknown => "bad_token",
            Self::Reused => "reused_token",
            Self::Expired => "expired_token",
            Self::Store(_) => "store",
        }
    }
}

/// A token's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
    pub pin: String,
}

impl Token {
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let mut parts = s.trim().split('.');
        let (Some(TOKEN_PREFIX), Some(id), Some(secret), Some(pin), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let is_hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(is_hex(id, 16) && is_hex(secret, 64) && is_hex(pin, 64)) {
            return Err(TokenError::Malformed);
        }
        Ok(Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
            pin: pin.to_owned(),
        })
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TOKEN_PREFIX}.{}.{}.{}", self.id, self.secret, self.pin)
    }
}

pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| StoreError::Unavailable("no randomness for a token".into()))?;
    Ok(hex(&buf))
}

/// Creates a token for `gateway`, valid for `ttl`.
pub(crate) async fn create(
    store: &Arc<dyn Store>,
    gateway: &str,
    ttl: Duration,
    pin: &str,
) -> Result<(Token, i64), StoreError> {
    let token = Token {
        id: random_hex(8)?,
        secret: random_hex(32)?,
        pin: pin.to_owned(),
    };
    let expires_unix = now_unix().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    let record = StoredToken {
        gateway: gateway.to_owned(),
        secret_sha256: sha256_hex(token.secret.as_bytes()),
        expires_unix,
    };
    let key = format!("{}{}", keys::TOKENS, token.id);
    let value = serde_json::to_vec(&record).map_err(|e| StoreError::InvalidTxn(e.to_string()))?;
    store
        .txn(
            Txn::new()
                .when(Compare::Absent(key.clone()))
                .put(key, value),
        )
        .await?
        .applied_or_conflict()?;
    Ok((token, expires_unix))
}

/// A token that checked out, not used yet.
#[derive(Debug)]
pub(crate) struct Valid {
    pub(crate) gateway: String,
    mod_revision: Revision,
    expires_unix: i64,
}

/// Checks a token without using it.
pub(crate) async fn check(
    store: &Arc<dyn Store>,
    token: &Token,
    our_pin: &str,
) -> Result<Valid, TokenError> {
    if token.pin != our_pin {
        return Err(TokenError::Unknown);
    }
    let key = format!("{}{}", keys::TOKENS, token.id);
    let Some(kv) = store.get(&key).await?.kv else {
        let used = format!("{}{}", keys::TOKENS_USED, token.id);
        return Err(if store.get(&used).await?.kv.is_some() {
            TokenError::Reused
        } else {
            TokenError::Unknown
        });
    };
    let record: StoredToken = serde_json::from_slice(&kv.value).map_err(|_| TokenError::Unknown)?;
    if sha256_hex(token.secret.as_bytes()) != record.secret_sha256 {
        return Err(TokenError::Unknown);
    }
    if record.expires_unix <= now_unix() {
        // Expired tokens are removed when someone tries them.
        let _ = store
            .txn(
                Txn::new()
                    .when(Compare::ModRevision(key.clone(), kv.mod_revision))
                    .delete(key),
            )
            .await;
        return Err(TokenError::Expired);
    }
    Ok(Valid {
        gateway: record.gateway,
        mod_revision: kv.mod_revision,
        expires_unix: record.expires_unix,
    })
}

/// Uses a checked token: deletes it if it is still the record read.
pub(crate) async fn consume(
    store: &Arc<dyn Store>,
    token: &Token,
    valid: &Valid,
) -> Result<(), TokenError> {
    let key = format!("{}{}", keys::TOKENS, token.id);
    let used = serde_json::to_vec(&UsedToken {
        gateway: valid.gateway.clone(),
        used_unix: now_unix(),
        expires_unix: valid.expires_unix,
    })
    .map_err(|_| TokenError::Unknown)?;
    let txn = Txn::new()
        .when(Compare::ModRevision(key.clone(), valid.mod_revision))
        .delete(key)
        .put(format!("{}{}", keys::TOKENS_USED, token.id), used);
    if store.txn(txn).await?.applied {
        Ok(())
    } else {
        Err(TokenError::Reused)
    }
}

/// How long a token's record, or its used-tombstone, outlives the token:
/// until then a late try is told "expired" or "already used", afterwards
/// "unknown".
pub(crate) const KEPT_AFTER_EXPIRY: i64 = 3600;

/// Leader only: deletes token records and tombstones whose token expired
/// more than [`KEPT_AFTER_EXPIRY`] ago, and forgotten gateways' tombstones
/// whose last SVID did. Returns how many went.
pub(crate) async fn sweep(store: &Arc<dyn Store>, fence: Compare) -> Result<usize, StoreError> {
    let cutoff = now_unix().saturating_sub(KEPT_AFTER_EXPIRY);
    let mut gone = Vec::new();
    for kv in store.list(keys::TOKENS).await?.kvs {
        if let Ok(t) = serde_json::from_slice::<StoredToken>(&kv.value)
            && t.expires_unix < cutoff
        {
            gone.push(kv.key);
        }
    }
    for kv in store.list(keys::TOKENS_USED).await?.kvs {
        if let Ok(u) = serde_json::from_slice::<UsedToken>(&kv.value) {
            let expires = if u.expires_unix == 0 {
                u.used_unix
            } else {
                u.expires_unix
            };
            if expires < cutoff {
                gone.push(kv.key);
            }
        }
    }
    // Tombstones of forgotten gateways, once every SVID they refuse has
    // expired (unknown expiry: kept).
    for kv in store.list(keys::FORGOTTEN).await?.kvs {
        if let Ok(t) = serde_json::from_slice::<crate::forgotten::Tombstone>(&kv.value)
            && t.svid_expires_unix != 0
            && t.svid_expires_unix < cutoff
        {
            gone.push(kv.key);
        }
    }
    // In transactions the store takes: thousands of tokens may expire
    // together (a CI system joining a gateway per run).
    let mut n = 0;
    for chunk in gone.chunks(causeway_store::MAX_TXN_OPS) {
        let txn = chunk
            .iter()
            .fold(Txn::new().when(fence.clone()), |t, k| t.delete(k.clone()));
        if !store.txn(txn).await?.applied {
            break;
        }
        n += chunk.len();
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[tokio::test]
    async fn sweep_removes_only_long_expired_tokens_and_tombstones() {
        let dir = tempfile::TempDir::new().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            causeway_store::EmbeddedStore::open(dir.path().join("s"))
                .await
                .unwrap(),
        );
        let (live, _) = create(&store, "gw-1", Duration::from_secs(600), "pin")
            .await
            .unwrap();
        let (used, _) = create(&store, "gw-2", Duration::from_secs(600), "pin")
            .await
            .unwrap();
        let valid = check(&store, &used, "pin").await.unwrap();
        consume(&store, &used, &valid).await.unwrap();
        let old = now_unix() - KEPT_AFTER_EXPIRY - 10;
        let put = |key: String, value: serde_json::Value| {
            Txn::new().put(key, serde_json::to_vec(&value).unwrap())
        };
        let t = put(
            format!("{}{}", keys::TOKENS, "00old00"),
            serde_json::json!({"gateway": "x", "secret_sha256": "0", "expires_unix": old}),
        );
        assert!(store.txn(t).await.unwrap().applied);
        let t = put(
            format!("{}{}", keys::TOKENS_USED, "00oldused00"),
            serde_json::json!({"gateway": "y", "used_unix": old, "expires_unix": old}),
        );
        assert!(store.txn(t).await.unwrap().applied);

        let always = Compare::Absent("no-such-key".into());
        assert_eq!(sweep(&store, always.clone()).await.unwrap(), 2);
        assert_eq!(sweep(&store, always.clone()).await.unwrap(), 0);
        // More than one transaction holds: swept in several.
        let many = causeway_store::MAX_TXN_OPS * 2 + 5;
        for i in 0..many {
            let t = put(
                format!("{}old-{i:04}", keys::TOKENS),
                serde_json::json!({"gateway": "x", "secret_sha256": "0", "expires_unix": old}),
            );
            assert!(store.txn(t).await.unwrap().applied);
        }
        assert_eq!(sweep(&store, always.clone()).await.unwrap(), many);
        assert_eq!(sweep(&store, always.clone()).await.unwrap(), 0);
        // Forgotten gateways' tombstones: swept once their last SVID has
        // long expired; kept while it may still be valid, or unknown.
        for (name, expires) in [("gone", old), ("recent", now_unix() + 600), ("unknown", 0)] {
            let t = put(
                format!("{}{name}", keys::FORGOTTEN),
                serde_json::json!({"spiffe_id": "", "svid_serials": [], "svid_expires_unix": expires,
                    "forgotten_unix": old, "forgotten_by": "t"}),
            );
            assert!(store.txn(t).await.unwrap().applied);
        }
        assert_eq!(sweep(&store, always).await.unwrap(), 1);
        let left: Vec<String> = store
            .list(keys::FORGOTTEN)
            .await
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        assert_eq!(left, ["forgotten/recent", "forgotten/unknown"]);
        // The live token still joins; the used one is still "already used".
        assert!(check(&store, &live, "pin").await.is_ok());
        assert!(matches!(
            check(&store, &used, "pin").await,
            Err(TokenError::Reused)
        ));
    }

    #[test]
    fn parse_round_trip_and_refusals() {
        let t = Token {
            id: "0123456789abcdef".into(),
            secret: "a".repeat(64),
            pin: "b".repeat(64),
        };
        assert_eq!(Token::parse(&t.to_string()).unwrap(), t);
        for bad in [
            "",
            "cw1",
            "cw2.0123456789abcdef.x.y",
            &t.to_string().to_uppercase(),
            &format!("{t}.x"),
        ] {
            assert!(
                matches!(Token::parse(bad), Err(TokenError::Malformed)),
                "{bad}"
            );
        }
    }
}
