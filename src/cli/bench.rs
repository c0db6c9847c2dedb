//! `causeway bench`: the data-path benchmark (src/bench/). Prints a table
//! of figures with their ratios to a direct connection measured in the same
//! run, or JSON with `--json`; progress goes to stderr.
//!
//! `causeway bench config-stream`: the control path, how long one change
//! takes from `apply` to every gateway's ACK (src/bench/config_stream/).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use super::{parse_duration, say};
use crate::bench::config_stream::{self, Params, Shape};
use crate::bench::rotation;
use crate::bench::{self, Load, Outcome, Scenario};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BenchArgs {
    /// Without a subcommand: the data path.
    #[command(subcommand)]
    other: Option<OtherBench>,
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

#[derive(Debug, Subcommand)]
enum OtherBench {
    /// The control path: a controller with many Services and Peerings
    /// pushes one change to many connected gateways; times every step
    /// until all have ACKed it.
    ConfigStream(ConfigStreamArgs),
    /// Root rotation: one trust domain with peer controllers and many
    /// gateways rotates its root, nothing behind; times each rotation and
    /// each of its steps.
    Rotation(RotationArgs),
}

#[derive(Debug, Args)]
struct RotationArgs {
    /// Peer controllers (each with one gateway), peered both ways.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=50))]
    peers: u32,
    /// Gateways of the rotating trust domain (in this process).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=500))]
    gateways: u32,
    /// Rotations, one after the other; the report gives medians.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// How long a rotation (and the setup's waits) may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ConfigStreamArgs {
    /// Services stored at the controller.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    services: u32,
    /// Peerings stored, each with its own trust domain and root.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    peers: u32,
    /// Gateways that join and stream config (in this process).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    gateways: u32,
    /// Changes measured, one after the other; the report gives medians.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// The controller's store: embedded (a file in the run's temp dir) or
    /// an etcd given by --etcd-endpoints.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
    /// etcd's client URLs (comma-separated), for --store etcd. The run
    /// keeps its keys under a prefix of its own.
    #[arg(long, value_delimiter = ',', required_if_eq("store", "etcd"))]
    etcd_endpoints: Vec<String>,
    /// How long each wait (a version stored, every ACK) may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Embedded,
    Etcd,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.other {
        Some(OtherBench::ConfigStream(a)) => return run_config_stream(a),
        Some(OtherBench::Rotation(a)) => return run_rotation(a),
        None => {}
    }
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

fn run_config_stream(args: ConfigStreamArgs) -> anyhow::Result<ExitCode> {
    if args.store == StoreKind::Embedded && !args.etcd_endpoints.is_empty() {
        bail!("--etcd-endpoints needs --store etcd");
    }
    let params = Params {
        shape: Shape {
            services: args.services as usize,
            peers: args.peers as usize,
        },
        gateways: args.gateways as usize,
        rounds: args.rounds as usize,
        etcd_endpoints: args.etcd_endpoints,
        timeout: args.timeout,
    };
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let progress = |msg: &str| eprintln!("bench: {msg}");
    let report = rt.block_on(async {
        tokio::select! {
            r = config_stream::run(&params, &progress) => r,
            // Dropping the run stops the gateways and the controller.
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let report = report?;
    if args.json {
        say!("{}", config_stream::report::json(&report));
    } else {
        super::say_raw(format_args!("{}", config_stream::report::table(&report)));
    }
    Ok(ExitCode::SUCCESS)
}

fn run_rotation(args: RotationArgs) -> anyhow::Result<ExitCode> {
    let params = rotation::Params {
        peers: args.peers as usize,
        gateways: args.gateways as usize,
        rounds: args.rounds as usize,
        timeout: args.timeout,
    };
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let progress = |msg: &str| eprintln!("bench: {msg}");
    let report = rt.block_on(async {
        tokio::select! {
            r = rotation::run(&params, &progress) => r,
            // Dropping the run stops the gateways and the controllers.
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    let report = report?;
    if args.json {
        say!("{}", rotation::json(&report));
    } else {
        super::say_raw(format_args!("{}", rotation::table(&report)));
    }
    Ok(ExitCode::SUCCESS)
}
