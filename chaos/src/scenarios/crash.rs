//! controller-crash-each-step: for each rotation step in turn, the
//! rotating domain's controller runs with `CAUSEWAY_CHAOS_CRASH_AT_STEP`
//! set to it, a rotation starts, and the leader aborts as it begins that
//! step (SIGABRT, as a crash would). Restarted without the variable on the
//! same data, it must resume that same rotation to `completed`. Load flows
//! both ways the whole time, through gateways whose controller is down
//! part of it, and no request may fail.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::{Options, Report, STEPS, check_completed, follow_rotation};
use crate::mesh::{Mesh, MeshOptions};

/// SIGABRT.
const ABORT: i32 = 6;

pub(super) fn controller_crash_each_step(o: &Options, report: &mut Report) -> Result<()> {
    let mut mesh = Mesh::start(
        &o.causeway,
        MeshOptions {
            domains: 2,
            svid_ttl: Duration::from_secs(20),
            ..MeshOptions::default()
        },
        o.progress.clone(),
    )?;
    let loads = mesh.start_loads(&mesh.pairs())?;
    let td = mesh.domains[0].td.clone();
    let mut previous: Option<String> = None;
    for step in STEPS {
        let began = Instant::now();
        mesh.say(&format!("{td}: controller restarted to crash at {step}"));
        mesh.start_controller(0, Some(step))?;
        // A rotation starts only when every party holds the bundle in use:
        // the gateways must have reconnected to the new process.
        mesh.wait_in_sync(0, Duration::from_secs(30))?;
        let run = mesh.at(0, &["rotate", "start", "--step-timeout", "60s", "--json"])?;
        let started_id = run
            .json()
            .ok()
            .and_then(|j| j["current"]["id"].as_str().map(str::to_owned));
        let died = mesh.controller_mut(0)?.wait_exit(Duration::from_secs(30));
        let log = mesh.domains[0]
            .controller
            .as_ref()
            .map(|c| c.log_text())
            .unwrap_or_default();
        let aborted = matches!(&died, Ok(s) if s.signal() == Some(ABORT));
        let crash_line = log
            .lines()
            .find(|l| l.contains("crashing as asked"))
            .unwrap_or("no crash in its log")
            .to_owned();
        let at_step = crash_line.contains(step);
        report.check(
            format!("crash at {step}: the controller aborted as it began the step"),
            aborted && at_step,
            match &died {
                Ok(s) => format!("{s}; log: {}", crash_line.trim()),
                Err(e) => format!("{e:#}"),
            },
        );
        if !aborted {
            mesh.stop_controller(0);
        }
        mesh.say(&format!("{td}: controller restarted without the crash"));
        mesh.start_controller(0, None)?;
        let resumed = mesh.rotation(0)?;
        let id = resumed["current"]["id"]
            .as_str()
            .or(started_id.as_deref())
            .map(str::to_owned);
        let id = id.or_else(|| resumed["history"][0]["id"].as_str().map(str::to_owned));
        report.check(
            format!("crash at {step}: the rotation survived the crash"),
            id.is_some() && (started_id.is_none() || started_id == id),
            format!(
                "after the restart: step {}, id {id:?} (rotate start answered {started_id:?})",
                resumed["current"]["step"]
            ),
        );
        let record = follow_rotation(&mesh, 0, Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("{e:#}{}", mesh.controller_warnings(12)))?;
        let new = previous.as_deref() != record["id"].as_str();
        report.check(
            format!("crash at {step}: a new rotation each time"),
            new,
            format!("{} after {:?}", record["id"], previous),
        );
        check_completed(report, &record, id.as_deref());
        report.note(format!(
            "crash at {step:<13}: resumed to completed in {:.1?} (from the restart with the \
             crash set)",
            began.elapsed()
        ));
        previous = record["id"].as_str().map(str::to_owned);
    }
    report.loads_clean(loads.stop());
    Ok(())
}
