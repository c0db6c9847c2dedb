//! Command-line surface: argument parsing and dispatch. Each subcommand
//! lives in its own module; output goes to stdout, diagnostics to stderr.

#![allow(clippy::print_stderr, reason = "the CLI reports errors on stderr")]

pub(crate) mod admin;
mod bundle;
pub(crate) mod bundles;
mod ca;
mod controller;
mod gateway;
pub(crate) mod rotate;
mod svid;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "causeway",
    version,
    about = "Multi-cluster federation gateway: the east-west edge between trust domains"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A trust domain's certificate authority, as files (PKI as code).
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Trust bundles: export ours, inspect anyone's.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// X.509-SVIDs: check their shape, verify them against a bundle.
    #[command(subcommand)]
    Svid(svid::SvidCommand),
    /// Run a gateway from a config file.
    Gateway(gateway::GatewayArgs),
    /// Run a trust domain's federation controller from a config file.
    Controller(controller::ControllerArgs),
    /// Admit and store Peering and Service files at a controller.
    Apply(admin::ApplyArgs),
    /// Peerings held by a controller.
    #[command(subcommand)]
    Peer(admin::PeerCommand),
    /// One-time join tokens for gateways.
    #[command(subcommand)]
    Token(admin::TokenCommand),
    /// Gateways known to a controller: connected, acked version, holdings;
    /// `gateways forget NAME`: one that is gone for good.
    Gateways(admin::GatewaysArgs),
    /// Whether every party holds the trust bundles it must.
    #[command(subcommand)]
    Bundles(bundles::BundlesCommand),
    /// Rotate the trust domain's root with every party verified before and
    /// after each step: start, status, abort, resume.
    #[command(subcommand)]
    Rotate(rotate::RotateCommand),
    /// See it work: two organizations' controllers and gateways on
    /// loopback, peered by config/demo/'s files, traffic both ways, a call
    /// refused by policy, a root rotation under traffic, and a summary.
    Demo(crate::demo::DemoArgs),
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Ca(c) => ca::run(c),
        Command::Bundle(c) => bundle::run(c),
        Command::Svid(c) => svid::run(c),
        Command::Gateway(a) => gateway::run(a),
        Command::Controller(a) => controller::run(a),
        Command::Apply(a) => admin::apply(a),
        Command::Peer(c) => admin::peer(c),
        Command::Token(c) => admin::token(c),
        Command::Gateways(a) => admin::gateways(a),
        Command::Bundles(c) => bundles::run(c),
        Command::Rotate(c) => rotate::run(c),
        Command::Demo(a) => crate::demo::run(a),
    }
}

impl Cli {
    /// Logging without `CAUSEWAY_LOG`: warnings, except in the demo, whose
    /// refusals are on purpose and whose story is on stdout.
    pub(crate) fn default_log_filter(&self) -> &'static str {
        match self.command {
            Command::Demo(_) => "error",
            _ => "warn",
        }
    }
}

pub(crate) fn init_logging(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("CAUSEWAY_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never in files or pipes.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Prints an error with its causes, each once: library errors often quote
/// their cause in their own message already.
pub(crate) fn report_error(e: &anyhow::Error) {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    eprintln!("error: {line}");
}

/// Writes one line to stdout. A closed pipe (`causeway ... | head`) ends the
/// process quietly instead of panicking as `println!` would.
pub(crate) fn say_line(args: std::fmt::Arguments<'_>) {
    say_raw(format_args!("{args}\n"));
}

/// Writes to stdout without a newline; see [`say_line`].
pub(crate) fn say_raw(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` for the CLI: see [`say_line`].
macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::say_line(format_args!($($arg)*)) };
}
pub(crate) use say;

/// Parses "1h", "30m", "90s", "8760h".
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 90s, 30m, 1h, 8760h)"))
}

/// RFC 3339 for a unix time, and how far it is from now.
pub(crate) fn describe_time(unix: i64) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let stamp = time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string());
    let delta = unix - now;
    let span = humantime::format_duration(Duration::from_secs(delta.unsigned_abs()));
    if delta >= 0 {
        format!("{stamp} (in {span})")
    } else {
        format!("{stamp} ({span} ago)")
    }
}
