//! Retry delays with jitter, and the renewal point of an SVID.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// A uniform random number in `[0, 1)`; 0.5 if the system has no
/// randomness to give (jitter is a courtesy, not a security property).
pub(crate) fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    if SystemRandom::new().fill(&mut b).is_err() {
        return 0.5;
    }
    // 53 random bits: every value exactly representable.
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Exponential backoff: `base`, doubling up to `cap`, each delay drawn
/// from its upper half so that many gateways do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub fn start(self) -> Retry {
        Retry {
            policy: self,
            attempt: 0,
        }
    }
}

/// The delays of one run of failures.
#[derive(Debug, Clone)]
pub struct Retry {
    policy: Backoff,
    attempt: u32,
}

impl Retry {
    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let full = self
            .policy
            .base
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.policy.cap);
        self.attempt = self.attempt.saturating_add(1);
        full.mul_f64(0.5 + unit_random() / 2.0)
    }

    /// After a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// How long to wait before renewing an SVID that expires at `not_after`
/// (Unix seconds), at `now_ms` (Unix milliseconds): half of the remaining
/// lifetime, ±10% (`unit` in `[0, 1)` draws the jitter). For a fresh SVID
/// the remaining lifetime is its lifetime; its notBefore is no guide, as
/// the CA backdates it for clock skew.
pub fn renew_delay(not_after: i64, now_ms: i64, unit: f64) -> Duration {
    let remaining_ms = not_after.saturating_mul(1000).saturating_sub(now_ms).max(0);
    let factor = 0.5 * (0.9 + 0.2 * unit.clamp(0.0, 1.0));
    Duration::from_millis(u64::try_from(remaining_ms).unwrap_or(0)).mul_f64(factor)
}

/// The shortest wait between two renewal attempts.
pub const MIN_RENEW_RETRY: Duration = Duration::from_millis(200);

/// The wait before retrying a failed renewal: the backoff's `delay`, but
/// never more than a quarter of what the SVID in use has left (and at least
/// [`MIN_RENEW_RETRY`]), so that a short-lived SVID still gets several tries
/// before it expires once the backoff has grown past its lifetime. An
/// expired SVID waits the backoff's delay.
pub fn renew_retry_delay(delay: Duration, not_after: i64, now_ms: i64) -> Duration {
    let remaining_ms = not_after.saturating_mul(1000).saturating_sub(now_ms);
    match u64::try_from(remaining_ms) {
        Ok(ms) if ms > 0 => delay.min((Duration::from_millis(ms) / 4).max(MIN_RENEW_RETRY)),
        _ => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter() {
        let mut r = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        }
        .start();
        let d: Vec<Duration> = (0..8).map(|_| r.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[7] >= Duration::from_millis(500) && d[7] <= Duration::from_secs(1));
        r.reset();
        assert!(r.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn renewal_retries_fit_in_what_the_svid_has_left() {
        let now_ms = 1_000_000_000;
        let in_secs = |s: i64| now_ms / 1000 + s;
        // An hour left: the backoff decides.
        let d = Duration::from_secs(60);
        assert_eq!(renew_retry_delay(d, in_secs(3600), now_ms), d);
        // 8 s left: at most 2 s, so several more tries before it expires.
        assert_eq!(
            renew_retry_delay(d, in_secs(8), now_ms),
            Duration::from_secs(2)
        );
        assert_eq!(
            renew_retry_delay(Duration::from_millis(500), in_secs(8), now_ms),
            Duration::from_millis(500)
        );
        // Almost expired: not a busy loop.
        assert_eq!(
            renew_retry_delay(d, in_secs(0), now_ms - 500),
            MIN_RENEW_RETRY
        );
        // Expired: the backoff again.
        assert_eq!(renew_retry_delay(d, in_secs(-1), now_ms), d);
    }

    #[test]
    fn renewal_at_half_life_within_ten_percent() {
        let now_ms = 1_000_000_000;
        let not_after = now_ms / 1000 + 100;
        assert_eq!(renew_delay(not_after, now_ms, 0.5), Duration::from_secs(50));
        assert_eq!(renew_delay(not_after, now_ms, 0.0), Duration::from_secs(45));
        assert_eq!(renew_delay(not_after, now_ms, 1.0), Duration::from_secs(55));
        assert_eq!(renew_delay(now_ms / 1000 - 5, now_ms, 0.5), Duration::ZERO);
    }
}
