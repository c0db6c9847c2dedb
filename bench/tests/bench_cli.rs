#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! `causeway-bench` stays runnable. The data path: a tiny run of every
//! Causeway scenario, TCP, HTTP/1.1 and h2c (real gateway processes of the
//! `causeway` binary, real QUIC on loopback), must print each with
//! requests/s above zero and a ratio to its direct baseline, in the table
//! and in JSON. The peers (nginx, haproxy) are left out: CI does not have
//! them. The control path and rotation benches: one tiny run each.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;

/// The bench under test.
const BENCH: &str = env!("CARGO_BIN_EXE_causeway-bench");

/// The `causeway` binary next to the bench, where the bench looks for it.
/// `cargo test --workspace` has built it already; `cargo test -p
/// causeway-bench` has not, and then it is built here, once, in the same
/// target directory and profile.
fn causeway_next_to_bench() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(BENCH).parent().unwrap();
        let bin = dir.join("causeway");
        if !bin.is_file() {
            let mut cargo = Command::new(env!("CARGO"));
            cargo.args(["build", "-p", "causeway", "--bin", "causeway"]);
            if dir.file_name().is_some_and(|n| n == "release") {
                cargo.arg("--release");
            }
            let status = cargo.status().unwrap();
            assert!(status.success(), "building causeway: {status}");
            assert!(bin.is_file(), "no {} after the build", bin.display());
        }
        bin
    })
}

/// The outcome of one run of the bench.
struct Run {
    cmdline: String,
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }
}

impl Run {
    #[track_caller]
    fn success(self) -> Self {
        assert!(self.status.success(), "expected success: {self:?}");
        self
    }
}

fn bench(args: &[&str]) -> Run {
    let out = Command::new(BENCH)
        .args(args)
        .env_remove("CAUSEWAY_LOG")
        .env_remove("CAUSEWAY_BIN")
        .output()
        .unwrap();
    Run {
        cmdline: format!("causeway-bench {}", args.join(" ")),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const TINY: &[&str] = &[
    "--duration",
    "150ms",
    "--warmup",
    "50ms",
    "--rounds",
    "1",
    "--connections",
    "4",
    "--h2c-connections",
    "2",
    "--h2c-streams",
    "4",
    "--bulk-mib",
    "2",
    "--scenarios",
    "causeway-1gw,causeway-2gw,causeway-1gw-http,causeway-2gw-http,causeway-1gw-h2c,causeway-2gw-h2c",
];

/// Every row the tiny run prints, in the report's order.
const ROWS: [&str; 9] = [
    "direct",
    "causeway-1gw",
    "causeway-2gw",
    "direct-http",
    "causeway-1gw-http",
    "causeway-2gw-http",
    "direct-h2c",
    "causeway-1gw-h2c",
    "causeway-2gw-h2c",
];

#[test]
fn bench_prints_every_causeway_scenario_with_requests_and_ratios() {
    causeway_next_to_bench();
    let run = bench(TINY).success();
    for name in ROWS {
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
        let p50_ratio: f64 = cols[4].parse().unwrap();
        assert!(rps > 0.0, "{name}: no requests/s: {line}");
        assert!(ratio > 0.0, "{name}: no ratio to direct: {line}");
        assert!(p50_ratio > 0.0, "{name}: no p50 ratio: {line}");
        if name.ends_with("-http") || name.ends_with("-h2c") {
            assert_eq!(cols[9], "-", "{name}: HTTP has no bulk phase: {line}");
        } else {
            let bulk_ratio: f64 = cols[9].parse().unwrap();
            assert!(bulk_ratio > 0.0, "{name}: no bulk ratio: {line}");
        }
    }
    for load in ["TCP: ", "HTTP/1.1 keep-alive: ", "h2c (prior knowledge): "] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with(load)),
            "no {load:?} table: {run:?}"
        );
    }
    assert!(!run.stdout.contains("FAILED"), "{run:?}");
}

