//! What the demo saw, for people (the summary table) and for scripts (the
//! `--summary-json` file: every address, the sample services' host names,
//! example calls, and the results).

use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use serde_json::{Value, json};

use super::parts::Parts;
use super::traffic::{Expect, Path, Stats};
use crate::cli::say;

/// The root rotation under traffic.
#[derive(Debug)]
pub(crate) struct Rotation {
    pub(crate) trust_domain: String,
    pub(crate) id: String,
    pub(crate) millis: i64,
    pub(crate) sequence_before: u64,
    pub(crate) sequence_after: u64,
}

#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) paths: Vec<(Path, Stats)>,
    /// Each path's first call: what came back.
    pub(crate) first_calls: Vec<(&'static str, String)>,
    /// Each trust domain's own bundle sequence before the traffic and after.
    pub(crate) sequences: Vec<(String, u64, u64)>,
    pub(crate) rotation: Rotation,
    /// `bundles verify` at each controller, at the end.
    pub(crate) verify: Vec<(String, pb::VerifyBundlesResponse)>,
    pub(crate) elapsed: Duration,
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.2}ms", d.as_secs_f64() * 1e3),
    )
}

impl Report {
    fn totals(&self) -> (u64, u64) {
        self.paths
            .iter()
            .fold((0, 0), |(c, f), (_, s)| (c + s.sent, f + s.failed))
    }

    fn refusals_seen(&self) -> u64 {
        self.paths
            .iter()
            .filter(|(p, _)| matches!(p.expect, Expect::Refused { .. }))
            .map(|(_, s)| s.ok)
            .sum()
    }

    /// Zero failures, every path answered, the refusal seen, the rotated
    /// domain's bundle moved on, and every party in sync at the end.
    pub(crate) fn ok(&self) -> bool {
        let (_, failed) = self.totals();
        failed == 0
            && self.paths.iter().all(|(_, s)| s.ok > 0)
            && self.refusals_seen() > 0
            && self.rotation.sequence_after > self.rotation.sequence_before
            && self.verify.iter().all(|(_, r)| r.in_sync)
    }

    pub(crate) fn print(&self) {
        say!(
            "\n== summary: {:.1} s, everything on loopback",
            self.elapsed.as_secs_f64()
        );
        say!(
            "   {:<34} {:>7} {:>7} {:>9} {:>9}",
            "path",
            "calls",
            "failed",
            "p50",
            "p99"
        );
        for (p, s) in &self.paths {
            say!(
                "   {:<34} {:>7} {:>7} {:>9} {:>9}",
                p.label,
                s.sent,
                s.failed,
                ms(s.percentile(50.0)),
                ms(s.percentile(99.0))
            );
        }
        let (calls, failed) = self.totals();
        say!("   {:<34} {calls:>7} {failed:>7}", "all");
        for (p, s) in &self.paths {
            for (at, why) in &s.failures {
                say!("   FAILED {} at {at:.1}s: {why}", p.label);
            }
        }
        say!(
            "   refused by policy: {} calls of east's batch job to payments.west, each a 403 denied from west's gateway",
            self.refusals_seen()
        );
        let seqs: Vec<String> = self
            .sequences
            .iter()
            .map(|(td, b, a)| format!("{td} {b} -> {a}"))
            .collect();
        say!("   bundle sequences: {}", seqs.join(", "));
        say!(
            "   root rotation of {}: completed in {} ms under traffic, sequence {} -> {}",
            self.rotation.trust_domain,
            self.rotation.millis,
            self.rotation.sequence_before,
            self.rotation.sequence_after
        );
        let verify: Vec<String> = self
            .verify
            .iter()
            .map(|(td, r)| {
                let state = if r.in_sync { "in sync" } else { "OUT OF SYNC" };
                format!("{state} at {td} ({} parties)", r.parties.len())
            })
            .collect();
        say!("   bundles verify: {}", verify.join(", "));
        if self.ok() {
            say!("   OK: {calls} calls, 0 failures");
        } else {
            say!("   NOT OK: {failed} of {calls} calls failed, or a check above did not hold");
        }
    }

