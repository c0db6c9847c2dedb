//! The data path's output: a table per load (TCP, HTTP/1.1, h2c) with every
//! figure and its ratio to the direct baseline of that load, a verdict
//! against the peers, or JSON.
//!
//! Absolute figures are medians over the rounds. Ratios are taken in each
//! round against that round's direct figures (or, Causeway against a peer,
//! that round's peer figures), then the median of those is shown: a
//! scenario is compared with a baseline measured seconds before it, under
//! the same load from whatever else the machine runs.

use std::fmt::Write as _;
use std::time::Duration;

use super::http_upstream::BODY_BYTES;
use super::{Figures, Load, Outcome, Row, Scenario, Shape};

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
        "{rounds} rounds; per round: latency over 1 connection per scenario, the scenarios taking \
         turns of {:?}; then per scenario requests/s; {:?} each after {:?} warm-up{}",
        super::latency::SLICE,
        load.duration,
        load.warmup,
        if load.busy_cpus {
            "; CPUs kept busy (nice 19) during latency phases"
        } else {
            ""
        }
    )
}

/// What the load of one table is.
fn load_line(shape: Shape, load: &Load) -> String {
    match shape {
        Shape::Tcp => format!(
            "TCP: {}-byte messages echoed, {} connections; bulk {} MiB on one stream",
            load.message,
            load.connections,
            load.bulk_bytes >> 20
        ),
        Shape::Http1 => format!(
            "HTTP/1.1 keep-alive: GET, {BODY_BYTES}-byte body, {} connections, one request in \
             flight on each",
            load.connections
        ),
        Shape::H2c => format!(
            "h2c (prior knowledge): GET, {BODY_BYTES}-byte body, {} connections x {} streams in \
             flight",
            load.h2c_connections, load.h2c_streams
        ),
    }
}

/// Causeway's figures over a peer's, both measured in every round.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VsPeer {
    /// Requests/s, ours over theirs (above 1: more).
    pub(crate) rps_x: f64,
    /// CPU per request, ours over theirs (below 1: cheaper).
    pub(crate) cpu_x: Option<f64>,
    /// p50, ours minus theirs, µs (below 0: adds less).
    pub(crate) p50_diff_us: f64,
}

