//! The gateway's metrics, in a registry the runtime creates and passes in
//! (no globals): one [`Metrics`] per gateway, shared by every task.
//!
//! Label values come from closed sets (`reason()` of the typed errors,
//! configured service names and trust domains), never from raw input, so a
//! peer cannot grow the label space.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use causeway_trust::{PeerRole, SharedBundles};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Which way a call goes through this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From a local caller (to a local service or to a peer).
    Outbound,
    /// From a peer gateway to a local service.
    Inbound,
}

impl Direction {
    pub fn label(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Calls (TCP connections or HTTP requests) by direction, service, the
    /// other side's trust domain and result (`ok` or a refusal reason).
    pub requests: IntCounterVec,
    /// Connections by direction (`inbound`: peer gateways and local callers
    /// accepted; `outbound`: peer gateways dialled), peer trust domain and
    /// result.
    pub connections: IntCounterVec,
    /// TLS handshakes refused, by reason and by the role of the refused side.
    pub handshake_failures: IntCounterVec,
    /// Streams and local connections open now, by direction.
    pub active_streams: IntGaugeVec,
    /// Bytes carried, by direction, service and flow (`to_upstream`,
    /// `to_downstream`).
    pub bytes: IntCounterVec,
    /// Call duration, by direction and service.
    pub duration: HistogramVec,
    /// Seconds until this gateway's SVID expires (negative once expired).
    pub svid_expiry_seconds: IntGauge,
    /// Seconds until the soonest-expiring root of each bundle held expires
    /// (negative once expired), per trust domain; taken at each scrape
    /// from the bundles in use, so a trust domain no longer held has none.
    pub root_expiry_seconds: IntGaugeVec,
    /// The sequence of the bundle held per trust domain (0 when the bundle
    /// carries none, as PEM bundles do).
    pub bundle_sequence: IntGaugeVec,
    /// Credential reload attempts, by kind (`svid`, `bundle`) and result
    /// (`ok` or a refusal reason from [`crate::creds::ReloadError::reason`]).
    pub credential_reloads: IntCounterVec,
    svid_not_after: AtomicI64,
    roots: Mutex<Roots>,
    /// `active_streams` of each direction, looked up once (every call
    /// touches it twice).
    open_outbound: IntGauge,
    open_inbound: IntGauge,
}

/// What the root expiry gauge is read from, and the trust domains it
/// shows now.
#[derive(Debug, Default)]
struct Roots {
    bundles: Option<SharedBundles>,
    shown: BTreeSet<String>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    match r {
        Ok(v) => v,
        // Only reachable with a malformed metric name or a double
        // registration, both fixed in this file: a programming error.
        Err(e) => panic!("metric definition: {e}"),
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Registry::new())
    }
}

