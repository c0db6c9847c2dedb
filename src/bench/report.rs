//! The benchmark's output: a table with every figure and its ratio to the
//! direct baseline of the same run, a verdict against the peers, or JSON.

use std::fmt::Write as _;

use super::{Figures, Load, Outcome, Row, Scenario};

/// Ratios of a scenario's figures to the direct baseline's.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ratios {
    /// Requests/s as a fraction of direct (1.0 = as fast as direct).
    pub(crate) rps: f64,
    /// p50 as a multiple of direct's (1.0 = no added latency).
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    /// Microseconds added to direct's p50.
    pub(crate) added_p50_us: f64,
    pub(crate) bulk: Option<f64>,
}

fn us(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(crate) fn ratios(f: &Figures, base: &Figures) -> Ratios {
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    Ratios {
        rps: div(f.throughput.per_second, base.throughput.per_second),
        p50: div(us(f.latency.p50), us(base.latency.p50)),
        p99: div(us(f.latency.p99), us(base.latency.p99)),
        added_p50_us: us(f.latency.p50) - us(base.latency.p50),
        bulk: match (f.bulk, base.bulk) {
            (Some(a), Some(b)) => Some(div(a.mb_per_second(), b.mb_per_second())),
            _ => None,
        },
    }
}

fn baseline(rows: &[Row]) -> Option<&Figures> {
    rows.iter().find_map(|r| match (&r.scenario, &r.outcome) {
        (Scenario::Direct, Outcome::Measured(f)) => Some(f),
        _ => None,
    })
}

fn settings(load: &Load) -> String {
    format!(
        "{:?} per phase after {:?} warm-up; req/s over {} connections, latency over 1, \
         {}-byte messages; bulk {} MiB on one stream",
        load.duration,
        load.warmup,
        load.connections,
        load.message,
        load.bulk_bytes / (1024 * 1024)
    )
}

/// The table, then one verdict line per measured peer.
pub(crate) fn table(rows: &[Row], load: &Load) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "causeway bench: {}", settings(load));
    let _ = writeln!(
        out,
        "ratios are to direct, measured in this run: req/s and bulk as a fraction of direct, latency as a multiple\n"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>6} {:>9} {:>6} {:>9} {:>9} {:>6} {:>10} {:>6}",
        "scenario", "req/s", "x", "p50 µs", "x", "+p50 µs", "p99 µs", "x", "bulk MB/s", "x"
    );
    let base = baseline(rows);
    for row in rows {
        let name = row.scenario.name();
        match (&row.outcome, base) {
            (Outcome::Measured(f), Some(b)) => {
                let r = ratios(f, b);
                let (bulk, bulk_x) = match (f.bulk, r.bulk) {
                    (Some(bk), Some(x)) => {
                        (format!("{:.0}", bk.mb_per_second()), format!("{x:.2}"))
                    }
                    _ => ("-".into(), "-".into()),
                };
                let _ = writeln!(
                    out,
                    "{name:<14} {:>10.0} {:>6.2} {:>9.1} {:>6.2} {:>9.1} {:>9.1} {:>6.2} {bulk:>10} {bulk_x:>6}",
                    f.throughput.per_second,
                    r.rps,
                    us(f.latency.p50),
                    r.p50,
                    r.added_p50_us,
                    us(f.latency.p99),
                    r.p99,
                );
            }
            (Outcome::Measured(_), None) => {
                let _ = writeln!(out, "{name:<14} (no direct baseline)");
            }
            (Outcome::Skipped(why), _) => {
                let _ = writeln!(out, "{name:<14} skipped: {why}");
            }
            (Outcome::Failed(why), _) => {
                let _ = writeln!(out, "{name:<14} FAILED: {why}");
            }
        }
    }
    if let Some(verdict) = verdict(rows) {
        let _ = write!(out, "\n{verdict}");
    }
    out
}

/// causeway-2gw against each measured peer, in this run.
fn verdict(rows: &[Row]) -> Option<String> {
    let base = baseline(rows)?;
    let measured = |s: Scenario| {
        rows.iter().find_map(|r| match &r.outcome {
            Outcome::Measured(f) if r.scenario == s => Some(f),
            _ => None,
        })
    };
    let ours = measured(Scenario::Causeway2Gw)?;
    let o = ratios(ours, base);
    let mut out = String::new();
    for peer in [Scenario::Nginx2Hop, Scenario::Haproxy2Hop] {
        let Some(theirs) = measured(peer) else {
            continue;
        };
        let t = ratios(theirs, base);
        let more = ours.throughput.per_second > theirs.throughput.per_second;
        let less = o.added_p50_us < t.added_p50_us;
        let _ = writeln!(
            out,
            "causeway-2gw vs {}: req/s {:.0} vs {:.0} ({:.2}x theirs, {}); added p50 {:.1} µs vs {:.1} µs ({}){}",
            peer.name(),
            ours.throughput.per_second,
            theirs.throughput.per_second,
            ours.throughput.per_second / theirs.throughput.per_second,
            if more { "more" } else { "LESS" },
            o.added_p50_us,
            t.added_p50_us,
            if less { "less" } else { "MORE" },
            if more && less {
                ": Causeway ahead on both"
            } else {
                ": Causeway behind"
            },
        );
    }
    (!out.is_empty()).then_some(out)
}

/// The same figures as one JSON document.
pub(crate) fn json(rows: &[Row], load: &Load) -> serde_json::Value {
    use serde_json::json;
    let base = baseline(rows);
    let scenarios: Vec<_> = rows
        .iter()
        .map(|row| {
            let name = row.scenario.name();
            match &row.outcome {
                Outcome::Measured(f) => {
                    let r = base.map(|b| ratios(f, b));
                    json!({
                        "name": name,
                        "status": "measured",
                        "requests": f.throughput.requests,
                        "requests_per_second": f.throughput.per_second,
                        "latency_samples": f.latency.samples,
                        "p50_us": us(f.latency.p50),
                        "p99_us": us(f.latency.p99),
                        "bulk_bytes": f.bulk.map(|b| b.bytes),
                        "bulk_mb_per_second": f.bulk.map(|b| b.mb_per_second()),
                        "ratio_to_direct": r.map(|r| json!({
                            "requests_per_second": r.rps,
                            "p50": r.p50,
                            "p99": r.p99,
                            "added_p50_us": r.added_p50_us,
                            "bulk": r.bulk,
                        })),
                    })
                }
                Outcome::Skipped(why) => json!({"name": name, "status": "skipped", "reason": why}),
                Outcome::Failed(why) => json!({"name": name, "status": "failed", "reason": why}),
            }
        })
        .collect();
    json!({
        "settings": {
            "duration_s": load.duration.as_secs_f64(),
            "warmup_s": load.warmup.as_secs_f64(),
            "connections": load.connections,
            "message_bytes": load.message,
            "bulk_bytes": load.bulk_bytes,
        },
        "scenarios": scenarios,
    })
}
