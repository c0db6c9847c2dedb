//! A peer that cannot take the new bundle during a rotation.
//!
//! - peer-controller-down: the peer's controller is killed as the rotation
//!   starts. The rotation must wait (never go on, never pause within its
//!   step timeout), its status naming the peer's controller; once the peer
//!   is back on its data, the rotation completes.
//! - peer-gateway-stale: a gateway of the peer, outside the data path, is
//!   frozen with SIGSTOP, so its config stream stays connected with the old
//!   bundle. `bundles verify` must name it ("holds sequence N, not N+1"),
//!   the rotation must pause with a reason naming it once its (short) step
//!   timeout runs out, and after SIGCONT `rotate resume` must complete it.
//!
//! Load flows both ways between the domains the whole time (through the
//! peer's other gateway in the second case); no request may fail.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustix::process::Signal;

use super::{Options, Report, check_completed, check_verify_everywhere, follow_rotation};
use crate::mesh::{Mesh, MeshOptions, out_of_sync, wait_for};

const SVID_TTL: Duration = Duration::from_secs(30);
/// How long the peer's controller stays down.
const PEER_DOWN: Duration = Duration::from_secs(8);
/// The step timeout of the stale-gateway rotation: short, so that it
/// pauses within the scenario.
const SHORT_STEP_TIMEOUT: &str = "8s";

/// Starts a rotation at domain 0; its ID and the bundle sequence it
/// starts from.
fn start_rotation(mesh: &Mesh, report: &mut Report, timeout: &str) -> Result<(String, u64)> {
    let run = mesh.at(0, &["rotate", "start", "--step-timeout", timeout, "--json"])?;
    let current = run.json().map(|j| j["current"].clone()).unwrap_or_default();
    let id = current["id"].as_str().map(str::to_owned);
    report.check(
        format!("rotate start at {} accepted", mesh.domains[0].td),
        run.ok() && id.is_some(),
        match &id {
            Some(id) if run.ok() => format!("rotation {id}"),
            _ => run.describe(),
        },
    );
    let id = id.context("no rotation started")?;
    Ok((id, current["sequence_before"].as_u64().unwrap_or(0)))
}

