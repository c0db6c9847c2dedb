#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The chaos scenarios of causeway-chaos, each on real `causeway`
//! processes on loopback, each asserting the outcome it promises. They run
//! one at a time: each starts a federation of its own, and two at once on
//! a small machine would measure the machine.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use causeway_chaos::{Causeway, Options, Report, find};

/// One scenario at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(name: &str) -> (Report, String) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let options = Options {
        causeway: Causeway {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_causeway")),
        },
        progress: Arc::new(|line: &str| {
            #[allow(clippy::print_stderr, reason = "the run's progress")]
            {
                eprintln!("{line}");
            }
        }),
    };
    let report = find(name).unwrap().run(&options);
    let text = report.text();
    #[allow(clippy::print_stderr, reason = "the figures of the run")]
    {
        eprintln!("{text}");
    }
    assert!(report.error.is_none(), "{text}");
    (report, text)
}

/// Every load had answers and no failure.
#[track_caller]
fn assert_no_failed_request(report: &Report, text: &str) {
    assert!(!report.loads.is_empty(), "{text}");
    for (name, f) in &report.loads {
        assert!(f.ok > 50, "{name}: too few answers\n{text}");
        assert_eq!(f.failed, 0, "{name}: {:?}\n{text}", f.failures);
    }
}

#[test]
fn a_controller_crash_at_each_rotation_step_resumes_to_completion() {
    let (report, text) = run("controller-crash-each-step");
    let mut expected = Vec::new();
    for step in [
        "publish_both",
        "await_both",
        "issue",
        "await_svids",
        "publish_final",
        "await_final",
    ] {
        expected.push(format!(
            "crash at {step}: the controller aborted as it began the step"
        ));
        expected.push(format!("crash at {step}: the rotation survived the crash"));
        expected.push(format!("crash at {step}: a new rotation each time"));
    }
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    let missing = report.missing(&expected);
    assert!(missing.is_empty(), "not shown: {missing:?}\n{text}");
    let completed = report
        .checks
        .iter()
        .filter(|c| c.ok && c.what.starts_with("rotation ") && c.what.ends_with(" completed"))
        .count();
    assert_eq!(completed, 6, "six rotations resumed to completed\n{text}");
    assert_no_failed_request(&report, &text);
    assert!(report.passed(), "{text}");
}

#[test]
fn a_rotation_waits_for_a_peer_controller_that_is_down_then_completes() {
    let (report, text) = run("peer-controller-down");
    let missing = report.missing(&[
        "the rotation waits in await_both, naming peer_controller beta.example",
        "bundles verify exits 1, naming the controller of beta.example unreachable",
        "after ",
        "rotation ",
        "every step recorded",
        "bundles verify exits 0 at alpha.example after",
        "bundles verify exits 0 at beta.example after",
    ]);
    assert!(missing.is_empty(), "not shown: {missing:?}\n{text}");
    assert_no_failed_request(&report, &text);
    assert!(report.passed(), "{text}");
}

#[test]
fn a_stale_peer_gateway_is_named_pauses_the_rotation_and_resume_completes_it() {
    let (report, text) = run("peer-gateway-stale");
    let missing = report.missing(&[
        "bundles verify exits 1 naming beta-2: \"holds sequence 1, not 2\"",
        "the rotation pauses in await_both with a reason naming beta-2",
        "rotate resume --wait exits 0 (completed)",
        "rotation ",
        "bundles verify exits 0 at alpha.example after",
    ]);
    assert!(missing.is_empty(), "not shown: {missing:?}\n{text}");
    assert_no_failed_request(&report, &text);
    assert!(report.passed(), "{text}");
}

#[test]
fn without_its_issuer_a_gateway_serves_until_its_svid_expires_then_is_refused() {
    let (report, text) = run("issuer-down");
    let missing = report.missing(&[
        "no renewal without the issuer",
        "renewals fail and are retried",
        "CausewaySvidRenewalFailing: its condition holds, the alert would fire",
        "load alpha->beta: no failure before the SVID expired",
        "load beta->alpha: no failure before the SVID expired",
        "requests across alpha.example fail within 3000 ms after the expiry",
        "no request across alpha.example succeeds once refused",
    ]);
    assert!(missing.is_empty(), "not shown: {missing:?}\n{text}");
    assert!(report.passed(), "{text}");
}
