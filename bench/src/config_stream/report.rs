//! The config-stream benchmark's output: a table of each phase's median,
//! minimum and maximum over the rounds, or JSON with every round.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use super::resources::{CHANGED, service_name};
use super::{Report, Round};

/// A phase: its JSON key, its label, and its length in a round.
type Phase = (&'static str, &'static str, fn(&Round) -> Duration);

/// The phases of one change, each from one instant to another.
const PHASES: [Phase; 7] = [
    ("apply", "apply call (start → return)", |r| {
        r.apply_returned
    }),
    ("apply_to_stored", "apply return → version stored", |r| {
        r.stored.saturating_sub(r.apply_returned)
    }),
    ("stored_to_first_ack", "version stored → first ACK", |r| {
        r.first_ack.saturating_sub(r.stored)
    }),
    ("stored_to_all_acked", "version stored → every ACK", |r| {
        r.last_ack.saturating_sub(r.stored)
    }),
    ("return_to_all_acked", "apply return → every ACK", |r| {
        r.last_ack.saturating_sub(r.apply_returned)
    }),
    ("start_to_all_acked", "apply start → every ACK", |r| {
        r.last_ack
    }),
    (
        "return_to_all_recorded",
        "apply return → controller recorded every ACK",
        |r| r.last_recorded.saturating_sub(r.apply_returned),
    ),
];

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median, minimum and maximum in ms.
fn stats(rounds: &[Round], f: fn(&Round) -> Duration) -> (f64, f64, f64) {
    let mut v: Vec<f64> = rounds.iter().map(|r| ms(f(r))).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}

impl Report {
    /// Gateways that ACKed the version of every round.
    pub(crate) fn acked(&self) -> usize {
        self.rounds.iter().map(|r| r.acked).min().unwrap_or(0)
    }
}

/// "1 round", "5 rounds".
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub(crate) fn table(r: &Report) -> String {
    let p = &r.params;
    let s = &r.snapshot;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "config stream: {}, {}, {}, {} store, {}",
        count(p.shape.services, "service"),
        count(p.shape.peers, "peer"),
        count(p.gateways, "gateway"),
        p.store_name(),
        count(p.rounds, "round"),
    );
    let _ = writeln!(
        out,
        "snapshot: {} bytes; {} services (one per port), {} imports, {} peers, {} rules, \
         {} identity mappings, {} bundles",
        s.bytes, s.services, s.imports, s.peers, s.rules, s.identity_map, s.bundles
    );
    let u = &r.setup;
    let _ = writeln!(
        out,
        "setup: generate {:.0} ms, apply all in {} {:.0} ms, then stored {:.0} ms; \
         {} {:.0} ms; every gateway ACKed the whole config {:.0} ms after its stream opened",
        ms(u.generate),
        count(u.apply_calls, "call"),
        ms(u.apply),
        ms(u.apply_to_stored),
        count(p.gateways, "join"),
        ms(u.joins),
        ms(u.initial_sync)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<46} {:>9} {:>9} {:>9}",
        format!("one change ({}'s endpoints), ms", service_name(CHANGED)),
        "median",
        "min",
        "max"
    );
    for (_, label, f) in PHASES {
        let (median, min, max) = stats(&r.rounds, f);
        let _ = writeln!(out, "{label:<46} {median:>9.1} {min:>9.1} {max:>9.1}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "acked: {}/{}, every version of {}",
        r.acked(),
        count(p.gateways, "gateway"),
        count(r.rounds.len(), "round"),
    );
    out
}

pub(crate) fn json(r: &Report) -> String {
    let p = &r.params;
    let s = &r.snapshot;
    let u = &r.setup;
    let mut summary = serde_json::Map::new();
    for (key, _, f) in PHASES {
        let (median, min, max) = stats(&r.rounds, f);
        summary.insert(
            key.into(),
            json!({ "median_ms": median, "min_ms": min, "max_ms": max }),
        );
    }
    let rounds: Vec<Value> = r
        .rounds
        .iter()
        .map(|round| {
            let mut m = serde_json::Map::new();
            m.insert("version".into(), round.version.into());
            for (key, _, f) in PHASES {
                m.insert(format!("{key}_ms"), ms(f(round)).into());
            }
            Value::Object(m)
        })
        .collect();
    json!({
        "benchmark": "config-stream",
        "params": {
            "services": p.shape.services,
            "peers": p.shape.peers,
            "gateways": p.gateways,
            "rounds": p.rounds,
            "store": p.store_name(),
            "changed": service_name(CHANGED),
        },
        "snapshot": {
            "version": s.version,
            "bytes": s.bytes,
            "services": s.services,
            "imports": s.imports,
            "peers": s.peers,
            "rules": s.rules,
            "identity_map": s.identity_map,
            "bundles": s.bundles,
        },
        "setup_ms": {
            "generate": ms(u.generate),
            "apply": ms(u.apply),
            "apply_calls": u.apply_calls,
            "apply_to_stored": ms(u.apply_to_stored),
            "joins": ms(u.joins),
            "initial_sync": ms(u.initial_sync),
        },
        "gateways_acked": r.acked(),
        "summary": summary,
        "rounds": rounds,
    })
    .to_string()
}
