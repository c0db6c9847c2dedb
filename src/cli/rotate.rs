//! `causeway rotate start|status|abort|resume`: root rotation of the
//! controller's trust domain. The controller keeps the state machine in its
//! store and its leader drives it; these commands start it, show it, turn
//! it back, or resume it after a pause. `--wait` follows it to the end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use causeway_proto::controller::v1 as pb;
use clap::{Args, Subcommand};

use super::admin::{Target, status};
use super::bundles::{print_report, report_json};
use super::{parse_duration, say};

#[derive(Debug, Subcommand)]
pub(crate) enum RotateCommand {
    /// Start a rotation: refused, with the report, unless every party holds
    /// the current bundle.
    Start(StartArgs),
    /// The rotation under way (step, who is behind, paused why) and past ones.
    Status(StatusArgs),
    /// Go back to the old root (before the new-only bundle is published).
    Abort(ActArgs),
    /// Check a paused rotation's wait again and go on if it is met.
    Resume(ActArgs),
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// Must be the controller's trust domain (a check, for scripts).
    #[arg(long, value_name = "TD")]
    trust_domain: Option<String>,
    /// The new root's certificate (PEM), for an upstream CA; default: the
    /// controller creates one.
    #[arg(long, value_name = "FILE", requires = "root_key")]
    root_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "root_cert")]
    root_key: Option<PathBuf>,
    /// How long each wait may take before the rotation pauses (default 10m).
    #[arg(long, value_parser = parse_duration)]
    step_timeout: Option<Duration>,
    /// Follow the rotation to its end; exit 0 only if it completed.
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// How many finished rotations to show.
    #[arg(long, default_value_t = 5)]
    history: u32,
    /// Follow the rotation under way to its end; exit 0 only if it completed.
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

#[derive(Debug, Args)]
pub(crate) struct ActArgs {
    /// Follow the rotation to its end.
    #[arg(long)]
    wait: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

pub(crate) fn run(cmd: RotateCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RotateCommand::Start(a) => start(a),
        RotateCommand::Status(a) => {
            let r = a.target.with_client(async |mut c| {
                let r = c
                    .rotation_status(pb::RotationStatusRequest { history: a.history })
                    .await
                    .map_err(status)?
                    .into_inner();
                if a.wait && r.current.is_some() {
                    return follow(&mut c, a.json).await;
                }
                Ok(r)
            })?;
            print_response(&r, a.json);
            Ok(exit_for(&r, a.wait))
        }
        RotateCommand::Abort(a) => act(a, true),
        RotateCommand::Resume(a) => act(a, false),
    }
}

/// Who runs the CLI, as actions record it: user@host.
pub(crate) fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

fn start(a: StartArgs) -> anyhow::Result<ExitCode> {
    let read = |p: &Option<PathBuf>| -> anyhow::Result<String> {
        match p {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("read {}", p.display())),
            None => Ok(String::new()),
        }
    };
    let req = pb::StartRotationRequest {
        trust_domain: a.trust_domain.clone().unwrap_or_default(),
        root_cert_pem: read(&a.root_cert)?,
        root_key_pem: read(&a.root_key)?,
        started_by: who(),
        step_timeout_secs: a.step_timeout.map_or(0, |d| d.as_secs().max(1)),
    };
    let r = a.target.with_client(async |mut c| {
        let r = c.start_rotation(req).await.map_err(status)?.into_inner();
        if a.wait && r.refused.is_none() {
            if !a.json
                && let Some(cur) = &r.current
            {
                say!(
                    "rotation {} started: new root {}",
                    cur.id,
                    short(&cur.to_root)
                );
            }
            return follow(&mut c, a.json).await;
        }
        Ok(r)
    })?;
    if let Some(report) = &r.refused {
        if a.json {
            say!("{}", response_json(&r));
        } else {
            say!("REFUSED: not every party holds the current bundle; nothing changed");
            print_report(report, false);
        }
        return Ok(ExitCode::from(1));
    }
    print_response(&r, a.json);
    Ok(exit_for(&r, a.wait))
}

fn act(a: ActArgs, abort: bool) -> anyhow::Result<ExitCode> {
    let by = who();
    let r = a.target.with_client(async |mut c| {
        let r = if abort {
            c.abort_rotation(pb::AbortRotationRequest { aborted_by: by })
                .await
        } else {
            c.resume_rotation(pb::ResumeRotationRequest { resumed_by: by })
                .await
        }
        .map_err(status)?
        .into_inner();
        if a.wait {
            return follow(&mut c, a.json).await;
        }
        Ok(r)
    })?;
    print_response(&r, a.json);
    Ok(exit_for(&r, a.wait))
}