/// Median per-round ratios of `ours` to `theirs`.
pub(crate) fn vs_peer(ours: &[Figures], theirs: &[Figures]) -> VsPeer {
    let div = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    let pairs: Vec<(&Figures, &Figures)> = ours.iter().zip(theirs).collect();
    let cpu = |f: &Figures| f.throughput.cpu_per_request.map_or(f64::NAN, us);
    let cpu_x = median(pairs.iter().map(|(o, t)| div(cpu(o), cpu(t))).collect());
    VsPeer {
        rps_x: median(
            pairs
                .iter()
                .map(|(o, t)| div(o.throughput.per_second, t.throughput.per_second))
                .collect(),
        ),
        cpu_x: (!cpu_x.is_nan()).then_some(cpu_x),
        p50_diff_us: median(
            pairs
                .iter()
                .map(|(o, t)| us(o.latency.p50) - us(t.latency.p50))
                .collect(),
        ),
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// The tables, one per load, then one verdict line per measured peer.
pub(crate) fn table(rows: &[Row], load: &Load, rounds: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "causeway-bench: {}", settings(load, rounds));
    let _ = writeln!(
        out,
        "medians over rounds; x = ratio to the direct baseline of the same load in the same round \
         (req/s and bulk: fraction of direct; latency: multiple); cpu = CPU µs per request of the \
         path's own processes"
    );
    for shape in [Shape::Tcp, Shape::Http1, Shape::H2c] {
        let group: Vec<&Row> = rows
            .iter()
            .filter(|r| r.scenario.shape() == shape)
            .collect();
        if group.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}", load_line(shape, load));
        let _ = writeln!(
            out,
            "{:<18} {:>8} {:>5} {:>7} {:>5} {:>7} {:>7} {:>5} {:>9} {:>5} {:>6}",
            "scenario", "req/s", "x", "p50 µs", "x", "+p50", "p99 µs", "x", "bulk MB/s", "x", "cpu"
        );
        for row in group {
            let name = row.scenario.name();
            let base = measured(rows, row.scenario.baseline());
            match (&row.outcome, base) {
                (Outcome::Measured(f), Some(b)) if !f.is_empty() => {
                    let s = summarize(f, b);
                    let _ = writeln!(
                        out,
                        "{name:<18} {:>8.0} {:>5.2} {:>7.1} {:>5.2} {:>7.1} {:>7.1} {:>5.2} {:>9} {:>5} {:>6}",
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
                    let _ = writeln!(out, "{name:<18} (no figures or no direct baseline)");
                }
                (Outcome::Skipped(why), _) => {
                    let _ = writeln!(out, "{name:<18} skipped: {why}");
                }
                (Outcome::Failed(why), _) => {
                    let _ = writeln!(out, "{name:<18} FAILED: {why}");
                }
            }
        }
    }
    let verdicts = [verdict(rows), http_verdict(rows)].concat();
    if !verdicts.is_empty() {
        let _ = write!(out, "\n{verdicts}");
    }
    out
}

/// causeway-2gw against each measured TCP peer, in this run.
fn verdict(rows: &[Row]) -> String {
    let mut out = String::new();
    let (Some(base), Some(ours)) = (
        measured(rows, Scenario::Direct),
        measured(rows, Scenario::Causeway2Gw),
    ) else {
        return out;
    };
    let ours = summarize(ours, base);
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
    out
}

/// Each HTTP scenario of Causeway against its nginx peer, hop for hop.
fn http_verdict(rows: &[Row]) -> String {
    let mut out = String::new();
    for ours in Scenario::ALL {
        let Some(peer) = ours.http_peer() else {
            continue;
        };
        let (Some(o), Some(t)) = (measured(rows, ours), measured(rows, peer)) else {
            continue;
        };
        let v = vs_peer(o, t);
        let _ = writeln!(
            out,
            "{} vs {}: req/s {:.2}x theirs; CPU per request {}x theirs; p50 {:+.1} µs against theirs",
            ours.name(),
            peer.name(),
            v.rps_x,
            opt(v.cpu_x, 2),
            v.p50_diff_us,
        );
    }
    out
}

/// The same figures as one JSON document, with every round's raw figures.
pub(crate) fn json(rows: &[Row], load: &Load, rounds: usize) -> serde_json::Value {
    use serde_json::json;
    let scenarios: Vec<_> = rows
        .iter()
        .map(|row| {
            let name = row.scenario.name();
            let shape = row.scenario.shape().name();
            let baseline = row.scenario.baseline().name();
            match &row.outcome {
                Outcome::Measured(f) => {
                    let s = measured(rows, row.scenario.baseline()).map(|b| summarize(f, b));
                    let peer = row.scenario.http_peer().and_then(|p| {
                        let v = vs_peer(f, measured(rows, p)?);
                        Some(json!({
                            "peer": p.name(),
                            "requests_per_second": v.rps_x,
                            "cpu_us_per_request": v.cpu_x,
                            "p50_difference_us": v.p50_diff_us,
                        }))
                    });
                    let per_round: Vec<_> = f
                        .iter()
                        .map(|r| {
                            json!({
                                "requests": r.throughput.requests,
                                "requests_per_second": r.throughput.per_second,
                                "cpu_us_per_request": r.throughput.cpu_per_request.map(us),
                                "reconnects": r.throughput.reconnects,
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
                        "load": shape,
                        "baseline": baseline,
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
                        "vs_peer": peer,
                        "rounds": per_round,
                    })
                }
                Outcome::Skipped(why) => {
                    json!({"name": name, "load": shape, "status": "skipped", "reason": why})
                }
                Outcome::Failed(why) => {
                    json!({"name": name, "load": shape, "status": "failed", "reason": why})
                }
            }
        })
        .collect();
    json!({
        "settings": {
            "rounds": rounds,
            "duration_s": load.duration.as_secs_f64(),
            "warmup_s": load.warmup.as_secs_f64(),
            "connections": load.connections,
            "h2c_connections": load.h2c_connections,
            "h2c_streams": load.h2c_streams,
            "message_bytes": load.message,
            "http_body_bytes": BODY_BYTES,
            "bulk_bytes": load.bulk_bytes,
            "busy_cpus": load.busy_cpus,
        },
        "scenarios": scenarios,
    })
}
