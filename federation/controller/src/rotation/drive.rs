//! The leader's side of a rotation: reads `rotation/current`, does what its
//! step asks, and moves it on with one fenced compare-and-set, so that a
//! crash between two writes repeats a step (each one is idempotent) and
//! never skips one. A paused rotation, or none, is waited for on a watch.

use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_store::{Compare, Store, Txn, WatchEvent};
use causeway_trust::{TrustBundle, TrustDomain};
use prost::Message;

use super::{
    AWAIT_BOTH, AWAIT_FINAL, AWAIT_SVIDS, ISSUE, PUBLISH_BOTH, PUBLISH_FINAL, TARGET_OLD,
    close_step, now_ms, open_step, target_root,
};
use crate::ca::{self, short};
use crate::config::CaSource;
use crate::error::{ControllerError, Result};
use crate::gateways;
use crate::identity::Replica;
use crate::keys;
use crate::metrics::Metrics;
use crate::verify::Verifier;

/// How many of the parties behind a pause reason names.
const NAMED_IN_REASON: usize = 8;

/// The environment variable chaos runs set to crash the leader as it
/// begins a step (`CAUSEWAY_CHAOS_CRASH_AT_STEP=issue`), so that a crash at
/// every step can be shown to resume to completion.
pub(crate) const CRASH_AT_STEP: &str = "CAUSEWAY_CHAOS_CRASH_AT_STEP";

