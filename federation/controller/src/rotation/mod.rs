//! Root rotation: a state machine kept in the store (`rotation/current`),
//! started, aborted and resumed by the CLI on any replica, and driven by
//! whichever replica leads (`drive`), so that a crash at any step resumes
//! where it stopped.
//!
//! ```text
//! start ── verify: every party holds our bundle? no ─► refused (history, with the report)
//!   │ yes: the new root into ca/standby, the record into rotation/current
//!   ▼
//! publish_both ─► await_both ─► issue ─► await_svids ─► publish_final ─► await_final ─► done
//!  bundle with     every party   ca/root    every SVID     bundle with the   every party   history
//!  both roots      holds it      := new     chains to      target root only  holds it
//!                                            the new root
//! ```
//!
//! A wait that times out pauses the rotation with the reason; it never goes
//! on until `resume` finds the wait met. `abort` (before `publish_final`)
//! turns the target back to the old root and goes through `issue` again:
//! the old root issues, every SVID chains back to it, then the bundle drops
//! the new root. The bundle holds both roots all the while, so no party
//! ever meets an SVID it cannot verify.

pub(crate) mod drive;

use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_store::{Compare, Store, Txn};
use causeway_trust::{Authority, TrustBundle};
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};
use tonic::Status;

use crate::ca::{self, LiveCa};
use crate::config::CaSource;
use crate::error::{ControllerError, Result};
use crate::keys;
use crate::metrics::Metrics;
use crate::tokens::now_unix;
use crate::verify::Verifier;

pub(crate) const PUBLISH_BOTH: &str = "publish_both";
pub(crate) const AWAIT_BOTH: &str = "await_both";
pub(crate) const ISSUE: &str = "issue";
pub(crate) const AWAIT_SVIDS: &str = "await_svids";
pub(crate) const PUBLISH_FINAL: &str = "publish_final";
pub(crate) const AWAIT_FINAL: &str = "await_final";

pub(crate) const TARGET_NEW: &str = "new";
pub(crate) const TARGET_OLD: &str = "old";

/// How long a wait may take before the rotation pauses, unless the start
/// asks otherwise.
pub(crate) const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(600);

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The rotation under way and its record's revision.
pub(crate) async fn current(store: &Arc<dyn Store>) -> Result<Option<(pb::Rotation, i64)>> {
    match store.get(keys::ROTATION).await?.kv {
        Some(kv) => pb::Rotation::decode(kv.value.as_slice())
            .map(|r| Some((r, kv.mod_revision)))
            .map_err(|e| ControllerError::corrupt(keys::ROTATION, e)),
        None => Ok(None),
    }
}

/// Finished rotations, latest first.
pub(crate) async fn history(store: &Arc<dyn Store>, limit: usize) -> Result<Vec<pb::Rotation>> {
    let mut out: Vec<pb::Rotation> = store
        .list(keys::ROTATION_HISTORY)
        .await?
        .kvs
        .iter()
        .filter_map(|kv| pb::Rotation::decode(kv.value.as_slice()).ok())
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.started_unix_ms));
    out.truncate(limit);
    Ok(out)
}

fn history_key(r: &pb::Rotation) -> String {
    format!("{}{}", keys::ROTATION_HISTORY, r.id)
}

/// The step under way's record.
pub(crate) fn open_step(r: &mut pb::Rotation, step: &str, note: String) {
    r.step = step.to_owned();
    r.behind.clear();
    r.steps.push(pb::RotationStepRecord {
        step: step.to_owned(),
        started_unix_ms: now_ms(),
        finished_unix_ms: 0,
        note,
        report: None,
    });
}

/// Ends the step under way with what happened.
pub(crate) fn close_step(
    r: &mut pb::Rotation,
    note: String,
    report: Option<pb::VerifyBundlesResponse>,
) {
    if let Some(s) = r.steps.last_mut()
        && s.finished_unix_ms == 0
    {
        s.finished_unix_ms = now_ms();
        if !note.is_empty() {
            s.note = if s.note.is_empty() {
                note
            } else {
                format!("{}; {note}", s.note)
            };
        }
        s.report = report;
    }
}

/// The root a rotation ends with.
pub(crate) fn target_root(r: &pb::Rotation) -> &str {
    if r.target == TARGET_OLD {
        &r.from_root
    } else {
        &r.to_root
    }
}

