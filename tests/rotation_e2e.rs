#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Root rotation end to end, every part a real process on loopback: three
//! trust domains (alpha, beta, gamma), each a controller with its gateway,
//! joined with tokens and peered with each other by Peering files; steady
//! load between every pair of domains, both ways (six load generators);
//! a full rotation of alpha's root (`causeway rotate start`, then every
//! step to `completed`). No request may fail, and `causeway bundles
//! verify` must exit 0 at every controller before and after.
//!
//! The run is causeway-chaos's `rotation-under-load` scenario; its
//! processes are killed by pid when it ends, however it ends.

use std::path::PathBuf;
use std::sync::Arc;

use causeway_chaos::{Causeway, Options, find};

#[test]
fn three_domains_rotate_one_root_under_load_without_a_failed_request() {
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
    let report = find("rotation-under-load").unwrap().run(&options);
    let text = report.text();
    #[allow(clippy::print_stderr, reason = "the figures of the run")]
    {
        eprintln!("{text}");
    }
    assert!(report.error.is_none(), "{text}");
    let missing = report.missing(&[
        "bundles verify exits 0 at alpha.example before",
        "bundles verify exits 0 at beta.example before",
        "bundles verify exits 0 at gamma.example before",
        "rotate start at alpha.example accepted",
        "rotation ",
        "every step recorded",
        "every direction carried requests during the rotation",
        "bundles verify exits 0 at alpha.example after",
        "bundles verify exits 0 at beta.example after",
        "bundles verify exits 0 at gamma.example after",
    ]);
    assert!(missing.is_empty(), "not shown: {missing:?}\n{text}");
    // Six directions, each with answers and not one failure.
    let pairs: Vec<&str> = report.loads.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        pairs,
        [
            "alpha->beta",
            "alpha->gamma",
            "beta->alpha",
            "beta->gamma",
            "gamma->alpha",
            "gamma->beta"
        ],
        "{text}"
    );
    for (name, f) in &report.loads {
        assert!(f.ok > 100, "{name}: too few answers\n{text}");
        assert_eq!(f.failed, 0, "{name}: {:?}\n{text}", f.failures);
    }
    assert!(report.passed(), "{text}");
}
