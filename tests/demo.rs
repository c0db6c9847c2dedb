#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! `causeway demo`, the real binary: the whole run and its summary; with
//! `--keep-running --summary-json`, plain HTTP calls through the gateways
//! at the addresses the JSON gives, then SIGTERM; SIGINT in the middle of
//! the run. And every file of config/demo/ loaded and admitted by the code
//! that reads it in the product, the files naming each other coherently.
//!
//! Each demo process is stopped by its pid when its guard drops (SIGTERM,
//! then SIGKILL), however the test ends.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};
use support::{causeway, tmp};

/// Far more than the demo takes (about 10 s), for a loaded machine.
const RUN_LIMIT: Duration = Duration::from_secs(180);
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// A `causeway demo` process; its stdout and stderr collected as they come.
struct Demo {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_causeway"))
            .arg("demo")
            .args(args)
            .env_remove("CAUSEWAY_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |r: Box<dyn Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let t = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    let mut t = t.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}",
            self.stdout(),
            self.stderr.lock().unwrap()
        )
    }

    fn signal(&self, s: Signal) {
        kill_process(Pid::from_child(&self.child), s).unwrap();
    }

    /// Waits until stdout contains `needle`; panics if the process ends or
    /// the time is up first.
    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.stdout().contains(needle) {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the demo exited ({status}) before {needle:?}\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} within {limit:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to end, and for its output to be read whole.
    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the demo did not exit within {limit:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The temp dir the demo announced on its second line.
fn demo_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find(|l| l.contains("written to "))
        .unwrap_or_else(|| panic!("no temp dir in:\n{stdout}"));
    PathBuf::from(line.split("written to ").nth(1).unwrap().trim())
}

/// The tokens after `label` on its line of the summary.
fn summary_row<'a>(summary: &'a str, label: &str) -> Vec<&'a str> {
    let line = summary
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} row in:\n{summary}"));
    line.split_whitespace().collect()
}

const PATHS: [&str; 5] = [
    "east → west http  payments.west",
    "east → west tcp   ledger.west",
    "west → east http  inventory.east",
    "in cluster  http  inventory (east)",
    "refused     http  payments.west",
];

#[test]
fn the_demo_runs_every_path_without_a_failure_and_rotates_under_traffic() {
    let mut demo = Demo::start(&[]);
    let status = demo.wait(RUN_LIMIT);
    let out = demo.stdout();
    assert!(status.success(), "{status}\n{}", demo.output());
    let summary = out.split("== summary").nth(1).unwrap_or_else(|| {
        panic!("no summary\n{}", demo.output());
    });

    // Every path: calls, none failed, a latency for each percentile.
    for label in PATHS {
        let row = summary_row(summary, label);
        let [calls, failed, p50, p99] = row[..] else {
            panic!("{label}: {row:?}");
        };
        assert!(calls.parse::<u64>().unwrap() > 0, "{label}: {row:?}");
        assert_eq!(failed, "0", "{label}: {row:?}\n{out}");
        assert!(
            p50.ends_with("ms") && p99.ends_with("ms"),
            "{label}: {row:?}"
        );
    }
    let all = summary_row(summary, "all");
    assert_eq!(all[1], "0", "{out}");
    assert!(summary.contains(&format!("OK: {} calls, 0 failures", all[0])));

    // The refusal: a 403 with its reason, first on its own, then each time.
    let first = out
        .lines()
        .find(|l| l.trim_start().starts_with(PATHS[4]) && l.contains("403"))
        .unwrap_or_else(|| panic!("no first refused call\n{out}"));
    assert!(
        first.contains("403 denied: no rule allows spiffe://east.acme.example/ns/batch/sa/report"),
        "{first}"
    );
    let refused = summary_row(summary, "refused by policy:");
    assert!(refused[0].parse::<u64>().unwrap() > 0, "{refused:?}");

    // East's root rotated: its bundle sequence moved on; west's did not.
    let seqs = summary_row(summary, "bundle sequences:").join(" ");
    let seq = |td: &str| -> (u64, u64) {
        let rest = seqs.split(td).nth(1).unwrap();
        let mut t = rest.split_whitespace();
        let before = t.next().unwrap().parse().unwrap();
        assert_eq!(t.next(), Some("->"));
        let after = t.next().unwrap().trim_end_matches(',').parse().unwrap();
        (before, after)
    };
    let (east_before, east_after) = seq("east.acme.example");
    assert!(east_after > east_before, "{seqs}");
    let (west_before, west_after) = seq("west.globex.example");
    assert_eq!(west_before, west_after, "{seqs}");
    assert!(summary.contains("root rotation of east.acme.example: completed"));

    // Every party holds what it must, at both controllers.
    let verify = summary_row(summary, "bundles verify:").join(" ");
    assert!(
        verify.contains("in sync at east.acme.example")
            && verify.contains("in sync at west.globex.example")
            && !verify.contains("OUT OF SYNC"),
        "{verify}"
    );

    // Everything stopped and the temp dir is gone.
    assert!(out.contains("stopped: gateways, controllers, sample services"));
    assert!(!demo_dir(&out).exists());
}

/// One HTTP/1.1 request on a plain TCP connection: the status, the
/// headers (lower case) and the body.
fn http_get(addr: &str, host: &str) -> (u16, BTreeMap<String, String>, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET /from-the-test HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    c.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status.parse().unwrap(), headers, body.to_owned())
}