/// Operator actions, on any replica.
#[derive(Debug, Clone)]
pub(crate) struct Rotations {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ca: LiveCa,
    pub(crate) source: CaSource,
    pub(crate) verifier: Verifier,
    pub(crate) metrics: Metrics,
}

fn refuse(e: ControllerError) -> Status {
    Status::from(e)
}

impl Rotations {
    pub(crate) async fn status(&self, history_len: usize) -> Result<pb::RotationResponse> {
        Ok(pb::RotationResponse {
            current: current(&self.store).await?.map(|(r, _)| r),
            history: history(&self.store, history_len).await?,
            refused: None,
        })
    }

    pub(crate) async fn start(
        &self,
        req: pb::StartRotationRequest,
    ) -> std::result::Result<pb::RotationResponse, Status> {
        let state = self.ca.current();
        let td = state.ca.trust_domain().clone();
        if !req.trust_domain.is_empty() && req.trust_domain != td.as_str() {
            return Err(Status::invalid_argument(format!(
                "this controller serves {td}, not {}",
                req.trust_domain
            )));
        }
        if let CaSource::Files { .. } = self.source {
            return Err(Status::failed_precondition(
                "this controller reads its CA from files (ca.cert, ca.key); rotation needs the root \
                 in the store (ca: {root_ttl: ...}): a new root from an upstream CA is given to \
                 `causeway rotate start --root-cert F --root-key F`",
            ));
        }
        if let Some((r, _)) = current(&self.store).await.map_err(refuse)? {
            return Err(Status::already_exists(format!(
                "rotation {} is under way (step {}{}); see `causeway rotate status`",
                r.id,
                r.step,
                if r.paused.is_empty() {
                    String::new()
                } else {
                    format!(", paused: {}", r.paused)
                }
            )));
        }
        let new_root = match (req.root_cert_pem.is_empty(), req.root_key_pem.is_empty()) {
            (true, true) => {
                let CaSource::Store { root_ttl } = &self.source else {
                    return Err(Status::failed_precondition("no root TTL"));
                };
                Authority::new_root(&td, *root_ttl).map_err(|e| Status::internal(e.to_string()))?
            }
            (false, false) => {
                Authority::from_pem(req.root_cert_pem.as_bytes(), req.root_key_pem.as_bytes())
                    .map_err(|e| Status::invalid_argument(format!("the new root: {e}")))?
            }
            _ => {
                return Err(Status::invalid_argument(
                    "the new root needs both its certificate and its key",
                ));
            }
        };
        let new_pin = ca::sha256_hex(new_root.cert());
        if new_pin == state.pin {
            return Err(Status::invalid_argument("the new root is the root in use"));
        }
        if new_root.not_after() <= now_unix() + 3600 {
            return Err(Status::invalid_argument(
                "the new root expires within the hour",
            ));
        }
        let published = ca::published(&self.store).await.map_err(refuse)?;
        let mut r = pb::Rotation {
            id: rotation_id(),
            trust_domain: td.to_string(),
            started_by: req.started_by.clone(),
            started_unix_ms: now_ms(),
            from_root: state.pin.clone(),
            to_root: new_pin,
            to_root_expires_unix: new_root.not_after(),
            target: TARGET_NEW.into(),
            step_timeout_secs: if req.step_timeout_secs == 0 {
                DEFAULT_STEP_TIMEOUT.as_secs()
            } else {
                req.step_timeout_secs
            },
            sequence_before: published.as_ref().map_or(0, |p| p.sequence),
            actions: vec![format!("start by {}", who(&req.started_by))],
            ..Default::default()
        };

        // Step 1: every party holds the bundle in use now.
        open_step(&mut r, "verify", String::new());
        let report = self.verifier.report(Some(&td)).await.map_err(refuse)?;
        let current_digest = published
            .as_ref()
            .and_then(|p| TrustBundle::from_json(td.clone(), p.document.as_bytes()).ok())
            .map(|b| b.digest());
        let stale = report
            .parties
            .iter()
            .any(|p| Some(&p.want_digest) != current_digest.as_ref());
        if !report.in_sync || stale {
            close_step(
                &mut r,
                format!(
                    "{} of {} parties out of sync",
                    out_of_sync(&report),
                    report.parties.len()
                ),
                Some(report.clone()),
            );
            r.outcome = "refused".into();
            r.finished_unix_ms = now_ms();
            r.step = "done".into();
            let txn = Txn::new().put(history_key(&r), r.encode_to_vec());
            let _ = self.store.txn(txn).await.map_err(|e| refuse(e.into()))?;
            self.metrics.rotations.with_label_values(&["refused"]).inc();
            tracing::warn!(id = %r.id, "rotation refused: not every party holds the current bundle");
            return Ok(pb::RotationResponse {
                current: None,
                history: vec![r],
                refused: Some(report),
            });
        }
        let note = format!(
            "all {} parties hold sequence {}",
            report.parties.len(),
            r.sequence_before
        );
        close_step(&mut r, note, Some(report));
        open_step(&mut r, PUBLISH_BOTH, String::new());
        let txn = Txn::new()
            .when(Compare::Absent(keys::ROTATION.into()))
            .when(Compare::Absent(keys::STANDBY.into()))
            .put(keys::STANDBY, ca::store_form(&new_root).map_err(refuse)?)
            .put(keys::ROTATION, r.encode_to_vec());
        if !self
            .store
            .txn(txn)
            .await
            .map_err(|e| refuse(e.into()))?
            .applied
        {
            return Err(Status::already_exists(
                "another rotation started meanwhile; see `causeway rotate status`",
            ));
        }
        tracing::info!(id = %r.id, new_root = %ca::short(&r.to_root), by = %who(&r.started_by),
            "root rotation started");
        Ok(pb::RotationResponse {
            current: Some(r),
            history: vec![],
            refused: None,
        })
    }