/// Aborts the process, as a crash would, when the environment asks for a
/// crash at `step`.
fn crash_point(step: &str) {
    if std::env::var(CRASH_AT_STEP).is_ok_and(|s| s == step) {
        tracing::error!(step, "{CRASH_AT_STEP}: crashing as asked");
        std::process::abort();
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Driver {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) source: CaSource,
    pub(crate) verifier: Verifier,
    pub(crate) metrics: Metrics,
    /// How often a wait checks again.
    pub(crate) poll: Duration,
}

/// A rotation record as read, with the revision its next write compares.
struct Held {
    r: pb::Rotation,
    rev: i64,
}

/// What a wait found.
enum Check {
    Met {
        note: String,
        report: Option<pb::VerifyBundlesResponse>,
    },
    Behind(Vec<String>),
}

impl Driver {
    /// Drives rotations for as long as this replica leads.
    pub(crate) async fn run(&self, fence: Compare) -> Result<()> {
        loop {
            let read = self.store.get(keys::ROTATION).await?;
            let Some(kv) = read.kv else {
                self.metrics.rotation_paused.set(0);
                self.metrics.rotation_behind.set(0);
                self.wait_for_change(read.revision).await;
                continue;
            };
            let r = pb::Rotation::decode(kv.value.as_slice())
                .map_err(|e| ControllerError::corrupt(keys::ROTATION, e))?;
            if !r.paused.is_empty() {
                self.metrics.rotation_paused.set(1);
                self.wait_for_change(read.revision).await;
                continue;
            }
            self.metrics.rotation_paused.set(0);
            let held = Held {
                r,
                rev: kv.mod_revision,
            };
            match self.step(held, &fence).await {
                Ok(()) => {}
                Err(ControllerError::Conflict(detail)) => {
                    tracing::debug!(%detail, "the rotation changed meanwhile; reading it again");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Until `rotation/current` changes after `revision` (or a while has
    /// passed: a watch that broke quietly must not stall the rotation).
    async fn wait_for_change(&self, revision: i64) {
        let Ok(mut watch) = self.store.watch(keys::ROTATION, revision + 1).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = watch.next().await {
                match event {
                    Ok(WatchEvent::Put(kv)) if kv.key == keys::ROTATION => return,
                    Ok(WatchEvent::Delete { key, .. }) if key == keys::ROTATION => return,
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        })
        .await;
    }

    async fn step(&self, mut h: Held, fence: &Compare) -> Result<()> {
        crash_point(&h.r.step);
        match h.r.step.clone().as_str() {
            PUBLISH_BOTH => {
                if self.store.get(keys::STANDBY).await?.kv.is_none() {
                    return self
                        .pause(
                            h,
                            fence,
                            "the new root is missing from the store (ca/standby)".into(),
                        )
                        .await;
                }
                let sequence = self.publish(fence).await?;
                self.advance(
                    h,
                    fence,
                    AWAIT_BOTH,
                    format!("published sequence {sequence} with the old and the new root"),
                    None,
                    Txn::new(),
                )
                .await
            }
            AWAIT_BOTH => {
                self.publish(fence).await?;
                let want = self.digest(&[&h.r.from_root, &h.r.to_root]).await?;
                loop {
                    match self.in_sync(&want).await? {
                        Check::Met { note, report } => {
                            return self
                                .advance(h, fence, ISSUE, note, report, Txn::new())
                                .await;
                        }
                        Check::Behind(behind) => {
                            if !self.still_waiting(&mut h, fence, behind).await? {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            ISSUE => self.issue(h, fence).await,
            AWAIT_SVIDS => {
                let target = target_root(&h.r).to_owned();
                loop {
                    match self.svids(&target).await? {
                        Check::Met { note, report } => {
                            return self
                                .advance(h, fence, PUBLISH_FINAL, note, report, Txn::new())
                                .await;
                        }
                        Check::Behind(behind) => {
                            if !self.still_waiting(&mut h, fence, behind).await? {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            PUBLISH_FINAL => self.publish_final(h, fence).await,
            AWAIT_FINAL => {
                let sequence = self.publish(fence).await?;
                let target = target_root(&h.r).to_owned();
                let want = self.digest(&[&target]).await?;
                loop {
                    match self.in_sync(&want).await? {
                        Check::Met { note, report } => {
                            return self.finish(h, fence, sequence, note, report).await;
                        }
                        Check::Behind(behind) => {
                            if !self.still_waiting(&mut h, fence, behind).await? {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            other => {
                let reason = format!("unknown step {other:?} (written by a newer controller?)");
                self.pause(h, fence, reason).await
            }
        }
    }

    /// Step 4: the target root issues. `ca/root` and `ca/standby` swap in
    /// the same transaction that moves the record on; every replica follows
    /// `ca/root`, and the snapshot's `svid_root` tells every gateway.
    async fn issue(&self, h: Held, fence: &Compare) -> Result<()> {
        let target = target_root(&h.r).to_owned();
        let root = self.store.get(keys::ROOT).await?.kv;
        let standby = self.store.get(keys::STANDBY).await?.kv;
        let pin_of = |kv: &Option<causeway_store::KeyValue>, key: &str| -> Result<Option<String>> {
            kv.as_ref()
                .map(|kv| ca::parse_root(key, &kv.value).map(|a| ca::sha256_hex(a.cert())))
                .transpose()
        };
        let root_pin = pin_of(&root, keys::ROOT)?;
        if root_pin.as_deref() == Some(target.as_str()) {
            let note = format!("root {} issues (already)", short(&target));
            return self
                .advance(h, fence, AWAIT_SVIDS, note, None, Txn::new())
                .await;
        }
        let (Some(root), Some(standby)) = (root, standby) else {
            let reason = format!("root {} is not in the store", short(&target));
            return self.pause(h, fence, reason).await;
        };
        if pin_of(&Some(standby.clone()), keys::STANDBY)?.as_deref() != Some(target.as_str()) {
            let reason = format!("neither stored root is {}", short(&target));
            return self.pause(h, fence, reason).await;
        }
        let swap = Txn::new()
            .when(Compare::ModRevision(keys::ROOT.into(), root.mod_revision))
            .when(Compare::ModRevision(
                keys::STANDBY.into(),
                standby.mod_revision,
            ))
            .put(keys::ROOT, standby.value)
            .put(keys::STANDBY, root.value);
        let note = format!("root {} issues from now on", short(&target));
        self.advance(h, fence, AWAIT_SVIDS, note, None, swap).await
    }

    /// Step 5: the other root leaves the store, and the bundle.
    async fn publish_final(&self, h: Held, fence: &Compare) -> Result<()> {
        let target = target_root(&h.r).to_owned();
        let drop = match self.store.get(keys::STANDBY).await?.kv {
            Some(kv) => {
                if ca::sha256_hex(ca::parse_root(keys::STANDBY, &kv.value)?.cert()) == target {
                    let reason = format!("root {} is not the one issuing", short(&target));
                    return self.pause(h, fence, reason).await;
                }
                Txn::new()
                    .when(Compare::ModRevision(keys::STANDBY.into(), kv.mod_revision))
                    .delete(keys::STANDBY)
            }
            None => Txn::new(),
        };
        let gone = if h.r.target == TARGET_OLD {
            &h.r.to_root
        } else {
            &h.r.from_root
        };
        let note = format!("root {} leaves the bundle", short(gone));
        self.advance(h, fence, AWAIT_FINAL, note, None, drop)
            .await?;
        self.publish(fence).await?;
        Ok(())
    }

    async fn finish(
        &self,
        mut h: Held,
        fence: &Compare,
        sequence: u64,
        note: String,
        report: Option<pb::VerifyBundlesResponse>,
    ) -> Result<()> {
        close_step(&mut h.r, note, report);
        let outcome = if h.r.target == TARGET_OLD {
            "aborted"
        } else {
            "completed"
        };
        h.r.outcome = outcome.into();
        h.r.step = "done".into();
        h.r.behind.clear();
        h.r.finished_unix_ms = now_ms();
        h.r.sequence_after = sequence;
        let txn = Txn::new()
            .when(fence.clone())
            .when(Compare::ModRevision(keys::ROTATION.into(), h.rev))
            .delete(keys::ROTATION)
            .put(
                format!("{}{}", keys::ROTATION_HISTORY, h.r.id),
                h.r.encode_to_vec(),
            );
        if !self.store.txn(txn).await?.applied {
            return Err(ControllerError::Conflict("rotation record".into()));
        }
        self.metrics.rotations.with_label_values(&[outcome]).inc();
        self.metrics.rotation_behind.set(0);
        let took = h.r.finished_unix_ms - h.r.started_unix_ms;
        tracing::info!(id = %h.r.id, outcome, took_ms = took, sequence, "root rotation finished");
        Ok(())
    }

    /// Closes the step under way, opens `next`, and commits that with
    /// `ops` (fenced, compared on the record's revision).
    async fn advance(
        &self,
        mut h: Held,
        fence: &Compare,
        next: &str,
        note: String,
        report: Option<pb::VerifyBundlesResponse>,
        ops: Txn,
    ) -> Result<()> {
        tracing::info!(id = %h.r.id, step = %h.r.step, next, %note, "rotation step done");
        close_step(&mut h.r, note, report);
        open_step(&mut h.r, next, String::new());
        self.metrics.rotation_behind.set(0);
        let mut txn = ops
            .when(fence.clone())
            .when(Compare::ModRevision(keys::ROTATION.into(), h.rev));
        txn = txn.put(keys::ROTATION, h.r.encode_to_vec());
        if !self.store.txn(txn).await?.applied {
            return Err(ControllerError::Conflict("rotation record".into()));
        }
        Ok(())
    }

    async fn pause(&self, mut h: Held, fence: &Compare, reason: String) -> Result<()> {
        tracing::error!(id = %h.r.id, step = %h.r.step, %reason, "root rotation paused");
        if let Some(s) = h.r.steps.last_mut() {
            s.note = format!("paused: {reason}");
        }
        h.r.paused = reason;
        let txn = Txn::new()
            .when(fence.clone())
            .when(Compare::ModRevision(keys::ROTATION.into(), h.rev))
            .put(keys::ROTATION, h.r.encode_to_vec());
        if !self.store.txn(txn).await?.applied {
            return Err(ControllerError::Conflict("rotation record".into()));
        }
        self.metrics.rotation_paused.set(1);
        Ok(())
    }

    /// Between two checks of a wait: records who is behind, pauses when the
    /// wait has run out of time, sleeps. False: stop (paused, or the record
    /// changed under us: an abort, a resume).
    async fn still_waiting(
        &self,
        h: &mut Held,
        fence: &Compare,
        behind: Vec<String>,
    ) -> Result<bool> {
        self.metrics
            .rotation_behind
            .set(i64::try_from(behind.len()).unwrap_or(i64::MAX));
        let started =
            h.r.steps
                .last()
                .map_or(h.r.started_unix_ms, |s| s.started_unix_ms);
        let timeout_ms =
            i64::try_from(h.r.step_timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        if now_ms().saturating_sub(started) > timeout_ms {
            let mut named: Vec<&str> = behind
                .iter()
                .take(NAMED_IN_REASON)
                .map(String::as_str)
                .collect();
            let more = behind.len().saturating_sub(NAMED_IN_REASON);
            let tail = format!("and {more} more");
            if more > 0 {
                named.push(&tail);
            }
            let reason = format!(
                "{} timed out after {}s waiting for: {}",
                h.r.step,
                h.r.step_timeout_secs,
                named.join("; ")
            );
            let held = Held {
                r: h.r.clone(),
                rev: h.rev,
            };
            self.pause(held, fence, reason).await?;
            return Ok(false);
        }
        if behind != h.r.behind {
            tracing::info!(step = %h.r.step, behind = behind.len(), first = ?behind.first(), "rotation waiting");
            h.r.behind = behind;
            let txn = Txn::new()
                .when(fence.clone())
                .when(Compare::ModRevision(keys::ROTATION.into(), h.rev))
                .put(keys::ROTATION, h.r.encode_to_vec());
            let done = self.store.txn(txn).await?;
            if !done.applied {
                return Ok(false);
            }
            h.rev = done.revision;
        }
        tokio::time::sleep(self.poll).await;
        match self.store.get(keys::ROTATION).await?.kv {
            Some(kv) if kv.mod_revision == h.rev => Ok(true),
            _ => Ok(false),
        }
    }

    /// Publishes the bundle the stored roots call for; its sequence.
    async fn publish(&self, fence: &Compare) -> Result<u64> {
        let live = ca::load(&self.store, &self.trust_domain, &self.source).await?;
        let roots = ca::bundle_roots(&self.store, &self.source, &live).await?;
        ca::publish_bundle(&self.store, fence.clone(), &self.trust_domain, roots).await
    }

    /// The digest of a bundle of the stored roots with these pins.
    async fn digest(&self, pins: &[&String]) -> Result<String> {
        let live = ca::load(&self.store, &self.trust_domain, &self.source).await?;
        let stored = ca::bundle_roots(&self.store, &self.source, &live).await?;
        Ok(TrustBundle::new(self.trust_domain.clone(), stored.with_pins(pins)).digest())
    }

    /// Whether every party holds the bundle with digest `want`.
    async fn in_sync(&self, want: &str) -> Result<Check> {
        let report = self.verifier.report(Some(&self.trust_domain)).await?;
        let behind: Vec<String> = report
            .parties
            .iter()
            .filter_map(|p| {
                let who = match p.name.as_str() {
                    "" => format!("{} {}", p.kind, p.party_trust_domain),
                    name => format!("{} {}/{name}", p.kind, p.party_trust_domain),
                };
                if p.want_digest != want {
                    Some(format!("{who}: not yet sent the new bundle"))
                } else if !p.in_sync {
                    Some(format!("{who}: {}", p.problem))
                } else {
                    None
                }
            })
            .collect();
        if behind.is_empty() {
            let note = format!("all {} parties hold it", report.parties.len());
            return Ok(Check::Met {
                note,
                report: Some(report),
            });
        }
        Ok(Check::Behind(behind))
    }

    /// Whether every SVID of the domain (each gateway's, each controller
    /// replica's) chains to `target`.
    async fn svids(&self, target: &str) -> Result<Check> {
        let gateways = gateways::accountable(&self.store).await?;
        let mut behind = Vec::new();
        for (name, status) in &gateways {
            match status {
                None => behind.push(format!("gateway {name}: not connected")),
                Some(s) if s.holdings.svid_root == target => {}
                Some(s) if s.holdings.svid_root.is_empty() => behind.push(format!(
                    "gateway {name}: SVID {} chains to no root of our bundle",
                    s.holdings.svid_serial
                )),
                Some(s) => behind.push(format!(
                    "gateway {name}: SVID {} chains to root {}",
                    s.holdings.svid_serial,
                    short(&s.holdings.svid_root)
                )),
            }
        }
        let replicas = self.store.list(keys::REPLICAS).await?.kvs;
        for kv in &replicas {
            let node = kv.key.trim_start_matches(keys::REPLICAS);
            match serde_json::from_slice::<Replica>(&kv.value) {
                Ok(r) if r.svid_root == target => {}
                Ok(r) => behind.push(format!(
                    "controller replica {node}: SVID {} chains to root {}",
                    r.svid_serial,
                    short(&r.svid_root)
                )),
                Err(e) => behind.push(format!("controller replica {node}: unreadable record: {e}")),
            }
        }
        if behind.is_empty() {
            let note = format!(
                "{} gateways and {} controller replicas chain to root {}",
                gateways.len(),
                replicas.len(),
                short(target)
            );
            return Ok(Check::Met { note, report: None });
        }
        Ok(Check::Behind(behind))
    }
}
