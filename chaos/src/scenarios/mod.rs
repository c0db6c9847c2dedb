//! The scenarios: each builds a federation, injects one fault, and checks
//! the outcome Causeway promises. A check that does not hold fails the
//! scenario; so does an error of the harness itself (a process that would
//! not start), reported as such.

mod crash;
mod issuer;
mod peer;
mod rotation;

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use serde_json::json;

use crate::load::Figures;
use crate::mesh::{Mesh, Progress, wait_for};
use crate::process::Causeway;

/// What every scenario is given.
#[derive(Clone)]
pub struct Options {
    pub causeway: Causeway,
    pub progress: Progress,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("causeway", &self.causeway)
            .finish_non_exhaustive()
    }
}

/// A scenario: its name, what it shows, and how it runs.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub summary: &'static str,
    run: fn(&Options, &mut Report) -> Result<()>,
}

/// Every scenario, in the order `list` shows them.
pub const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "rotation-under-load",
        summary: "three domains, load between every pair, a full root rotation of one: \
                  no request fails, `bundles verify` exits 0 before and after everywhere",
        run: rotation::rotation_under_load,
    },
    Scenario {
        name: "controller-crash-each-step",
        summary: "the rotating controller aborts as it begins each step in turn; restarted, \
                  the rotation resumes to completed, no request fails",
        run: crash::controller_crash_each_step,
    },
    Scenario {
        name: "peer-controller-down",
        summary: "the peer's controller is killed as the rotation starts: the rotation waits, \
                  naming it; back on its data, the rotation completes; no request fails",
        run: peer::peer_controller_down,
    },
    Scenario {
        name: "peer-gateway-stale",
        summary: "a peer gateway is frozen (SIGSTOP) with the old bundle: verify names it, the \
                  rotation pauses naming it; thawed, `rotate resume` completes it",
        run: peer::peer_gateway_stale,
    },
    Scenario {
        name: "issuer-down",
        summary: "a domain's controller stops: renewals fail and are retried (the alert's \
                  condition holds), traffic flows until the last good SVID expires, then fails",
        run: issuer::issuer_down,
    },
];

/// The scenario named `name`.
pub fn find(name: &str) -> Option<Scenario> {
    SCENARIOS.iter().copied().find(|s| s.name == name)
}

impl Scenario {
    /// Runs the scenario; an error of the harness becomes a failed report.
    pub fn run(&self, options: &Options) -> Report {
        let started = Instant::now();
        let mut report = Report {
            scenario: self.name.to_owned(),
            ..Report::default()
        };
        (options.progress)(&format!("== {}: {}", self.name, self.summary));
        if let Err(e) = (self.run)(options, &mut report) {
            report.error = Some(format!("{e:#}"));
        }
        report.took = started.elapsed();
        report
    }
}

/// One expected outcome and whether it held.
#[derive(Debug, Clone)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// What a scenario saw.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub scenario: String,
    pub checks: Vec<Check>,
    /// Per load (`alpha->beta`), what it saw.
    pub loads: Vec<(String, Figures)>,
    /// Figures of the scenario besides the loads' (timings, sequences).
    pub notes: Vec<String>,
    /// The harness failed before the scenario could be judged.
    pub error: Option<String>,
    pub took: Duration,
}