/// Polls until the rotation under way is finished (or paused), printing
/// each step as it begins; returns the last status.
pub(crate) async fn follow(
    c: &mut causeway_proto::controller::v1::admin_api_client::AdminApiClient<
        tonic::transport::Channel,
    >,
    json: bool,
) -> anyhow::Result<pb::RotationResponse> {
    let mut seen = (String::new(), 0usize, String::new());
    loop {
        let r = c
            .rotation_status(pb::RotationStatusRequest { history: 1 })
            .await
            .map_err(status)?
            .into_inner();
        let Some(cur) = &r.current else {
            return Ok(r);
        };
        let now = (
            cur.step.clone(),
            cur.steps.len(),
            cur.behind.first().cloned().unwrap_or_default(),
        );
        if now != seen && !json {
            match cur.behind.len() {
                0 => say!("  step {}", cur.step),
                n => say!("  step {}: waiting for {n}, e.g. {}", cur.step, now.2),
            }
        }
        seen = now;
        if !cur.paused.is_empty() {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// With `--wait`: 0 only when the last rotation completed. Otherwise 0.
fn exit_for(r: &pb::RotationResponse, wait: bool) -> ExitCode {
    if !wait {
        return ExitCode::SUCCESS;
    }
    match (&r.current, r.history.first()) {
        (None, Some(h)) if h.outcome == "completed" => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

fn short(pin: &str) -> &str {
    pin.get(..12).unwrap_or(pin)
}

fn ms(t: i64) -> String {
    super::describe_time(t / 1000)
}

fn rotation_json(r: &pb::Rotation) -> serde_json::Value {
    let steps: Vec<_> = r
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "step": s.step, "started_unix_ms": s.started_unix_ms,
                "finished_unix_ms": s.finished_unix_ms, "note": s.note,
                "report": s.report.as_ref().map(report_json),
            })
        })
        .collect();
    serde_json::json!({
        "id": r.id, "trust_domain": r.trust_domain, "started_by": r.started_by,
        "started_unix_ms": r.started_unix_ms, "finished_unix_ms": r.finished_unix_ms,
        "from_root": r.from_root, "to_root": r.to_root,
        "to_root_expires_unix": r.to_root_expires_unix,
        "step": r.step, "target": r.target, "paused": r.paused, "behind": r.behind,
        "outcome": r.outcome, "sequence_before": r.sequence_before,
        "sequence_after": r.sequence_after, "step_timeout_secs": r.step_timeout_secs,
        "actions": r.actions, "steps": steps,
    })
}

fn response_json(r: &pb::RotationResponse) -> serde_json::Value {
    serde_json::json!({
        "current": r.current.as_ref().map(rotation_json),
        "history": r.history.iter().map(rotation_json).collect::<Vec<_>>(),
        "refused": r.refused.as_ref().map(report_json),
    })
}

fn print_response(r: &pb::RotationResponse, json: bool) {
    if json {
        say!("{}", response_json(r));
        return;
    }
    match &r.current {
        None => say!("no rotation under way"),
        Some(cur) => {
            say!(
                "rotation {} of {}: step {}{}",
                cur.id,
                cur.trust_domain,
                cur.step,
                if cur.target == "old" {
                    " (aborted: back to the old root)"
                } else {
                    ""
                }
            );
            say!(
                "  started {} by {}",
                ms(cur.started_unix_ms),
                cur.started_by
            );
            say!(
                "  old root {}  new root {}",
                short(&cur.from_root),
                short(&cur.to_root)
            );
            if !cur.paused.is_empty() {
                say!("  PAUSED: {}", cur.paused);
                say!("  `causeway rotate resume` checks again; `causeway rotate abort` goes back");
            }
            if !cur.behind.is_empty() {
                say!("  waiting for {}:", cur.behind.len());
                for b in &cur.behind {
                    say!("    {b}");
                }
            }
            print_steps(cur);
        }
    }
    for h in &r.history {
        let took = (h.finished_unix_ms - h.started_unix_ms).max(0);
        say!(
            "{} {}: {} by {}, {} ms, bundle sequence {} -> {}",
            h.id,
            h.trust_domain,
            h.outcome,
            h.started_by,
            took,
            h.sequence_before,
            h.sequence_after
        );
        print_steps(h);
    }
}

fn print_steps(r: &pb::Rotation) {
    for s in &r.steps {
        let took = if s.finished_unix_ms > 0 {
            format!("{:>6} ms", s.finished_unix_ms - s.started_unix_ms)
        } else {
            "   ...   ".to_owned()
        };
        say!("    {:<14} {took}  {}", s.step, s.note);
    }
}
