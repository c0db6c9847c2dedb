//! The benchmark's output: a table with every figure and its ratio to the
//! direct baseline of the same run, a verdict against the peers, or JSON.
//!
//! Absolute figures are medians over the rounds. Ratios are taken in each
//! round against that round's direct figures, then the median of those is
//! shown: a scenario is compared with a baseline measured seconds before
//! it, under the same load from whatever else the machine runs.

use std::fmt::Write as _;
use std::time::Duration;

use super::{Figures, Load, Outcome, Row, Scenario};

/// One scenario's figures over the rounds, and its ratios to direct.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Summary {
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) bulk_mbps: Option<f64>,
    /// CPU µs per request of the path's own processes.
    pub(crate) cpu_us: Option<f64>,
    /// Requests/s as a fraction of direct (1.0 = as fast as direct).
    pub(crate) rps_x: f64,
    /// p50 as a multiple of direct's (1.0 = no added latency).
    pub(crate) p50_x: f64,
    pub(crate) p99_x: f64,
    /// Microseconds added to direct's p50.
    pub(crate) added_p50_us: f64,
    pub(crate) bulk_x: Option<f64>,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The median; NaN for none.
fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_of(rounds: &[Figures], f: impl Fn(&Figures) -> Option<f64>) -> Option<f64> {
    let v: Vec<f64> = rounds.iter().filter_map(f).collect();
    (!v.is_empty()).then(|| median(v))
}

/// Medians over rounds, and median per-round ratios to `base`'s rounds.
pub(crate) fn summarize(rounds: &[Figures], base: &[Figures]) -> Summary {
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let pairs: Vec<(&Figures, &Figures)> = rounds.iter().zip(base).collect();
    let ratio =
        |f: &dyn Fn(&Figures) -> f64| median(pairs.iter().map(|(s, b)| div(f(s), f(b))).collect());
    let rps = |f: &Figures| f.throughput.per_second;
    let p50 = |f: &Figures| us(f.latency.p50);
    let p99 = |f: &Figures| us(f.latency.p99);
    let bulk = |f: &Figures| f.bulk.map_or(f64::NAN, |b| b.mb_per_second());
    let bulk_x = ratio(&bulk);
    Summary {
        rps: median_of(rounds, |f| Some(rps(f))).unwrap_or(f64::NAN),
        p50_us: median_of(rounds, |f| Some(p50(f))).unwrap_or(f64::NAN),
        p99_us: median_of(rounds, |f| Some(p99(f))).unwrap_or(f64::NAN),
        bulk_mbps: median_of(rounds, |f| f.bulk.map(|b| b.mb_per_second())),
        cpu_us: median_of(rounds, |f| f.throughput.cpu_per_request.map(us)),
        rps_x: ratio(&rps),
        p50_x: ratio(&p50),
        p99_x: ratio(&p99),
        added_p50_us: median(pairs.iter().map(|(s, b)| p50(s) - p50(b)).collect()),
        bulk_x: (!bulk_x.is_nan()).then_some(bulk_x),
    }
}

fn measured(rows: &[Row], s: Scenario) -> Option<&[Figures]> {
    rows.iter().find_map(|r| match &r.outcome {
        Outcome::Measured(f) if r.scenario == s && !f.is_empty() => Some(f.as_slice()),
        _ => None,
    })
}