impl Metrics {
    /// Creates every metric in `registry`.
    pub fn new(registry: Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = must(IntCounterVec::new(Opts::new(name, help), labels));
            must(registry.register(Box::new(c.clone())));
            c
        };
        let requests = counter(
            "causeway_gateway_requests_total",
            "Calls (TCP connections or HTTP requests) by direction, service, peer trust domain and result",
            &["direction", "service", "peer_trust_domain", "result"],
        );
        let connections = counter(
            "causeway_gateway_connections_total",
            "Connections by direction, peer trust domain and result",
            &["direction", "peer_trust_domain", "result"],
        );
        let handshake_failures = counter(
            "causeway_gateway_handshake_failures_total",
            "TLS handshakes refused, by reason and the refused side's role",
            &["reason", "role"],
        );
        // Every refusal at zero from the start, for rates and alerts.
        for reason in causeway_trust::verify::VerifyError::REASONS {
            for role in ["client", "server"] {
                handshake_failures.with_label_values(&[reason, role]);
            }
        }
        let credential_reloads = counter(
            "causeway_gateway_credential_reloads_total",
            "Credential reload attempts, by kind (svid, bundle) and result",
            &["kind", "result"],
        );
        // Present from the start, so that rates and alerts have a series.
        for kind in ["svid", "bundle"] {
            credential_reloads.with_label_values(&[kind, "ok"]);
        }
        let bytes = counter(
            "causeway_gateway_bytes_total",
            "Bytes carried, by direction, service and flow",
            &["direction", "service", "flow"],
        );
        let active_streams = must(IntGaugeVec::new(
            Opts::new(
                "causeway_gateway_active_streams",
                "Streams and local connections open now, by direction",
            ),
            &["direction"],
        ));
        must(registry.register(Box::new(active_streams.clone())));
        let bundle_sequence = must(IntGaugeVec::new(
            Opts::new(
                "causeway_gateway_bundle_sequence",
                "Sequence of the trust bundle held, per trust domain",
            ),
            &["trust_domain"],
        ));
        must(registry.register(Box::new(bundle_sequence.clone())));
        let duration = must(HistogramVec::new(
            HistogramOpts::new(
                "causeway_gateway_request_duration_seconds",
                "Call duration by direction and service",
            )
            .buckets(must(prometheus::exponential_buckets(0.000_05, 2.0, 18))),
            &["direction", "service"],
        ));
        must(registry.register(Box::new(duration.clone())));
        let svid_expiry_seconds = must(IntGauge::new(
            "causeway_gateway_svid_expiry_seconds",
            "Seconds until this gateway's SVID expires",
        ));
        must(registry.register(Box::new(svid_expiry_seconds.clone())));
        let root_expiry_seconds = must(IntGaugeVec::new(
            Opts::new(
                "causeway_gateway_root_expiry_seconds",
                "Seconds until the soonest-expiring root of the bundle held expires, per trust domain",
            ),
            &["trust_domain"],
        ));
        must(registry.register(Box::new(root_expiry_seconds.clone())));
        Self {
            registry,
            requests,
            connections,
            handshake_failures,
            open_outbound: active_streams.with_label_values(&[Direction::Outbound.label()]),
            open_inbound: active_streams.with_label_values(&[Direction::Inbound.label()]),
            active_streams,
            bytes,
            duration,
            svid_expiry_seconds,
            root_expiry_seconds,
            bundle_sequence,
            credential_reloads,
            svid_not_after: AtomicI64::new(0),
            roots: Mutex::new(Roots::default()),
        }
    }

    /// Counts one finished call.
    pub fn request(
        &self,
        direction: Direction,
        service: &str,
        peer_td: &str,
        result: &str,
        elapsed: Duration,
    ) {
        self.requests
            .with_label_values(&[direction.label(), service, peer_td, result])
            .inc();
        self.duration_for(direction, service)
            .observe(elapsed.as_secs_f64());
    }

    fn duration_for(&self, direction: Direction, service: &str) -> Histogram {
        self.duration
            .with_label_values(&[direction.label(), service])
    }

    /// Counts bytes carried for one call.
    pub fn bytes(&self, direction: Direction, service: &str, to_upstream: u64, to_downstream: u64) {
        self.bytes
            .with_label_values(&[direction.label(), service, "to_upstream"])
            .inc_by(to_upstream);
        self.bytes
            .with_label_values(&[direction.label(), service, "to_downstream"])
            .inc_by(to_downstream);
    }

    /// Counts one open stream until the guard is dropped.
    pub fn stream_guard(&self, direction: Direction) -> StreamGuard {
        let g = match direction {
            Direction::Outbound => self.open_outbound.clone(),
            Direction::Inbound => self.open_inbound.clone(),
        };
        g.inc();
        StreamGuard(g)
    }

    /// Records when the SVID in use expires.
    pub fn set_svid_expiry(&self, not_after: SystemTime) {
        let secs = not_after
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.svid_not_after.store(secs, Ordering::Relaxed);
    }

    /// The bundles in use, read at every scrape for the root expiry gauge.
    pub fn watch_bundles(&self, bundles: SharedBundles) {
        self.roots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bundles = Some(bundles);
    }

    /// Sets the root expiry gauge from the bundles in use at `now` (Unix
    /// seconds): one series per trust domain held, none for the others.
    fn update_root_expiry(&self, now: i64) {
        let mut roots = self.roots.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(bundles) = roots.bundles.as_ref() else {
            return;
        };
        let mut shown = BTreeSet::new();
        for b in bundles.load().bundles() {
            if let Some(not_after) = b.earliest_expiry() {
                let td = b.trust_domain().to_string();
                self.root_expiry_seconds
                    .with_label_values(&[td.as_str()])
                    .set(not_after.saturating_sub(now));
                shown.insert(td);
            }
        }
        for gone in roots.shown.difference(&shown) {
            let _ = self
                .root_expiry_seconds
                .remove_label_values(&[gone.as_str()]);
        }
        roots.shown = shown;
    }

    /// Records the sequence of the bundle held for a trust domain (0 when
    /// the bundle has none).
    pub fn set_bundle_sequence(&self, trust_domain: &str, sequence: Option<u64>) {
        let v = sequence.map_or(0, |s| i64::try_from(s).unwrap_or(i64::MAX));
        self.bundle_sequence
            .with_label_values(&[trust_domain])
            .set(v);
    }

    /// Forgets a trust domain whose bundle is no longer held.
    pub fn remove_bundle_sequence(&self, trust_domain: &str) {
        let _ = self.bundle_sequence.remove_label_values(&[trust_domain]);
    }

    /// Counts one credential reload attempt; `result` is `ok` or a reason
    /// label from a closed set.
    pub fn credential_reload(&self, kind: &str, result: &str) {
        self.credential_reloads
            .with_label_values(&[kind, result])
            .inc();
    }

    /// Counts one refused TLS handshake; `role` is the refused side's.
    pub fn handshake_failure(&self, reason: &str, role: PeerRole) {
        let role = match role {
            PeerRole::Client => "client",
            PeerRole::Server => "server",
        };
        self.handshake_failures
            .with_label_values(&[reason, role])
            .inc();
    }

    /// The text exposition of every metric, with the SVID and root
    /// countdowns taken now.
    pub fn render(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.svid_expiry_seconds
            .set(self.svid_not_after.load(Ordering::Relaxed) - now);
        self.update_root_expiry(now);
        let mut out = Vec::new();
        // Encoding into a Vec only fails on a malformed family, which the
        // definitions above rule out; an empty answer is the fallback.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Decrements the active-stream gauge when dropped.
#[derive(Debug)]
pub struct StreamGuard(IntGauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use causeway_trust::BundleSet;
    use causeway_trust::ca::DEFAULT_ROOT_TTL;
    use causeway_trust::testing::TestDomain;

    use super::*;

    fn root_expiry(text: &str, td: &str) -> Option<i64> {
        let prefix = format!("causeway_gateway_root_expiry_seconds{{trust_domain=\"{td}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(|v| v.parse().unwrap())
    }

    #[test]
    fn root_expiry_follows_the_bundles_held() {
        let m = Metrics::default();
        assert_eq!(root_expiry(&m.render(), "east.example"), None);
        let east = TestDomain::new("east.example");
        let west = TestDomain::new("west.example");
        let held =
            SharedBundles::new(BundleSet::from_bundles([east.bundle(), west.bundle()]).unwrap());
        m.watch_bundles(held.clone());
        let text = m.render();
        let ttl = i64::try_from(DEFAULT_ROOT_TTL.as_secs()).unwrap();
        for td in ["east.example", "west.example"] {
            let left = root_expiry(&text, td).unwrap();
            assert!(left > ttl - 600 && left <= ttl, "{td}: {left}");
        }
        // The soonest-expiring root of a bundle counts.
        let soon = causeway_trust::Authority::new_root(
            &east.trust_domain,
            std::time::Duration::from_secs(1000),
        )
        .unwrap();
        let mut both = east.bundle();
        both.add_x509_authority(soon.cert().clone());
        held.store(BundleSet::from_bundles([both]).unwrap());
        let text = m.render();
        let left = root_expiry(&text, "east.example").unwrap();
        assert!(left > 400 && left <= 1000, "{left}");
        // A trust domain no longer held has no series.
        assert_eq!(root_expiry(&text, "west.example"), None);
    }
}
