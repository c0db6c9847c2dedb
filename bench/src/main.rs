//! `causeway-bench`: Causeway's benchmarks, outside the product binary.
//!
//! - no subcommand: the data path (src/data/), TCP and HTTP, through real
//!   `causeway gateway` processes and, where installed, nginx and haproxy,
//!   each figure set beside a direct connection measured in the same run;
//! - `config-stream`: the control path, how long one change takes from
//!   `apply` to every gateway's ACK (src/config_stream/);
//! - `rotation`: a root rotation with peers and many gateways
//!   (src/rotation.rs).
//!
//! The report goes to stdout (a table, or JSON with `--json`); progress
//! goes to stderr. The data path's gateways are the `causeway` binary next
//! to this one (`cargo build --release` first), or `--causeway FILE`, or
//! `$CAUSEWAY_BIN`; its upstreams are this binary (hidden subcommands).

#![allow(clippy::print_stderr, reason = "progress and errors go to stderr")]

mod config_stream;
mod data;
mod out;
mod rotation;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use config_stream::{Params, Shape};
use data::{Load, Outcome, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "causeway-bench",
    about = "Causeway's benchmarks: the data path against direct and against nginx/haproxy \
             (no subcommand), the config stream, root rotation",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    data: DataArgs,
}

/// The data path (no subcommand).
#[derive(Debug, Args)]
struct DataArgs {
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
    /// Connections of the requests/s phase of TCP and HTTP/1.1, each in a
    /// closed loop.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    connections: u16,
    /// h2c: connections of the requests/s phase...
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    h2c_connections: u16,
    /// ...and requests in flight on each, each stream in a closed loop.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    h2c_streams: u16,
    /// TCP: size of each request and of its echo, in bytes.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=65536))]
    message_bytes: u32,
    /// TCP: MiB pushed through one stream in each round's bulk phase; 0
    /// skips it.
    #[arg(long, default_value_t = 256)]
    bulk_mib: u64,
    /// Only these scenarios (comma-separated); the direct baseline of each
    /// load (direct, direct-http, direct-h2c) always runs with them.
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
    /// The `causeway` binary the gateways run (default: $CAUSEWAY_BIN, else
    /// the one next to this program, in the same target directory).
    #[arg(long, value_name = "FILE")]
    causeway: Option<PathBuf>,
    /// Print the figures as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The control path: a controller with many Services and Peerings
    /// pushes one change to many connected gateways; times every step
    /// until all have ACKed it.
    ConfigStream(ConfigStreamArgs),
    /// Root rotation: one trust domain with peer controllers and many
    /// gateways rotates its root, nothing behind; times each rotation and
    /// each of its steps.
    Rotation(RotationArgs),
    /// The data path's TCP upstream (started by the benchmark itself).
    #[command(hide = true)]
    ServeUpstream,
    /// The data path's HTTP/1.1 and h2c upstream (started by the benchmark
    /// itself).
    #[command(hide = true)]
    ServeHttpUpstream,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    causeway_trust::tls::install_default_provider();
    let result = match cli.command {
        None => run_data_path(cli.data),
        Some(Command::ConfigStream(a)) => run_config_stream(a),
        Some(Command::Rotation(a)) => run_rotation(a),
        Some(Command::ServeUpstream) => data::upstream::serve().map(|()| ExitCode::SUCCESS),
        Some(Command::ServeHttpUpstream) => {
            data::http_upstream::serve().map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("causeway-bench: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Logs on stderr, warnings unless `CAUSEWAY_LOG` says otherwise.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CAUSEWAY_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

fn progress(msg: &str) {
    eprintln!("bench: {msg}");
}

fn run_data_path(args: DataArgs) -> anyhow::Result<ExitCode> {
    let load = Load {
        duration: args.duration,
        warmup: args.warmup,
        connections: usize::from(args.connections),
        h2c_connections: usize::from(args.h2c_connections),
        h2c_streams: usize::from(args.h2c_streams),
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
    // Only a run that starts gateways needs the causeway binary.
    let causeway = if selected.iter().any(|s| s.needs_causeway()) {
        let found = causeway_chaos::Causeway::locate(args.causeway)?;
        progress(&format!("gateways: {}", found.bin.display()));
        Some(found.bin)
    } else {
        None
    };
    if cfg!(debug_assertions) {
        progress("this is a debug build: figures are not worth comparing (cargo run --release)");
    }
    let rounds = usize::from(args.rounds);
    let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
    let rows = rt.block_on(async {
        tokio::select! {
            r = data::run(&load, rounds, &selected, causeway.as_deref(), &progress) => r,
            // Dropping the run ends every child process it started.
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
        }
    });
    // A latency thread may still be in a round trip; do not wait for it.
    rt.shutdown_timeout(Duration::from_secs(1));
    let rows = rows?;
    if args.json {
        out::say!("{}", data::report::json(&rows, &load, rounds));
    } else {
        out::say_raw(format_args!(
            "{}",
            data::report::table(&rows, &load, rounds)
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
        out::say!("{}", config_stream::report::json(&report));
    } else {
        out::say_raw(format_args!("{}", config_stream::report::table(&report)));
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
        out::say!("{}", rotation::json(&report));
    } else {
        out::say_raw(format_args!("{}", rotation::table(&report)));
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses "1h", "30m", "90s", "300ms".
fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 300ms, 1s, 90s)"))
}
