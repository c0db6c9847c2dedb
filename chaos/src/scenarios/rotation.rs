//! rotation-under-load: three trust domains peered with each other, steady
//! load between every pair (six directions), and a full rotation of one
//! domain's root. No request may fail, and `bundles verify` must exit 0 at
//! every controller before and after.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Options, Report, check_completed, check_verify_everywhere, follow_rotation};
use crate::mesh::{Mesh, MeshOptions};

/// The gateways' SVID lifetime: short, so that the gateways also renew at
/// their half-life during the run.
const SVID_TTL: Duration = Duration::from_secs(30);

pub(super) fn rotation_under_load(o: &Options, report: &mut Report) -> Result<()> {
    let mesh = Mesh::start(
        &o.causeway,
        MeshOptions {
            domains: 3,
            svid_ttl: SVID_TTL,
            ..MeshOptions::default()
        },
        o.progress.clone(),
    )?;
    let loads = mesh.start_loads(&mesh.pairs())?;
    mesh.say(&format!("steady load on {} directions", loads.0.len()));
    std::thread::sleep(Duration::from_secs(3));
    check_verify_everywhere(
        &mesh,
        report,
        "before the rotation",
        Duration::from_secs(10),
    );

    let td = mesh.domains[0].td.clone();
    mesh.say(&format!("rotating the root of {td}"));
    let started = Instant::now();
    let before = loads.figures();
    let run = mesh.at(0, &["rotate", "start", "--step-timeout", "60s", "--json"])?;
    let id = run
        .json()
        .ok()
        .and_then(|j| j["current"]["id"].as_str().map(str::to_owned));
    report.check(
        format!("rotate start at {td} accepted"),
        run.ok() && id.is_some(),
        match &id {
            Some(id) if run.ok() => format!("rotation {id}"),
            _ => run.describe(),
        },
    );
    let id = id.context("no rotation started")?;
    let record = follow_rotation(&mesh, 0, Duration::from_secs(90))?;
    report.note(format!(
        "rotation {id} of {td} took {:.1?}",
        started.elapsed()
    ));
    check_completed(report, &record, Some(&id));
    // Each direction carried requests while the rotation went on.
    let during: Vec<(String, u64)> = loads
        .figures()
        .into_iter()
        .zip(before)
        .map(|((name, after), (_, before))| (name, after.sent - before.sent))
        .collect();
    report.check(
        "every direction carried requests during the rotation",
        during.iter().all(|(_, n)| *n > 0),
        during
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    std::thread::sleep(Duration::from_secs(3));
    check_verify_everywhere(&mesh, report, "after the rotation", Duration::from_secs(15));
    report.loads_clean(loads.stop());
    Ok(())
}
