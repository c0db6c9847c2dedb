//! issuer-down: gateways with short-lived SVIDs lose their issuer, their
//! trust domain's controller. Their renewals fail and are retried
//! (`causeway_gateway_svid_renewals_total{result="error"}` rises, and the
//! condition of the renewal alert in deploy/prometheus/causeway-alerts.yaml,
//! evaluated on the scraped counters, holds); traffic across the domain
//! keeps flowing without a failure on the last good SVID until it expires;
//! after that, peers refuse the gateway, and requests across the domain
//! fail within a couple of seconds of the expiry.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::{Options, Report};
use crate::load::unix_ms;
use crate::mesh::{Gw, Mesh, MeshOptions};
use crate::process::metric_sum;

/// The controllers' `svid_ttl`: the gateways renew at about half of it,
/// so the SVID in use when the controller stops has at most this left.
const SVID_TTL: Duration = Duration::from_secs(20);
/// How soon after the expiry the first request must fail.
const REFUSED_WITHIN_MS: i64 = 3000;
/// How long the scenario watches after the expiry.
const AFTER_EXPIRY: Duration = Duration::from_secs(6);
/// The rules the alerting deploys, as shipped.
const ALERTS: &str = include_str!("../../../deploy/prometheus/causeway-alerts.yaml");
const RENEWALS: &str = "causeway_gateway_svid_renewals_total";

/// The SVID a gateway has in use: serial and expiry (Unix seconds).
fn svid(mesh: &Mesh, g: &Gw) -> Result<(String, i64)> {
    let dump: serde_json::Value = serde_json::from_str(&mesh.admin_get(g, "/config_dump")?)
        .context("the config dump is not JSON")?;
    let svid = &dump["credentials"]["svid"];
    let serial = svid["serial"]
        .as_str()
        .ok_or_else(|| anyhow!("{}: no SVID serial in the config dump", g.name))?;
    let not_after = svid["not_after"]
        .as_str()
        .ok_or_else(|| anyhow!("{}: no SVID not_after in the config dump", g.name))?;
    let t = time::OffsetDateTime::parse(not_after, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{}: not_after {not_after:?}", g.name))?;
    Ok((serial.to_owned(), t.unix_timestamp()))
}

/// The renewal-failure alert: its name and threshold on the share of
/// failed renewals, from the shipped rules.
fn renewal_alert() -> Result<(String, f64, String)> {
    let doc: serde_json::Value = serde_saphyr::from_str(ALERTS).context("the alert rules")?;
    for group in doc["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let expr = rule["expr"].as_str().unwrap_or("");
            if expr.contains(&format!("{RENEWALS}{{result=\"error\"}}")) {
                let threshold = expr
                    .rsplit_once('>')
                    .and_then(|(_, t)| t.trim().parse::<f64>().ok())
                    .ok_or_else(|| anyhow!("no `> threshold` in {expr:?}"))?;
                let name = rule["alert"].as_str().unwrap_or("?").to_owned();
                let hold = rule["for"].as_str().unwrap_or("0s").to_owned();
                return Ok((name, threshold, hold));
            }
        }
    }
    bail!("deploy/prometheus/causeway-alerts.yaml has no rule on {RENEWALS}{{result=\"error\"}}")
}

/// Failed and all renewals, and the failures by reason.
fn renewals(mesh: &Mesh, g: &Gw) -> Result<(f64, f64, String)> {
    let page = mesh.admin_get(g, "/metrics")?;
    let errors = metric_sum(&page, RENEWALS, &[("result", "error")]);
    let all = metric_sum(&page, RENEWALS, &[]);
    let reasons: Vec<String> = crate::process::samples(&page, RENEWALS)
        .into_iter()
        .filter(|(l, v)| l.get("result").is_some_and(|r| r == "error") && *v > 0.0)
        .map(|(l, v)| format!("{}={v}", l.get("reason").cloned().unwrap_or_default()))
        .collect();
    Ok((errors, all, reasons.join(", ")))
}