    /// The `--summary-json` document.
    pub(crate) fn json(&self, parts: &Parts) -> Value {
        let (calls, failed) = self.totals();
        let paths: Vec<Value> = self
            .paths
            .iter()
            .map(|(p, s)| {
                let first = self
                    .first_calls
                    .iter()
                    .find(|(n, _)| *n == p.name)
                    .map(|(_, o)| o.clone());
                json!({
                    "name": p.name, "label": p.label, "listener": p.target.to_string(),
                    "host": p.host, "calls": s.sent, "ok": s.ok, "failed": s.failed,
                    "failures": s.failures.iter().map(|(at, why)| json!({"at_seconds": at, "reason": why})).collect::<Vec<_>>(),
                    "p50_ms": s.percentile(50.0).map(|d| d.as_secs_f64() * 1e3),
                    "p99_ms": s.percentile(99.0).map(|d| d.as_secs_f64() * 1e3),
                    "first_call": first,
                })
            })
            .collect();
        let bundles: serde_json::Map<String, Value> = self
            .sequences
            .iter()
            .map(|(td, b, a)| (td.clone(), json!({"before": b, "after": a})))
            .collect();
        let verify: serde_json::Map<String, Value> = self
            .verify
            .iter()
            .map(|(td, r)| (td.clone(), crate::cli::bundles::report_json(r)))
            .collect();
        json!({
            "ok": self.ok(),
            "dir": parts.dir.path().display().to_string(),
            "trust_domains": domains(parts),
            "calls": example_calls(&self.paths),
            "results": {
                "elapsed_seconds": self.elapsed.as_secs_f64(),
                "calls": calls,
                "failures": failed,
                "refused_as_expected": self.refusals_seen(),
                "paths": paths,
                "bundle_sequences": bundles,
                "rotation": {
                    "trust_domain": self.rotation.trust_domain, "id": self.rotation.id,
                    "millis": self.rotation.millis,
                    "sequence_before": self.rotation.sequence_before,
                    "sequence_after": self.rotation.sequence_after,
                },
                "bundles_verify": verify,
            },
        })
    }
}

/// Each trust domain's controller, gateways and sample services.
fn domains(parts: &Parts) -> Value {
    let mut out = serde_json::Map::new();
    for c in &parts.controllers {
        let gateways: serde_json::Map<String, Value> = parts
            .gateways
            .iter()
            .filter(|g| g.trust_domain == c.trust_domain)
            .map(|g| {
                let listeners: serde_json::Map<String, Value> = g
                    .declared
                    .listeners
                    .iter()
                    .map(|(name, (_, protocol, caller))| {
                        let addr = g.running.listeners.get(name).map(ToString::to_string);
                        (
                            name.clone(),
                            json!({"address": addr, "protocol": protocol, "caller": caller}),
                        )
                    })
                    .collect();
                (
                    g.name.clone(),
                    json!({
                        "id": g.id,
                        "config": g.config.display().to_string(),
                        "admin": g.running.admin.map(|a| a.to_string()),
                        "peer_listener": g.running.peer_listener.map(|a| a.to_string()),
                        "listeners": listeners,
                    }),
                )
            })
            .collect();
        let samples: Vec<Value> = parts
            .samples
            .iter()
            .filter(|(td, _)| *td == c.trust_domain)
            .map(|(_, s)| json!({"service": s.service, "protocol": s.protocol, "address": s.addr.to_string()}))
            .collect();
        out.insert(
            c.trust_domain.clone(),
            json!({
                "controller": {
                    "config": c.config.display().to_string(),
                    "api": c.running.api.to_string(),
                    "bundle_endpoint": c.bundle_endpoint(),
                    "federation": c.running.federation.map(|a| a.to_string()),
                    "metrics": c.running.metrics.map(|a| a.to_string()),
                    "admin_socket": c.running.admin_socket.display().to_string(),
                },
                "gateways": gateways,
                "sample_services": samples,
            }),
        );
    }
    Value::Object(out)
}

/// Each path as a command a person can run: the listener, the host name
/// of the service and what it answers.
fn example_calls(paths: &[(Path, Stats)]) -> Vec<Value> {
    paths
        .iter()
        .map(|(p, _)| {
            let (protocol, expect, command) = match &p.expect {
                Expect::Served { .. } => ("http", json!(200), curl(p)),
                Expect::Refused { reason } => {
                    ("http", json!({"status": 403, "refusal": reason}), curl(p))
                }
                Expect::Echo { service } => (
                    "tcp",
                    json!({"greeting": format!("{service}|"), "then": "echo"}),
                    format!("nc {} {}", p.target.ip(), p.target.port()),
                ),
            };
            json!({
                "name": p.name, "label": p.label, "protocol": protocol,
                "listener": p.target.to_string(), "host": p.host,
                "expect": expect, "command": command,
            })
        })
        .collect()
}

fn curl(p: &Path) -> String {
    format!("curl -sS -H 'Host: {}' http://{}/", p.host, p.target)
}

impl Report {
    /// With `--keep-running`: what to try meanwhile.
    pub(crate) fn print_try(&self, parts: &Parts) {
        say!("\n== running until Ctrl-C or SIGTERM; try:");
        for (p, _) in &self.paths {
            let command = match p.expect {
                Expect::Echo { .. } => format!("nc {} {}", p.target.ip(), p.target.port()),
                _ => curl(p),
            };
            say!("   {command:<58} # {}", p.label);
        }
        for c in &parts.controllers {
            let sock = c.running.admin_socket.display();
            say!("   causeway bundles verify --controller {sock}");
            say!("   causeway gateways --controller {sock}");
        }
        if let Some(c) = parts.controllers.first() {
            say!(
                "   causeway rotate start --wait --controller {}",
                c.running.admin_socket.display()
            );
        }
    }
}
