//! The subcommands that talk to a running controller over its admin socket:
//! `apply`, `peer list|show`, `token create`, `gateways [forget]`, and
//! `bundle export --controller`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use causeway_controller::ControllerConfig;
use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::admin_api_client::AdminApiClient;
use clap::{Args, Subcommand};
use tonic::transport::Channel;

use super::{describe_time, parse_duration, say};

/// Which controller: its admin socket, or its config file.
#[derive(Debug, Clone, Args)]
pub(crate) struct Target {
    /// The controller's admin socket.
    #[arg(long, value_name = "SOCKET")]
    controller: Option<PathBuf>,
    /// The controller's config file (its admin socket is read from it).
    #[arg(long, value_name = "FILE", conflicts_with = "controller")]
    config: Option<PathBuf>,
}

impl Target {
    pub(crate) fn is_set(&self) -> bool {
        self.controller.is_some() || self.config.is_some()
    }

    fn socket(&self) -> anyhow::Result<PathBuf> {
        match (&self.controller, &self.config) {
            (Some(s), _) => Ok(s.clone()),
            (None, Some(c)) => Ok(ControllerConfig::load(c)?.admin_socket),
            (None, None) => bail!("which controller? pass --controller SOCKET or --config FILE"),
        }
    }

    /// Runs `f` with a client of the controller's admin API.
    pub(crate) fn with_client<T>(
        &self,
        f: impl AsyncFnOnce(AdminApiClient<Channel>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let socket = self.socket()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("tokio runtime")?;
        rt.block_on(async {
            let client = causeway_controller::client::admin(&socket)
                .await
                .with_context(|| format!("cannot reach the controller at {}", socket.display()))?;
            f(client).await
        })
    }
}

pub(crate) fn status(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{}", e.message())
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// Resource files (Peering, Service); relative paths inside them are
    /// taken from each file's directory.
    #[arg(short = 'f', long = "file", required = true)]
    files: Vec<PathBuf>,
    /// Show what would change; store nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    target: Target,
}

pub(crate) fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let files = match resource_files(&args.files) {
        Ok(files) => files,
        Err(problems) => return Ok(refused(&problems)),
    };
    let dry_run = args.dry_run;
    let r = args.target.with_client(async |mut c| {
        Ok(c.apply(pb::ApplyRequest { files, dry_run })
            .await
            .map_err(status)?
            .into_inner())
    })?;
    if !r.problems.is_empty() {
        return Ok(refused(&r.problems));
    }
    say!("{}", r.plan);
    if dry_run {
        say!("(dry run: nothing stored)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Resource files as `apply` sends them: each loaded and checked here
/// (relative paths inside it taken from its directory), in the store form
/// (a first bundle inline). Every problem of every file, or the files.
pub(crate) fn resource_files(paths: &[PathBuf]) -> Result<Vec<pb::ResourceFile>, Vec<String>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match causeway_resources::load_file(path) {
            Ok(entries) => {
                let mut docs = Vec::new();
                for e in &entries {
                    match e.resource.to_yaml() {
                        Ok(doc) => docs.push(doc),
                        Err(e) => problems.push(format!("{}: {e}", path.display())),
                    }
                }
                files.push(pb::ResourceFile {
                    name: path.display().to_string(),
                    content: docs.join("---\n"),
                });
            }
            Err(e) => problems.extend(e.problems.iter().map(ToString::to_string)),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}

#[allow(clippy::print_stderr, reason = "refusals go to stderr")]
fn refused(problems: &[String]) -> ExitCode {
    let n = problems.len();
    eprintln!("refused: {n} problem{}", if n == 1 { "" } else { "s" });
    for p in problems {
        eprintln!("  {p}");
    }
    ExitCode::from(1)
}

#[derive(Debug, Subcommand)]
pub(crate) enum PeerCommand {
    /// Every peering: trust domain, bundle held, exports and imports.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// One peering as stored.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

fn summary_json(p: &pb::PeerSummary) -> serde_json::Value {
    serde_json::json!({
        "name": p.name,
        "trust_domain": p.trust_domain,
        "bundle_sequence": p.bundle_sequence,
        "bundle_age_seconds": p.bundle_age_seconds,
        "bundle_digest": p.bundle_digest,
        "exports": p.exports,
        "imports": p.imports,
        "offered": p.offered,
        "offered_since_unix": p.offered_since_unix,
    })
}

fn age(secs: i64) -> String {
    humantime::format_duration(Duration::from_secs(secs.unsigned_abs())).to_string()
}

pub(crate) fn peer(cmd: PeerCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PeerCommand::List { json, target } => {
            let peers = target.with_client(async |mut c| {
                Ok(c.list_peers(pb::ListPeersRequest {})
                    .await
                    .map_err(status)?
                    .into_inner()
                    .peers)
            })?;
            if json {
                let list: Vec<_> = peers.iter().map(summary_json).collect();
                say!("{}", serde_json::Value::Array(list));
            } else if peers.is_empty() {
                say!("no peerings");
            } else {
                say!(
                    "{:<16} {:<32} {:>8} {:>12} {:>7} {:>7}",
                    "NAME",
                    "TRUST DOMAIN",
                    "BUNDLE",
                    "BUNDLE AGE",
                    "EXPORTS",
                    "IMPORTS"
                );
                for p in &peers {
                    say!(
                        "{:<16} {:<32} {:>8} {:>12} {:>7} {:>7}",
                        p.name,
                        p.trust_domain,
                        p.bundle_sequence,
                        age(p.bundle_age_seconds),
                        p.exports,
                        p.imports
                    );
                }
            }
        }
        PeerCommand::Show { name, json, target } => {
            let r = target.with_client(async |mut c| {
                Ok(c.show_peer(pb::ShowPeerRequest { name })
                    .await
                    .map_err(status)?
                    .into_inner())
            })?;
            let s = r.summary.unwrap_or_default();
            if json {
                let mut v = summary_json(&s);
                v["resource"] = serde_json::Value::String(r.resource);
                say!("{v}");
            } else {
                say!("peering:       {}", s.name);
                say!("trust domain:  {}", s.trust_domain);
                say!(
                    "bundle:        sequence {}, held for {}",
                    s.bundle_sequence,
                    age(s.bundle_age_seconds)
                );
                say!("bundle digest: {}", s.bundle_digest);
                say!("exports:       {}", s.exports);
                say!("imports:       {}", s.imports);
                if s.offered_since_unix == 0 {
                    say!("offered:       (the peer has not announced what it exports)");
                } else {
                    say!("offered:       {}", s.offered.join(" "));
                }
                say!("---");
                super::say_raw(format_args!("{}", r.resource));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// A one-time join token for a gateway (printed on stdout).
    Create {
        #[arg(long)]
        gateway: String,
        /// How long it stays valid; default: the controller's join_token_ttl.
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

#[allow(
    clippy::print_stderr,
    reason = "the expiry is for the person, the token for pipes"
)]
pub(crate) fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    let TokenCommand::Create {
        gateway,
        ttl,
        json,
        target,
    } = cmd;
    let ttl_seconds = ttl.map(|d| d.as_secs().max(1)).unwrap_or(0);
    let r = target.with_client(async |mut c| {
        Ok(c.create_token(pb::CreateTokenRequest {
            gateway,
            ttl_seconds,
        })
        .await
        .map_err(status)?
        .into_inner())
    })?;
    if json {
        say!(
            "{}",
            serde_json::json!({"token": r.token, "expires_unix": r.expires_unix})
        );
    } else {
        say!("{}", r.token);
        eprintln!("one use; expires {}", describe_time(r.expires_unix));
    }
    Ok(ExitCode::SUCCESS)
}

/// The trust domain's bundle from its controller.
pub(crate) fn export_bundle(target: &Target) -> anyhow::Result<ExitCode> {
    let r = target.with_client(async |mut c| {
        Ok(c.export_bundle(pb::ExportBundleRequest {})
            .await
            .map_err(status)?
            .into_inner())
    })?;
    say!("{}", r.document);
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct GatewaysArgs {
    #[command(subcommand)]
    command: Option<GatewaysCommand>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GatewaysCommand {
    /// Forget a gateway that is gone for good (its VM deleted): bundles
    /// verify and root rotations stop waiting for it, and the SVIDs it held
    /// are refused. Refused while it is connected. A new token for the name
    /// adds it again.
    Forget {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) fn gateways(args: GatewaysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(GatewaysCommand::Forget { name, json, target }) => forget(name, json, &target),
        None => list_gateways(args.json, &args.target),
    }
}

fn forget(name: String, json: bool, target: &Target) -> anyhow::Result<ExitCode> {
    let r = target.with_client(async |mut c| {
        Ok(c.forget_gateway(pb::ForgetGatewayRequest {
            name,
            forgotten_by: super::rotate::who(),
        })
        .await
        .map_err(status)?
        .into_inner())
    })?;
    if json {
        say!(
            "{}",
            serde_json::json!({
                "name": r.name, "spiffe_id": r.spiffe_id, "svid_serials": r.svid_serials,
                "svid_expires_unix": r.svid_expires_unix, "forgotten_unix": r.forgotten_unix,
                "rotation_paused": r.rotation_paused,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    say!("forgot gateway {} ({})", r.name, r.spiffe_id);
    let serials = if r.svid_serials.is_empty() {
        "its SVIDs".to_owned()
    } else {
        format!("SVID {} and any earlier one", r.svid_serials.join(", "))
    };
    let expiry = if r.svid_expires_unix > 0 {
        format!(" (expires {})", describe_time(r.svid_expires_unix))
    } else {
        String::new()
    };
    say!("  refused from now on: {serials}{expiry}");
    say!(
        "  to add it again: causeway token create --gateway {}, and join with the new token",
        r.name
    );
    if !r.rotation_paused.is_empty() {
        say!(
            "  a root rotation is paused ({}): `causeway rotate resume` checks its wait again",
            r.rotation_paused
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list_gateways(json: bool, target: &Target) -> anyhow::Result<ExitCode> {
    let gws = target.with_client(async |mut c| {
        Ok(c.list_gateways(pb::ListGatewaysRequest {})
            .await
            .map_err(status)?
            .into_inner()
            .gateways)
    })?;
    if json {
        let list: Vec<_> = gws
            .iter()
            .map(|g| {
                let h = g.holdings.clone().unwrap_or_default();
                serde_json::json!({
                    "name": g.name, "spiffe_id": g.spiffe_id, "connected": g.connected,
                    "acked_version": g.acked_version, "last_error": g.last_error,
                    "svid_serial": h.svid_serial, "svid_expires_unix": h.svid_expires_unix,
                    "bundles": h.bundles.iter().map(|b| serde_json::json!({
                        "trust_domain": b.trust_domain, "sequence": b.sequence, "digest": b.digest,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        say!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    if gws.is_empty() {
        say!("no gateways");
    }
    for g in &gws {
        let state = if g.connected {
            "connected"
        } else {
            "disconnected"
        };
        say!(
            "{}  {}  {state}  acked version {}",
            g.name,
            g.spiffe_id,
            g.acked_version
        );
        if let Some(h) = &g.holdings {
            say!(
                "    svid {} expires {}",
                h.svid_serial,
                describe_time(h.svid_expires_unix)
            );
        }
        if !g.last_error.is_empty() {
            say!("    last NACK: {}", g.last_error);
        }
    }
    Ok(ExitCode::SUCCESS)
}