fn settings(load: &Load, rounds: usize) -> String {
    format!(
        "{rounds} rounds; per round: latency over 1 connection per path, the paths taking turns \
         of {:?}; then per scenario requests/s over {} connections; {:?} each after {:?} warm-up, \
         {}-byte messages; bulk {} MiB on one stream{}",
        super::load::SLICE,
        load.connections,
        load.duration,
        load.warmup,
        load.message,
        load.bulk_bytes >> 20,
        if load.busy_cpus {
            "; CPUs kept busy (nice 19) during latency phases"
        } else {
            ""
        }
    )
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// The table, then one verdict line per measured peer.
pub(crate) fn table(rows: &[Row], load: &Load, rounds: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "causeway bench: {}", settings(load, rounds));
    let _ = writeln!(
        out,
        "medians over rounds; x = ratio to direct in the same round (req/s and bulk: fraction of \
         direct; latency: multiple); cpu = CPU µs per request of the path's own processes\n"
    );
    let _ = writeln!(
        out,
        "{:<14} {:>8} {:>5} {:>7} {:>5} {:>7} {:>7} {:>5} {:>9} {:>5} {:>6}",
        "scenario", "req/s", "x", "p50 µs", "x", "+p50", "p99 µs", "x", "bulk MB/s", "x", "cpu"
    );
    let base = measured(rows, Scenario::Direct);
    for row in rows {
        let name = row.scenario.name();
        match (&row.outcome, base) {
            (Outcome::Measured(f), Some(b)) if !f.is_empty() => {
                let s = summarize(f, b);
                let _ = writeln!(
                    out,
                    "{name:<14} {:>8.0} {:>5.2} {:>7.1} {:>5.2} {:>7.1} {:>7.1} {:>5.2} {:>9} {:>5} {:>6}",
                    s.rps,
                    s.rps_x,
                    s.p50_us,
                    s.p50_x,
                    s.added_p50_us,
                    s.p99_us,
                    s.p99_x,
                    opt(s.bulk_mbps, 0),
                    opt(s.bulk_x, 2),
                    opt(s.cpu_us, 1),
                );
            }
            (Outcome::Measured(_), _) => {
                let _ = writeln!(out, "{name:<14} (no figures or no direct baseline)");
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
    let base = measured(rows, Scenario::Direct)?;
    let ours = summarize(measured(rows, Scenario::Causeway2Gw)?, base);
    let mut out = String::new();
    for peer in [Scenario::Nginx2Hop, Scenario::Haproxy2Hop] {
        let Some(theirs) = measured(rows, peer) else {
            continue;
        };
        let t = summarize(theirs, base);
        let more = ours.rps_x > t.rps_x;
        let less = ours.added_p50_us < t.added_p50_us;
        let _ = writeln!(
            out,
            "causeway-2gw vs {}: req/s {:.2} vs {:.2} of direct ({}); added p50 {:.1} vs {:.1} µs ({}): {}",
            peer.name(),
            ours.rps_x,
            t.rps_x,
            if more { "more" } else { "LESS" },
            ours.added_p50_us,
            t.added_p50_us,
            if less { "less" } else { "MORE" },
            if more && less {
                "Causeway ahead on both"
            } else {
                "Causeway behind"
            },
        );
    }
    (!out.is_empty()).then_some(out)
}

/// The same figures as one JSON document, with every round's raw figures.
pub(crate) fn json(rows: &[Row], load: &Load, rounds: usize) -> serde_json::Value {
    use serde_json::json;
    let base = measured(rows, Scenario::Direct);
    let scenarios: Vec<_> = rows
        .iter()
        .map(|row| {
            let name = row.scenario.name();
            match &row.outcome {
                Outcome::Measured(f) => {
                    let s = base.map(|b| summarize(f, b));
                    let per_round: Vec<_> = f
                        .iter()
                        .map(|r| {
                            json!({
                                "requests": r.throughput.requests,
                                "requests_per_second": r.throughput.per_second,
                                "cpu_us_per_request": r.throughput.cpu_per_request.map(us),
                                "latency_samples": r.latency.samples,
                                "p50_us": us(r.latency.p50),
                                "p99_us": us(r.latency.p99),
                                "bulk_bytes": r.bulk.map(|b| b.bytes),
                                "bulk_mb_per_second": r.bulk.map(|b| b.mb_per_second()),
                            })
                        })
                        .collect();
                    json!({
                        "name": name,
                        "status": "measured",
                        "median": s.map(|s| json!({
                            "requests_per_second": s.rps,
                            "p50_us": s.p50_us,
                            "p99_us": s.p99_us,
                            "bulk_mb_per_second": s.bulk_mbps,
                            "cpu_us_per_request": s.cpu_us,
                        })),
                        "ratio_to_direct": s.map(|s| json!({
                            "requests_per_second": s.rps_x,
                            "p50": s.p50_x,
                            "p99": s.p99_x,
                            "added_p50_us": s.added_p50_us,
                            "bulk": s.bulk_x,
                        })),
                        "rounds": per_round,
                    })
                }
                Outcome::Skipped(why) => json!({"name": name, "status": "skipped", "reason": why}),
                Outcome::Failed(why) => json!({"name": name, "status": "failed", "reason": why}),
            }
        })
        .collect();
    json!({
        "settings": {
            "rounds": rounds,
            "duration_s": load.duration.as_secs_f64(),
            "warmup_s": load.warmup.as_secs_f64(),
            "connections": load.connections,
            "message_bytes": load.message,
            "bulk_bytes": load.bulk_bytes,
            "busy_cpus": load.busy_cpus,
        },
        "scenarios": scenarios,
    })
}