#[test]
fn keep_running_serves_plain_http_at_the_json_addresses_and_stops_on_sigterm() {
    let dir = tmp();
    let json_path = dir.path().join("demo.json");
    let mut demo = Demo::start(&[
        "--keep-running",
        "--summary-json",
        json_path.to_str().unwrap(),
        "--traffic",
        "1s",
    ]);
    demo.wait_for("running until Ctrl-C or SIGTERM", RUN_LIMIT);
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["ok"], true, "{json:#}");
    assert_eq!(json["results"]["failures"], 0, "{json:#}");

    // Every address a script needs.
    let east = &json["trust_domains"]["east.acme.example"];
    let west = &json["trust_domains"]["west.globex.example"];
    for td in [east, west] {
        let c = &td["controller"];
        for field in ["api", "federation", "metrics"] {
            c[field].as_str().unwrap().parse::<SocketAddr>().unwrap();
        }
        assert!(
            c["bundle_endpoint"]
                .as_str()
                .unwrap()
                .starts_with("https://127.0.0.1:")
        );
        assert!(Path::new(c["admin_socket"].as_str().unwrap()).exists());
    }
    let east_gw = &east["gateways"]["east-1"];
    let west_gw = &west["gateways"]["west-1"];
    for gw in [east_gw, west_gw] {
        for field in ["admin", "peer_listener"] {
            gw[field].as_str().unwrap().parse::<SocketAddr>().unwrap();
        }
    }
    let listener = |gw: &serde_json::Value, name: &str| {
        gw["listeners"][name]["address"]
            .as_str()
            .unwrap_or_else(|| panic!("no listener {name} in {gw}"))
            .to_owned()
    };
    let hosts: Vec<&str> = json["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["host"].as_str().unwrap())
        .collect();
    for h in [
        "payments.west",
        "ledger.west",
        "inventory.east",
        "inventory",
    ] {
        assert!(hosts.contains(&h), "{h} in {hosts:?}");
    }

    // Through east's gateway to west's sample service, as east's frontend.
    let frontend = listener(east_gw, "frontend");
    let (status, headers, body) = http_get(&frontend, "payments.west");
    assert_eq!(status, 200, "{headers:?} {body}");
    assert_eq!(
        body.trim(),
        "payments at west.globex.example: GET /from-the-test from \
         spiffe://east.acme.example/ns/shop/sa/frontend (principal east-frontend)"
    );
    // The same with a plain curl (.ci/install-deps installs it).
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(args)
            .output()
            .expect("curl is installed (.ci/install-deps)")
    };
    let out = curl(&[
        "-sS",
        "-H",
        "Host: payments.west",
        &format!("http://{frontend}/curl"),
    ]);
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && body.starts_with("payments at west.globex.example: GET /curl"),
        "{out:?}"
    );
    // Refused by west's policy: east's batch job.
    let batch = listener(east_gw, "batch");
    let (status, headers, body) = http_get(&batch, "payments.west");
    assert_eq!(status, 403, "{headers:?} {body}");
    assert_eq!(headers["x-causeway-refusal"], "denied");
    assert!(body.starts_with("403 denied: no rule allows"), "{body}");
    let out = curl(&[
        "-sS",
        "-i",
        "-H",
        "Host: payments.west",
        &format!("http://{batch}/"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success()
            && text.starts_with("HTTP/1.1 403")
            && text.contains("x-causeway-refusal: denied"),
        "{out:?}"
    );
    // West to east, and in cluster at east.
    let (status, _, body) = http_get(&listener(west_gw, "payments"), "inventory.east");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("from spiffe://west.globex.example/ns/payments/sa/api"),
        "{body}"
    );
    let (status, _, body) = http_get(&frontend, "inventory");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("inventory at east.acme.example"), "{body}");

    // The CLI works against the demo's controllers.
    let sock = east["controller"]["admin_socket"].as_str().unwrap();
    let verify = causeway(&["bundles", "verify", "--controller", sock]).success();
    assert!(verify.stdout.starts_with("in sync"), "{verify:?}");

    // SIGTERM: everything stops, exit 0, the temp dir is gone.
    demo.signal(Signal::TERM);
    let status = demo.wait(STOP_LIMIT);
    assert_eq!(status.code(), Some(0), "{}", demo.output());
    let out = demo.stdout();
    assert!(out.contains("terminated (SIGTERM): stopping"), "{out}");
    assert!(out.contains("removed"), "{out}");
    assert!(!Path::new(json["dir"].as_str().unwrap()).exists());
    assert!(
        TcpStream::connect(&frontend).is_err(),
        "east's gateway still listens"
    );
}

#[test]
fn ctrl_c_in_the_middle_stops_everything() {
    let mut demo = Demo::start(&["--traffic", "30s"]);
    demo.wait_for("calls so far", RUN_LIMIT);
    demo.signal(Signal::INT);
    let status = demo.wait(STOP_LIMIT);
    assert_eq!(status.code(), Some(130), "{}", demo.output());
    let out = demo.stdout();
    assert!(out.contains("interrupted (SIGINT): stopping"), "{out}");
    assert!(!out.contains("== summary"), "{out}");
    assert!(!demo_dir(&out).exists(), "{out}");
}
