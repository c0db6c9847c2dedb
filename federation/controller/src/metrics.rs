//! The controller's metrics, in a registry passed in (no globals). Label
//! values come from closed sets, except `peer`, which is an admitted
//! peering name.

use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGauge, Opts, Registry};

/// Every refusal reason of SVID issuance, so each series exists from the
/// start.
pub const REFUSAL_REASONS: [&str; 7] = [
    "bad_token",
    "reused_token",
    "expired_token",
    "bad_csr",
    "wrong_id",
    "store",
    // A renewal with an SVID of a gateway forgotten by `causeway gateways
    // forget`.
    "forgotten",
];

#[derive(Debug, Clone)]
pub struct Metrics {
    /// `kind`: join | renew | controller.
    pub svids_issued: IntCounterVec,
    /// `kind`: join | renew; `reason`: [`REFUSAL_REASONS`].
    pub svids_refused: IntCounterVec,
    /// `event`: created | used.
    pub join_tokens: IntCounterVec,
    /// `result`: pushed | ack | nack.
    pub config_versions: IntCounterVec,
    pub connected_gateways: IntGauge,
    pub peers: IntGauge,
    pub peer_bundle_age: GaugeVec,
    pub leader: IntGauge,
    pub config_version: Gauge,
    /// Fetches of peers' bundles from their endpoints; `result`: updated |
    /// unchanged | a [`causeway_exchange::FetchError::reason`].
    pub peer_bundle_fetches: IntCounterVec,
    /// Announcements to peers; `result`: ok | failed.
    pub announcements_sent: IntCounterVec,
    /// Announcements from peers; `outcome`: updated | unchanged | older.
    pub announcements_received: IntCounterVec,
    /// Seconds until the soonest-expiring root of each bundle held (ours
    /// and each peer's), by trust domain.
    pub root_expiry: GaugeVec,
    /// Root rotations finished; `outcome`: completed | aborted | refused.
    pub rotations: IntCounterVec,
    /// 1 while a rotation is paused (a wait timed out) and needs someone.
    pub rotation_paused: IntGauge,
    /// Parties the rotation's current wait is for (0: none, or no wait).
    pub rotation_behind: IntGauge,
}

impl Metrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let svids_issued = IntCounterVec::new(
            Opts::new("causeway_controller_svids_issued_total", "SVIDs issued"),
            &["kind"],
        )?;
        let svids_refused = IntCounterVec::new(
            Opts::new(
                "causeway_controller_svids_refused_total",
                "SVID requests refused, by reason",
            ),
            &["kind", "reason"],
        )?;
        let join_tokens = IntCounterVec::new(
            Opts::new(
                "causeway_controller_join_tokens_total",
                "Join tokens created and used",
            ),
            &["event"],
        )?;
        let config_versions = IntCounterVec::new(
            Opts::new(
                "causeway_controller_config_versions_total",
                "Config versions pushed to gateways, and their ACKs and NACKs",
            ),
            &["result"],
        )?;
        let connected_gateways = IntGauge::new(
            "causeway_controller_connected_gateways",
            "Gateways with a config stream open (all replicas)",
        )?;
        let peers = IntGauge::new("causeway_controller_peers", "Peerings stored")?;
        let peer_bundle_age = GaugeVec::new(
            Opts::new(
                "causeway_controller_peer_bundle_age_seconds",
                "Seconds since the bundle held for each peer was received",
            ),
            &["peer"],
        )?;
        let leader = IntGauge::new(
            "causeway_controller_leader",
            "1 while this replica leads its trust domain's controllers",
        )?;
        let config_version = Gauge::new(
            "causeway_controller_config_version",
            "The config version this replica serves",
        )?;
        let peer_bundle_fetches = IntCounterVec::new(
            Opts::new(
                "causeway_controller_peer_bundle_fetches_total",
                "Fetches of peers' bundles from their bundle endpoints (leader), by result",
            ),
            &["peer", "result"],
        )?;
        let announcements_sent = IntCounterVec::new(
            Opts::new(
                "causeway_controller_announcements_sent_total",
                "Announcements of our bundle and exports to peer controllers (leader)",
            ),
            &["peer", "result"],
        )?;
        let announcements_received = IntCounterVec::new(
            Opts::new(
                "causeway_controller_announcements_received_total",
                "Announcements received from peer controllers, by outcome",
            ),
            &["peer", "outcome"],
        )?;
        let root_expiry = GaugeVec::new(
            Opts::new(
                "causeway_controller_root_expiry_seconds",
                "Seconds until the soonest-expiring root of each bundle held (ours and peers')",
            ),
            &["trust_domain"],
        )?;
        let rotations = IntCounterVec::new(
            Opts::new(
                "causeway_controller_rotations_total",
                "Root rotations finished (leader), by outcome",
            ),
            &["outcome"],
        )?;
        let rotation_paused = IntGauge::new(
            "causeway_controller_rotation_paused",
            "1 while a root rotation is paused: a wait timed out; see `causeway rotate status`",
        )?;
        let rotation_behind = IntGauge::new(
            "causeway_controller_rotation_behind",
            "Parties the root rotation's current wait is for",
        )?;
        for outcome in ["completed", "aborted", "refused"] {
            rotations.with_label_values(&[outcome]);
        }
        registry.register(Box::new(rotations.clone()))?;
        registry.register(Box::new(rotation_paused.clone()))?;
        registry.register(Box::new(rotation_behind.clone()))?;
        registry.register(Box::new(root_expiry.clone()))?;
        registry.register(Box::new(peer_bundle_fetches.clone()))?;
        registry.register(Box::new(announcements_sent.clone()))?;
        registry.register(Box::new(announcements_received.clone()))?;
        registry.register(Box::new(svids_issued.clone()))?;
        registry.register(Box::new(svids_refused.clone()))?;
        registry.register(Box::new(join_tokens.clone()))?;
        registry.register(Box::new(config_versions.clone()))?;
        registry.register(Box::new(connected_gateways.clone()))?;
        registry.register(Box::new(peers.clone()))?;
        registry.register(Box::new(peer_bundle_age.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        registry.register(Box::new(config_version.clone()))?;
        for kind in ["join", "renew"] {
            svids_issued.with_label_values(&[kind]);
            for reason in REFUSAL_REASONS {
                svids_refused.with_label_values(&[kind, reason]);
            }
        }
        for event in ["created", "used"] {
            join_tokens.with_label_values(&[event]);
        }
        for result in ["pushed", "ack", "nack"] {
            config_versions.with_label_values(&[result]);
        }
        Ok(Self {
            svids_issued,
            svids_refused,
            join_tokens,
            config_versions,
            connected_gateways,
            peers,
            peer_bundle_age,
            leader,
            config_version,
            peer_bundle_fetches,
            announcements_sent,
            announcements_received,
            root_expiry,
            rotations,
            rotation_paused,
            rotation_behind,
        })
    }

    pub fn refused(&self, kind: &str, reason: &str) {
        self.svids_refused.with_label_values(&[kind, reason]).inc();
    }
}
