//! The control client's metrics, in the gateway's registry (the one passed
//! to the runtime). The SVID's seconds until expiry is the gateway's own
//! `causeway_gateway_svid_expiry_seconds` (crate::metrics), set again at
//! every renewal once the client is attached to a running gateway.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Every metric of the control client.
#[derive(Debug, Clone)]
pub struct ControlMetrics {
    /// SVID renewals by result (`ok`, `error`) and reason (`renewed` at
    /// the renewal point, `root_rotation` when the controller issues from
    /// another root than the SVID's, or a `JoinError::reason`).
    pub renewals: IntCounterVec,
    /// Config snapshots by result (`applied`, `refused`, `unchanged`,
    /// `cached`: loaded from disk at start).
    pub configs: IntCounterVec,
    /// The version of the config in effect (0: none).
    pub config_version: IntGauge,
    /// 1 while the config stream is up.
    pub connected: IntGauge,
    /// Config stream connection attempts by result (`ok`, `error`).
    pub connects: IntCounterVec,
}

impl ControlMetrics {
    /// Creates and registers every metric. Fails only if they are already
    /// registered in `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let renewals = IntCounterVec::new(
            Opts::new(
                "causeway_gateway_svid_renewals_total",
                "SVID renewals with the controller, by result and reason",
            ),
            &["result", "reason"],
        )?;
        for reason in ["renewed", "root_rotation"] {
            renewals.with_label_values(&["ok", reason]);
        }
        let configs = IntCounterVec::new(
            Opts::new(
                "causeway_gateway_config_snapshots_total",
                "Config snapshots from the controller, by result",
            ),
            &["result"],
        )?;
        let config_version = IntGauge::new(
            "causeway_gateway_config_version",
            "Version of the controller config in effect (0: none)",
        )?;
        let connected = IntGauge::new(
            "causeway_gateway_controller_connected",
            "1 while the config stream to the controller is up",
        )?;
        let connects = IntCounterVec::new(
            Opts::new(
                "causeway_gateway_controller_connects_total",
                "Config stream connection attempts, by result",
            ),
            &["result"],
        )?;
        registry.register(Box::new(renewals.clone()))?;
        registry.register(Box::new(configs.clone()))?;
        registry.register(Box::new(config_version.clone()))?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(connects.clone()))?;
        Ok(Self {
            renewals,
            configs,
            config_version,
            connected,
            connects,
        })
    }

    pub(crate) fn renewal(&self, result: &str, reason: &str) {
        self.renewals.with_label_values(&[result, reason]).inc();
    }

    pub(crate) fn config(&self, result: &str) {
        self.configs.with_label_values(&[result]).inc();
    }
}
