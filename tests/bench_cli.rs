#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! `causeway bench` stays runnable: a tiny run of the Causeway scenarios
//! (real gateway processes, real QUIC on loopback) must print every one of
//! them with requests/s above zero and a ratio to direct, in the table and
//! in JSON. The peers (nginx, haproxy) are left out: CI does not have them.

mod support;

const TINY: &[&str] = &[
    "bench",
    "--duration",
    "150ms",
    "--warmup",
    "50ms",
    "--rounds",
    "1",
    "--connections",
    "4",
    "--bulk-mib",
    "2",
    "--scenarios",
    "causeway-1gw,causeway-2gw",
];

#[test]
fn bench_prints_every_causeway_scenario_with_requests_and_ratios() {
    let run = support::causeway(TINY).success();
    for name in ["direct", "causeway-1gw", "causeway-2gw"] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} row: {run:?}"));
        let cols: Vec<&str> = line.split_whitespace().collect();
        // scenario, req/s, x, p50, x, +p50, p99, x, bulk, x, cpu
        assert_eq!(cols.len(), 11, "{name} row: {line}");
        let rps: f64 = cols[1].parse().unwrap();
        let ratio: f64 = cols[2].parse().unwrap();
        assert!(rps > 0.0, "{name}: no requests/s: {line}");
        assert!(ratio > 0.0, "{name}: no ratio to direct: {line}");
        let bulk_ratio: f64 = cols[9].parse().unwrap();
        assert!(bulk_ratio > 0.0, "{name}: no bulk ratio: {line}");
    }
    assert!(!run.stdout.contains("FAILED"), "{run:?}");
}

#[test]
fn bench_json_has_medians_and_ratios() {
    let mut args = TINY.to_vec();
    args.push("--json");
    let run = support::causeway(&args).success();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let scenarios = doc["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["direct", "causeway-1gw", "causeway-2gw"], "{run:?}");
    for s in scenarios {
        assert_eq!(s["status"], "measured", "{s}");
        assert!(
            s["median"]["requests_per_second"].as_f64().unwrap() > 0.0,
            "{s}"
        );
        assert!(
            s["ratio_to_direct"]["requests_per_second"]
                .as_f64()
                .unwrap()
                > 0.0,
            "{s}"
        );
        assert!(s["ratio_to_direct"]["p50"].as_f64().unwrap() > 0.0, "{s}");
    }
}