impl Report {
    /// Records a check.
    pub fn check(&mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) -> bool {
        self.checks.push(Check {
            what: what.into(),
            ok,
            detail: detail.into(),
        });
        ok
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// PASS: no harness error, at least one check, every check held.
    pub fn passed(&self) -> bool {
        self.error.is_none() && !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Every load's figures added up.
    pub fn totals(&self) -> Figures {
        let mut t = Figures::default();
        for (_, f) in &self.loads {
            t.add(f);
        }
        t
    }

    /// Records the loads' figures and checks that none failed and each had
    /// answers.
    pub fn loads_clean(&mut self, loads: Vec<(String, Figures)>) {
        for (name, f) in &loads {
            let detail = match f.failures.first() {
                Some((t, why)) => format!(
                    "{} sent, {} failed; first at unix ms {t}: {why}",
                    f.sent, f.failed
                ),
                None => format!("{} sent, {} ok", f.sent, f.ok),
            };
            self.check(
                format!("load {name}: no request failed"),
                f.failed == 0 && f.ok > 0,
                detail,
            );
        }
        self.loads = loads;
    }

    /// Of the checks named (each by the start of its `what`), those the
    /// report lacks or that failed: a test's list of expected outcomes.
    pub fn missing(&self, expected: &[&str]) -> Vec<String> {
        expected
            .iter()
            .filter(|e| !self.checks.iter().any(|c| c.ok && c.what.starts_with(**e)))
            .map(|e| (*e).to_owned())
            .collect()
    }

    pub fn verdict(&self) -> &'static str {
        if self.passed() { "PASS" } else { "FAIL" }
    }

    /// The report for a person.
    pub fn text(&self) -> String {
        let t = self.totals();
        let mut out = format!(
            "{}: {} in {:.1?}\n  requests: {} sent, {} failed, longest gap {:.0?}\n",
            self.scenario,
            self.verdict(),
            self.took,
            t.sent,
            t.failed,
            t.longest_gap
        );
        for (name, f) in &self.loads {
            out.push_str(&format!(
                "    {name:<14} {:>6} sent {:>4} failed, longest gap {:>5} ms\n",
                f.sent,
                f.failed,
                f.longest_gap.as_millis()
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("  {n}\n"));
        }
        for c in &self.checks {
            out.push_str(&format!(
                "  [{}] {}: {}\n",
                if c.ok { "ok" } else { "FAILED" },
                c.what,
                c.detail
            ));
        }
        if let Some(e) = &self.error {
            out.push_str(&format!("  ERROR: {e}\n"));
        }
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let t = self.totals();
        json!({
            "scenario": self.scenario,
            "verdict": self.verdict(),
            "took_ms": self.took.as_millis(),
            "sent": t.sent, "failed": t.failed, "longest_gap_ms": t.longest_gap.as_millis(),
            "loads": self.loads.iter().map(|(n, f)| json!({"pair": n, "figures": f.json()})).collect::<Vec<_>>(),
            "notes": self.notes,
            "checks": self.checks.iter().map(|c| json!({"what": c.what, "ok": c.ok, "detail": c.detail})).collect::<Vec<_>>(),
            "error": self.error,
        })
    }
}

/// The rotation steps after `verify`, in order.
pub const STEPS: [&str; 6] = [
    "publish_both",
    "await_both",
    "issue",
    "await_svids",
    "publish_final",
    "await_final",
];

/// Waits until domain `i` has no rotation under way and returns the last
/// finished one; prints each step as it begins. Fails when the rotation
/// pauses (with its reason) or takes longer than `limit`.
pub(crate) fn follow_rotation(mesh: &Mesh, i: usize, limit: Duration) -> Result<serde_json::Value> {
    let mut seen = String::new();
    wait_for("the rotation to finish", limit, || {
        let s = match mesh.rotation(i) {
            Ok(s) => s,
            // The controller may be restarting.
            Err(e) => return Err(e.to_string()),
        };
        let cur = &s["current"];
        if cur.is_null() {
            return Ok(s["history"][0].clone());
        }
        let step = cur["step"].as_str().unwrap_or("?").to_owned();
        if step != seen {
            mesh.say(&format!("  rotation at step {step}"));
            seen = step;
        }
        if let Some(p) = cur["paused"].as_str().filter(|p| !p.is_empty()) {
            return Err(format!("PAUSED: {p}"));
        }
        Err(format!("step {seen}, behind: {}", cur["behind"]))
    })
    .map_err(|e| anyhow!("{e}"))
}

/// Checks a finished rotation record: completed, the expected ID, every
/// step recorded; notes its figures.
pub(crate) fn check_completed(report: &mut Report, record: &serde_json::Value, id: Option<&str>) {
    let outcome = record["outcome"].as_str().unwrap_or("");
    let rid = record["id"].as_str().unwrap_or("");
    report.check(
        format!("rotation {rid} completed"),
        outcome == "completed" && id.is_none_or(|id| id == rid),
        format!(
            "outcome {outcome:?}, bundle sequence {} -> {}, root {} -> {}{}",
            record["sequence_before"],
            record["sequence_after"],
            short(record["from_root"].as_str().unwrap_or("")),
            short(record["to_root"].as_str().unwrap_or("")),
            id.map(|id| format!(", started as {id}"))
                .unwrap_or_default()
        ),
    );
    let steps = step_times(record);
    let missing: Vec<&str> = STEPS
        .iter()
        .copied()
        .filter(|s| !steps.iter().any(|(n, _)| n == s))
        .collect();
    report.check(
        "every step recorded",
        missing.is_empty(),
        if missing.is_empty() {
            steps
                .iter()
                .map(|(n, ms)| format!("{n} {ms} ms"))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!("missing {missing:?}")
        },
    );
}

/// Each recorded step with how long it took (ms).
pub(crate) fn step_times(record: &serde_json::Value) -> Vec<(String, i64)> {
    record["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["step"].as_str().unwrap_or("?").to_owned(),
                        s["finished_unix_ms"].as_i64().unwrap_or(0)
                            - s["started_unix_ms"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn short(pin: &str) -> &str {
    pin.get(..12).unwrap_or(pin)
}

/// `bundles verify` at every controller: exit 0 (within `limit`, as
/// parties report what they took in within a second or two).
pub(crate) fn check_verify_everywhere(
    mesh: &Mesh,
    report: &mut Report,
    when: &str,
    limit: Duration,
) {
    for i in 0..mesh.domains.len() {
        let td = mesh.domains[i].td.clone();
        match mesh.wait_in_sync(i, limit) {
            Ok(tries) => report.check(
                format!("bundles verify exits 0 at {td} {when}"),
                true,
                format!("after {tries} tries"),
            ),
            Err(e) => report.check(
                format!("bundles verify exits 0 at {td} {when}"),
                false,
                format!("{e:#}"),
            ),
        };
    }
}
