//! `causeway bench`: the data-path benchmark (src/bench/). Prints a table
//! of figures with their ratios to a direct connection measured in the same
//! run, or JSON with `--json`; progress goes to stderr.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::{parse_duration, say};
use crate::bench::{self, Load, Outcome, Scenario};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Measured time of each phase (latency, then requests/s) per scenario
    /// and round.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    duration: Duration,
    /// Rounds: each measures every scenario in turn; the report gives medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=100))]
    rounds: u16,
    /// Unmeasured time on the same connections before each phase.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    warmup: Duration,
    /// Connections of the requests/s phase, each in a closed loop.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    connections: u16,
    /// Size of each request and of its echo, in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    message_bytes: u32,
    /// MiB pushed through one stream in each round's bulk phase; 0 skips it.
    #[arg(long, default_value_t = 256)]
    bulk_mib: u64,
    /// Only these scenarios (comma-separated); the direct baseline always runs.
    #[arg(long, value_enum, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Let CPUs go idle while latency is measured. By default every CPU is
    /// kept busy by lowest-priority spinning threads, so that waking an idle
    /// virtual CPU (tens to hundreds of µs on some VMs) does not dominate
    /// each hop of a round trip.
    #[arg(long)]
    idle_cpus: bool,
    /// `--threads` of the gateways under test (1: one event loop).
    #[arg(long, default_value_t = 1)]
    gateway_threads: usize,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Run as the benchmark's upstream (started by the benchmark itself).
    #[arg(long, hide = true)]
    serve_upstream: bool,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.serve_upstream {
        bench::upstream::serve()?;
        return Ok(ExitCode::SUCCESS);
    }
    let load = Load {
        duration: args.duration,
        warmup: args.warmup,
        connections: usize::from(args.connections),
        message: args.message_bytes as usize,
        bulk_bytes: args
            .bulk_mib
            .checked_mul(1024 * 1024)
            .context("--bulk-mib is too large")?,
        busy_cpus: !args.idle_cpus,
        gateway_threads: args.gateway_threads,
    };
    let selected = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let rounds = usize::from(args.rounds);
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let progress = |msg: &str| eprintln!("bench: {msg}");
    let rows = rt.block_on(async {
        tokio::select! {
            r = bench::run(&load, rounds, &selected, &progress) => r,
            // Dropping the run ends every child process it started.
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    // A latency thread may still be in a round trip; do not wait for it.
    rt.shutdown_timeout(Duration::from_secs(1));
    let rows = rows?;
    if args.json {
        say!("{}", bench::report::json(&rows, &load, rounds));
    } else {
        super::say_raw(format_args!(
            "{}",
            bench::report::table(&rows, &load, rounds)
        ));
    }
    let failed = rows.iter().any(|r| matches!(r.outcome, Outcome::Failed(_)));
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