#[test]
fn bench_json_has_medians_and_ratios() {
    causeway_next_to_bench();
    let mut args = TINY.to_vec();
    args.push("--json");
    let run = bench(&args).success();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let scenarios = doc["scenarios"].as_array().unwrap();
    let names: Vec<&str> = scenarios
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ROWS, "{run:?}");
    for s in scenarios {
        assert_eq!(s["status"], "measured", "{s}");
        let name = s["name"].as_str().unwrap();
        let baseline = match s["load"].as_str().unwrap() {
            "tcp" => "direct",
            "http1" => "direct-http",
            "h2c" => "direct-h2c",
            other => panic!("{name}: load {other}"),
        };
        assert_eq!(s["baseline"], baseline, "{s}");
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
        // nginx was not selected: nothing to set Causeway beside.
        assert!(s["vs_peer"].is_null(), "{s}");
    }
}

#[test]
fn a_causeway_binary_that_is_not_there_is_named() {
    let out = Command::new(BENCH)
        .args([
            "--scenarios",
            "causeway-1gw",
            "--causeway",
            "/nonexistent/causeway",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no causeway binary at /nonexistent/causeway"),
        "{stderr}"
    );
}

const CONFIG_STREAM_TINY: &[&str] = &[
    "config-stream",
    "--services",
    "20",
    "--peers",
    "3",
    "--gateways",
    "3",
    "--rounds",
    "1",
];

/// `causeway-bench config-stream` stays runnable: a real controller in
/// process, three gateways that join with tokens and stream over mTLS, one
/// change; every gateway ACKs it and every phase has a figure. No timing
/// is asserted.
#[test]
fn bench_config_stream_reports_every_gateway_acked() {
    let run = bench(CONFIG_STREAM_TINY).success();
    assert!(
        run.stdout
            .contains("config stream: 20 services, 3 peers, 3 gateways, embedded store, 1 round"),
        "{run:?}"
    );
    assert!(
        run.stdout
            .contains("acked: 3/3 gateways, every version of 1 round"),
        "{run:?}"
    );
    for phase in [
        "apply call (start → return)",
        "apply return → version stored",
        "version stored → every ACK",
        "apply start → every ACK",
        "apply return → controller recorded every ACK",
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.starts_with(phase))
            .unwrap_or_else(|| panic!("no {phase:?} row: {run:?}"));
        let figures: Vec<f64> = line[phase.len()..]
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        assert_eq!(figures.len(), 3, "median, min, max: {line}");
    }
}

#[test]
fn bench_config_stream_json_has_the_counts_and_every_round() {
    let mut args = CONFIG_STREAM_TINY.to_vec();
    args.push("--json");
    let run = bench(&args).success();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["benchmark"], "config-stream", "{run:?}");
    assert_eq!(doc["gateways_acked"], 3, "{run:?}");
    assert_eq!(doc["snapshot"]["peers"], 3, "{run:?}");
    // A bundle per peer, and the own one.
    assert_eq!(doc["snapshot"]["bundles"], 4, "{run:?}");
    assert!(doc["snapshot"]["bytes"].as_u64().unwrap() > 0, "{run:?}");
    let rounds = doc["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 1, "{run:?}");
    assert!(
        rounds[0]["start_to_all_acked_ms"].as_f64().unwrap() > 0.0,
        "{run:?}"
    );
    assert!(
        doc["summary"]["stored_to_all_acked"]["median_ms"].is_number(),
        "{run:?}"
    );
}

/// `causeway-bench rotation` stays runnable: one peer controller, three
/// gateways of the rotating domain, two rotations one after the other,
/// each completed with every step recorded and the bundle's sequence two
/// further on (both roots, then the new one). No timing is asserted.
#[test]
fn bench_rotation_completes_every_rotation_with_every_step() {
    let run = bench(&[
        "rotation",
        "--peers",
        "1",
        "--gateways",
        "3",
        "--rounds",
        "2",
        "--json",
    ])
    .success();
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["benchmark"], "rotation", "{run:?}");
    let rounds = doc["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2, "{run:?}");
    for r in rounds {
        // 3 local gateways, the peer's controller and its gateway.
        assert_eq!(r["parties"], 5, "{r}");
        let steps: Vec<&str> = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            [
                "verify",
                "publish_both",
                "await_both",
                "issue",
                "await_svids",
                "publish_final",
                "await_final"
            ],
            "{r}"
        );
        assert_eq!(
            r["sequence_after"].as_u64().unwrap(),
            r["sequence_before"].as_u64().unwrap() + 2,
            "{r}"
        );
    }
    assert_eq!(rounds[1]["sequence_before"], rounds[0]["sequence_after"]);
}