    /// Changes the rotation under way with `change` (compare-and-set).
    async fn change(
        &self,
        change: impl Fn(&mut pb::Rotation) -> std::result::Result<(), Status>,
    ) -> std::result::Result<pb::RotationResponse, Status> {
        for _ in 0..10 {
            let Some((mut r, rev)) = current(&self.store).await.map_err(refuse)? else {
                return Err(Status::failed_precondition("no rotation is under way"));
            };
            change(&mut r)?;
            let txn = Txn::new()
                .when(Compare::ModRevision(keys::ROTATION.into(), rev))
                .put(keys::ROTATION, r.encode_to_vec());
            if self
                .store
                .txn(txn)
                .await
                .map_err(|e| refuse(e.into()))?
                .applied
            {
                return Ok(pb::RotationResponse {
                    current: Some(r),
                    history: vec![],
                    refused: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Status::aborted("the rotation kept changing; try again"))
    }

    pub(crate) async fn abort(
        &self,
        by: &str,
    ) -> std::result::Result<pb::RotationResponse, Status> {
        let r = self
            .change(|r| {
                if r.target == TARGET_OLD {
                    return Err(Status::failed_precondition(
                        "the rotation is already going back to the old root",
                    ));
                }
                if [PUBLISH_FINAL, AWAIT_FINAL].contains(&r.step.as_str()) {
                    return Err(Status::failed_precondition(
                        "the bundle with the new root only is published: the old root is gone \
                         from it, so the rotation can only finish",
                    ));
                }
                let note = if r.paused.is_empty() {
                    format!("aborted by {}", who(by))
                } else {
                    format!("aborted by {} while paused: {}", who(by), r.paused)
                };
                close_step(r, note, None);
                r.paused.clear();
                r.target = TARGET_OLD.into();
                r.actions.push(format!("abort by {}", who(by)));
                open_step(r, ISSUE, "back to the old root".into());
                Ok(())
            })
            .await?;
        tracing::warn!(by = %who(by), "root rotation aborted: going back to the old root");
        Ok(r)
    }

    pub(crate) async fn resume(
        &self,
        by: &str,
    ) -> std::result::Result<pb::RotationResponse, Status> {
        self.change(|r| {
            if r.paused.is_empty() {
                return Err(Status::failed_precondition(format!(
                    "the rotation is not paused (step {})",
                    r.step
                )));
            }
            r.actions.push(format!("resume by {}", who(by)));
            close_step(r, String::new(), None);
            r.paused.clear();
            let step = r.step.clone();
            open_step(r, &step, format!("resumed by {}", who(by)));
            Ok(())
        })
        .await
    }
}

fn who(by: &str) -> &str {
    if by.is_empty() { "unknown" } else { by }
}

pub(crate) fn out_of_sync(report: &pb::VerifyBundlesResponse) -> usize {
    report.parties.iter().filter(|p| !p.in_sync).count()
}

/// A rotation's ID: its start time (sortable) and a random suffix.
fn rotation_id() -> String {
    let mut buf = [0u8; 3];
    let _ = SystemRandom::new().fill(&mut buf);
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        ca::hex(&buf)
    )
}
