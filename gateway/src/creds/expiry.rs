//! Where an SVID stands against the clock, and the warnings the reload
//! task logs about it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_trust::Svid;
use tokio::time::Instant;
use tracing::{error, warn};

/// How often a standing expiry warning or error is repeated.
pub const EXPIRY_LOG_EVERY: Duration = Duration::from_secs(60);
/// An SVID closer than this to its expiry is always warned about.
pub const EXPIRY_WARN_FLOOR: Duration = Duration::from_secs(600);

/// Where an SVID stands against the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Valid,
    /// Within a third of its lifetime, or [`EXPIRY_WARN_FLOOR`] when that is
    /// less than half the lifetime, of expiry.
    Expiring {
        remaining_secs: i64,
    },
    Expired,
    NotYetValid,
}

impl Expiry {
    /// Classifies a validity period (Unix seconds) at `now`, with the
    /// verifier's bounds: valid through `not_after` inclusive.
    pub fn at(not_before: i64, not_after: i64, now: i64) -> Self {
        if now > not_after {
            return Self::Expired;
        }
        if now < not_before {
            return Self::NotYetValid;
        }
        let lifetime = not_after.saturating_sub(not_before);
        let floor = i64::try_from(EXPIRY_WARN_FLOOR.as_secs()).unwrap_or(i64::MAX);
        let remaining_secs = not_after - now;
        // The floor never reaches back past half the lifetime, where a
        // controller-run gateway renews: a short-lived SVID on schedule is
        // not "expiring".
        let floor = if floor < lifetime / 2 { floor } else { 0 };
        if remaining_secs <= (lifetime / 3).max(floor) {
            Self::Expiring { remaining_secs }
        } else {
            Self::Valid
        }
    }

    /// A label for the config dump.
    pub fn label(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Expiring { .. } => "expiring",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 text for Unix seconds (the number itself when out of range).
pub fn rfc3339(unix: i64) -> String {
    let t = match u64::try_from(unix) {
        Ok(s) => UNIX_EPOCH.checked_add(Duration::from_secs(s)),
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(unix.unsigned_abs())),
    };
    match t {
        Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
        None => unix.to_string(),
    }
}

pub(super) fn system_time(unix: i64) -> SystemTime {
    u64::try_from(unix)
        .ok()
        .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .unwrap_or(UNIX_EPOCH)
}

/// Logs the SVID's expiry state: error when expired, warn when close.
pub fn log_expiry(svid: &Svid, now: i64) -> Expiry {
    let i = svid.info();
    let state = Expiry::at(i.not_before, i.not_after, now);
    let not_after = rfc3339(i.not_after);
    match state {
        Expiry::Expired => error!(id = %i.spiffe_id, serial = %i.serial, %not_after,
            "the SVID in use has EXPIRED: peer gateways refuse this gateway until it is renewed"),
        Expiry::Expiring { remaining_secs } => warn!(id = %i.spiffe_id, serial = %i.serial,
            %not_after, remaining_secs, "the SVID in use expires soon and has not been renewed"),
        Expiry::NotYetValid => warn!(id = %i.spiffe_id, serial = %i.serial,
            not_before = %rfc3339(i.not_before), "the SVID in use is not valid yet (clock skew?)"),
        Expiry::Valid => {}
    }
    state
}

/// Repeats the expiry log while the SVID is in a bad state, and logs when
/// the state changes with time.
#[derive(Debug)]
pub(super) struct ExpiryLog {
    serial: String,
    state: Expiry,
    logged_at: Instant,
}

impl ExpiryLog {
    pub(super) fn new(svid: &Svid) -> Self {
        let i = svid.info();
        Self {
            serial: i.serial.clone(),
            state: Expiry::at(i.not_before, i.not_after, unix_now()),
            logged_at: Instant::now(),
        }
    }

    pub(super) fn tick(&mut self, svid: &Svid) {
        let i = svid.info();
        let state = Expiry::at(i.not_before, i.not_after, unix_now());
        if i.serial != self.serial {
            // A swap logs its own expiry state.
            *self = Self::new(svid);
            return;
        }
        let changed = std::mem::discriminant(&state) != std::mem::discriminant(&self.state);
        let due = state != Expiry::Valid && self.logged_at.elapsed() >= EXPIRY_LOG_EVERY;
        if changed || due {
            log_expiry(svid, unix_now());
            self.logged_at = Instant::now();
        }
        self.state = state;
    }
}