pub(super) fn issuer_down(o: &Options, report: &mut Report) -> Result<()> {
    let (alert, threshold, hold) = renewal_alert()?;
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
    let td = mesh.domains[0].td.clone();
    mesh.stop_controller(0);
    let stopped_ms = unix_ms();
    mesh.say(&format!("the controller of {td} killed: no issuer"));
    let gw = mesh.domains[0].gateway()?;
    // A renewal answered just before the kill reaches the data plane
    // within the reload task's two ticks: read the SVID after that.
    std::thread::sleep(Duration::from_secs(3));
    let (serial, not_after) = svid(&mesh, gw)?;
    let (errors0, all0, _) = renewals(&mesh, gw)?;
    let expiry_ms = not_after * 1000;
    mesh.say(&format!(
        "{}: SVID {serial} expires in {:.1} s",
        gw.name,
        (expiry_ms - unix_ms()) as f64 / 1000.0
    ));
    let end = expiry_ms + i64::try_from(AFTER_EXPIRY.as_millis()).unwrap_or(0);
    let mut said_expired = false;
    while unix_ms() < end {
        std::thread::sleep(Duration::from_millis(250));
        if !said_expired && unix_ms() >= expiry_ms {
            said_expired = true;
            mesh.say(&format!("{}: SVID {serial} expired", gw.name));
        }
    }
    let (errors1, all1, reasons) = renewals(&mesh, gw)?;
    let (serial_after, _) = svid(&mesh, gw)?;
    let figures = loads.stop();

    report.note(format!(
        "controller down at unix ms {stopped_ms}; SVID {serial} expired at unix ms {expiry_ms}, \
         {:.1} s later",
        (expiry_ms - stopped_ms) as f64 / 1000.0
    ));
    report.check(
        "no renewal without the issuer",
        serial_after == serial,
        format!("SVID in use {serial} before, {serial_after} after"),
    );
    let failed = errors1 - errors0;
    report.check(
        "renewals fail and are retried",
        failed >= 2.0,
        format!(
            "{failed} failed renewals while the controller was down (all failures by reason: \
             {reasons})"
        ),
    );
    let share = if all1 > all0 {
        failed / (all1 - all0)
    } else {
        0.0
    };
    let fires = failed > 0.0 && share > threshold;
    report.check(
        format!("{alert}: its condition holds, the alert would fire"),
        fires,
        format!(
            "failed share of renewals over the outage {share:.2} > {threshold} \
             ({failed} of {}); the rule then waits `for: {hold}`",
            all1 - all0
        ),
    );
    let mut first: Option<(i64, String, String)> = None;
    for (name, f) in &figures {
        let early: Vec<&(i64, String)> =
            f.failures.iter().filter(|(t, _)| *t < expiry_ms).collect();
        report.check(
            format!("load {name}: no failure before the SVID expired"),
            early.is_empty() && f.ok > 0,
            match early.first() {
                Some((t, why)) => format!(
                    "failed {:.1} s before the expiry: {why}",
                    (expiry_ms - t) as f64 / 1000.0
                ),
                None => format!("{} ok before the first failure", f.ok),
            },
        );
        if let Some((t, why)) = f.failures.first()
            && first.as_ref().is_none_or(|(ft, _, _)| t < ft)
        {
            first = Some((*t, why.clone(), name.clone()));
        }
    }
    report.check(
        format!("requests across {td} fail within {REFUSED_WITHIN_MS} ms after the expiry"),
        first
            .as_ref()
            .is_some_and(|(t, _, _)| *t >= expiry_ms && t - expiry_ms <= REFUSED_WITHIN_MS),
        match &first {
            Some((t, why, name)) => format!(
                "first failure {} ms after the expiry ({name}: {why})",
                t - expiry_ms
            ),
            None => format!(
                "no request failed in the {:.0?} after the expiry",
                AFTER_EXPIRY
            ),
        },
    );
    let last_ok = figures
        .iter()
        .filter_map(|(_, f)| f.last_ok_unix_ms)
        .max()
        .unwrap_or(0);
    report.check(
        format!("no request across {td} succeeds once refused"),
        last_ok <= expiry_ms + REFUSED_WITHIN_MS,
        format!("last success {} ms after the expiry", last_ok - expiry_ms),
    );
    report.loads = figures;
    Ok(())
}
