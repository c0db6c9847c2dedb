//! `causeway-chaos`: runs one chaos scenario against the real `causeway`
//! binary and prints its figures and verdict; exit 1 on FAIL.
//!
//! ```sh
//! cargo build --bin causeway
//! cargo run -p causeway-chaos -- list
//! cargo run -p causeway-chaos -- rotation-under-load [--json]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use causeway_chaos::{Causeway, Options, SCENARIOS, find};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "causeway-chaos",
    about = "Chaos scenarios on real Causeway processes"
)]
struct Args {
    /// A scenario's name, `all`, or `list`.
    scenario: String,
    /// Print the report as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    json: bool,
    /// The causeway binary (default: $CAUSEWAY_BIN, else next to this program).
    #[arg(long, value_name = "FILE")]
    causeway: Option<PathBuf>,
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]
fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("causeway-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line program"
)]
fn run() -> Result<bool> {
    let args = Args::parse();
    if args.scenario == "list" {
        for s in SCENARIOS {
            println!("{:<28} {}", s.name, s.summary);
        }
        return Ok(true);
    }
    let chosen: Vec<_> = if args.scenario == "all" {
        SCENARIOS.to_vec()
    } else {
        vec![find(&args.scenario).with_context(|| {
            format!(
                "no scenario {:?}; `causeway-chaos list` names them",
                args.scenario
            )
        })?]
    };
    let options = Options {
        causeway: Causeway::locate(args.causeway)?,
        progress: Arc::new(|line: &str| eprintln!("{line}")),
    };
    let mut all = true;
    for s in chosen {
        let report = s.run(&options);
        if args.json {
            println!("{}", report.json());
        } else {
            print!("{}", report.text());
        }
        all &= report.passed();
    }
    Ok(all)
}
