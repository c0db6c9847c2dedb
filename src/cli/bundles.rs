//! `causeway bundles verify`: whether every party (our gateways, each
//! peer's controller and gateways) holds the bundle it must. Out-of-sync
//! parties come first; the exit status is 0 only when all agree.

use std::process::ExitCode;

use causeway_proto::controller::v1 as pb;
use clap::{Args, Subcommand};

use super::admin::{Target, status};
use super::say;

#[derive(Debug, Subcommand)]
pub(crate) enum BundlesCommand {
    /// Report what every party holds against what it must; exit 1 when any
    /// party is behind or cannot be asked.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Only the parties' holdings of this trust domain's bundle.
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

pub(crate) fn run(cmd: BundlesCommand) -> anyhow::Result<ExitCode> {
    let BundlesCommand::Verify(args) = cmd;
    let report = args.target.with_client(async |mut c| {
        Ok(c.verify_bundles(pb::VerifyBundlesRequest {
            trust_domain: args.trust_domain.clone().unwrap_or_default(),
        })
        .await
        .map_err(status)?
        .into_inner())
    })?;
    print_report(&report, args.json);
    Ok(if report.in_sync {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report as JSON (`json`) or a table, out-of-sync parties first.
pub(crate) fn report_json(report: &pb::VerifyBundlesResponse) -> serde_json::Value {
    let parties: Vec<_> = report
        .parties
        .iter()
        .map(|p| {
            serde_json::json!({
                "kind": p.kind, "trust_domain": p.party_trust_domain, "name": p.name,
                "bundle": p.bundle_trust_domain,
                "want": {"sequence": p.want_sequence, "digest": p.want_digest},
                "held": {"sequence": p.held_sequence, "digest": p.held_digest},
                "in_sync": p.in_sync, "problem": p.problem,
            })
        })
        .collect();
    serde_json::json!({"in_sync": report.in_sync, "parties": parties})
}

pub(crate) fn print_report(report: &pb::VerifyBundlesResponse, json: bool) {
    if json {
        say!("{}", report_json(report));
    } else {
        let behind = report.parties.iter().filter(|p| !p.in_sync).count();
        if report.in_sync {
            say!(
                "in sync: all {} parties hold the bundles they must",
                report.parties.len()
            );
        } else {
            say!("OUT OF SYNC: {behind} of {} parties", report.parties.len());
        }
        say!(
            "{:<16} {:<40} {:<28} {:>5} {:>5}  {}",
            "PARTY",
            "NAME",
            "BUNDLE OF",
            "WANT",
            "HELD",
            "STATUS"
        );
        for p in &report.parties {
            let name = if p.name.is_empty() {
                p.party_trust_domain.clone()
            } else {
                format!("{} ({})", p.name, p.party_trust_domain)
            };
            let held = if p.held_digest.is_empty() {
                "-".to_owned()
            } else {
                p.held_sequence.to_string()
            };
            say!(
                "{:<16} {:<40} {:<28} {:>5} {:>5}  {}",
                p.kind,
                name,
                p.bundle_trust_domain,
                p.want_sequence,
                held,
                if p.in_sync { "ok" } else { p.problem.as_str() }
            );
        }
    }
}