pub(super) fn peer_controller_down(o: &Options, report: &mut Report) -> Result<()> {
    let mut mesh = Mesh::start(
        &o.causeway,
        MeshOptions {
            domains: 2,
            svid_ttl: SVID_TTL,
            ..MeshOptions::default()
        },
        o.progress.clone(),
    )?;
    let loads = mesh.start_loads(&mesh.pairs())?;
    std::thread::sleep(Duration::from_secs(1));
    let peer_td = mesh.domains[1].td.clone();
    let (id, _) = start_rotation(&mesh, report, "60s")?;
    // At once: the peer's gateways take a new bundle in a second or two at
    // the earliest, so the rotation cannot have got past await_both.
    mesh.stop_controller(1);
    let down = Instant::now();
    mesh.say(&format!(
        "rotation {id} started; the controller of {peer_td} killed"
    ));

    let named = format!("peer_controller {peer_td}");
    let waiting = wait_for(
        "the rotation waits on the peer's controller",
        Duration::from_secs(20),
        || {
            let s = mesh.rotation(0).map_err(|e| e.to_string())?;
            let cur = &s["current"];
            let behind: Vec<&str> = cur["behind"]
                .as_array()
                .map(|b| b.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            match behind.iter().find(|b| b.starts_with(&named)) {
                Some(b) if cur["step"] == "await_both" => Ok(b.to_string()),
                _ => Err(format!("step {}, behind {behind:?}", cur["step"])),
            }
        },
    );
    report.check(
        format!("the rotation waits in await_both, naming {named}"),
        waiting.is_ok(),
        match &waiting {
            Ok(b) => b.clone(),
            Err(e) => format!("{e:#}"),
        },
    );
    let (in_sync, verify) = mesh.verify(0)?;
    let unreachable = verify["parties"].as_array().is_some_and(|p| {
        p.iter().any(|p| {
            p["kind"] == "peer_controller"
                && p["trust_domain"] == peer_td.as_str()
                && p["problem"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("unreachable"))
        })
    });
    report.check(
        format!("bundles verify exits 1, naming the controller of {peer_td} unreachable"),
        !in_sync && unreachable,
        out_of_sync(&verify),
    );
    std::thread::sleep(PEER_DOWN.saturating_sub(down.elapsed()));
    let s = mesh.rotation(0)?;
    let cur = &s["current"];
    report.check(
        format!(
            "after {:.0?} with the peer down: still waiting, not paused",
            down.elapsed()
        ),
        cur["step"] == "await_both" && cur["paused"].as_str().is_some_and(str::is_empty),
        format!("step {}, paused {}", cur["step"], cur["paused"]),
    );

    mesh.say(&format!("the controller of {peer_td} back on its data"));
    mesh.start_controller(1, None)?;
    let back = Instant::now();
    let record = follow_rotation(&mesh, 0, Duration::from_secs(60))?;
    report.note(format!(
        "peer controller down {:.1?}; the rotation completed {:.1?} after it came back",
        back.duration_since(down),
        back.elapsed()
    ));
    check_completed(report, &record, Some(&id));
    check_verify_everywhere(&mesh, report, "after the rotation", Duration::from_secs(15));
    report.loads_clean(loads.stop());
    Ok(())
}

pub(super) fn peer_gateway_stale(o: &Options, report: &mut Report) -> Result<()> {
    let mesh = Mesh::start(
        &o.causeway,
        MeshOptions {
            domains: 2,
            svid_ttl: SVID_TTL,
            spare_gateway: vec![1],
            ..MeshOptions::default()
        },
        o.progress.clone(),
    )?;
    let loads = mesh.start_loads(&mesh.pairs())?;
    std::thread::sleep(Duration::from_secs(1));
    let spare = mesh.domains[1].spare()?;
    let name = spare.name.clone();
    spare.proc.signal(Signal::STOP)?;
    mesh.say(&format!(
        "{name} frozen (SIGSTOP), pid {}",
        spare.proc.pid()
    ));
    let (id, before) = start_rotation(&mesh, report, SHORT_STEP_TIMEOUT)?;

    let want = format!("holds sequence {before}, not {}", before + 1);
    let named = wait_for(
        "bundles verify names the frozen gateway",
        Duration::from_secs(15),
        || {
            let (ok, v) = mesh.verify(0).map_err(|e| e.to_string())?;
            let row = v["parties"].as_array().and_then(|p| {
                p.iter()
                    .find(|p| p["kind"] == "peer_gateway" && p["name"] == name.as_str())
                    .cloned()
            });
            match row {
                Some(r) if !ok && r["problem"].as_str().is_some_and(|p| p.starts_with(&want)) => {
                    Ok(format!("{name}: {}", r["problem"].as_str().unwrap_or("")))
                }
                _ => Err(out_of_sync(&v)),
            }
        },
    );
    report.check(
        format!("bundles verify exits 1 naming {name}: \"{want}\""),
        named.is_ok(),
        match &named {
            Ok(s) => s.clone(),
            Err(e) => format!("{e:#}"),
        },
    );
    let paused = wait_for("the rotation pauses", Duration::from_secs(30), || {
        let s = mesh.rotation(0).map_err(|e| e.to_string())?;
        let cur = &s["current"];
        match cur["paused"].as_str() {
            Some(p) if !p.is_empty() => Ok((cur["step"].clone(), p.to_owned())),
            _ => Err(format!("step {}, behind {}", cur["step"], cur["behind"])),
        }
    });
    let detail = match &paused {
        Ok((step, reason)) => format!("step {step}: {reason}"),
        Err(e) => format!("{e:#}"),
    };
    report.check(
        format!("the rotation pauses in await_both with a reason naming {name}"),
        paused
            .as_ref()
            .is_ok_and(|(step, r)| *step == "await_both" && r.contains(&name)),
        detail,
    );

    spare.proc.signal(Signal::CONT)?;
    mesh.say(&format!("{name} thawed (SIGCONT); rotate resume --wait"));
    let resumed = Instant::now();
    let run = mesh.at(0, &["rotate", "resume", "--wait", "--json"])?;
    report.check(
        "rotate resume --wait exits 0 (completed)",
        run.ok(),
        if run.ok() {
            "exit 0".to_owned()
        } else {
            run.describe()
        },
    );
    let record = follow_rotation(&mesh, 0, Duration::from_secs(30))?;
    report.note(format!(
        "completed {:.1?} after the resume",
        resumed.elapsed()
    ));
    check_completed(report, &record, Some(&id));
    check_verify_everywhere(&mesh, report, "after the rotation", Duration::from_secs(15));
    report.loads_clean(loads.stop());
    Ok(())
}
