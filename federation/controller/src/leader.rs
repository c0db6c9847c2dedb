//! Leader-gated work. Every replica campaigns; the leader alone creates the
//! root, publishes the bundle, compiles the config snapshot and bumps its
//! version, and records the peers' bundles. Each of these writes carries the
//! leadership's fence, so a deposed leader that has not noticed yet changes
//! nothing.

use std::sync::Arc;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_store::{Compare, Election, Leadership, Store, Txn};
use causeway_trust::TrustDomain;
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ca;
use crate::config::CaSource;
use crate::error::{ControllerError, Result};
use crate::federate::{Federate, PeerTasks};
use crate::keys;
use crate::metrics::Metrics;
use crate::peers;
use crate::rotation::drive::Driver;
use crate::snapshot::{compile, describe, fingerprint};
use crate::stored;
use crate::verify::Verifier;

pub(crate) const ELECTION: &str = "controller";

#[derive(Debug, Clone)]
pub(crate) struct LeaderTask {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) ca: CaSource,
    pub(crate) node: String,
    pub(crate) metrics: Metrics,
    pub(crate) lease_ttl: Duration,
    /// The federation side, once the replica has its SVID and bundle view
    /// (the leader creates the root before either exists).
    pub(crate) federate: watch::Receiver<Option<Federate>>,
    /// How often a rotation's wait checks again.
    pub(crate) rotation_poll: Duration,
}

impl LeaderTask {
    pub(crate) fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            let election = Election::new(self.store.clone(), ELECTION);
            loop {
                let leadership = match election
                    .campaign(self.node.as_bytes(), self.lease_ttl)
                    .await
                {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::warn!(error = %e, "campaign failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                tracing::info!(node = %self.node, token = leadership.token(), "leading");
                self.metrics.leader.set(1);
                tokio::select! {
                    reason = leadership.lost() => tracing::warn!(?reason, "leadership lost"),
                    r = self.lead(&leadership) => if let Err(e) = r {
                        tracing::warn!(error = %e, "leader work failed; resigning and campaigning again");
                    },
                    r = self.rotate(&leadership) => if let Err(e) = r {
                        tracing::warn!(error = %e, "driving the root rotation failed; resigning and campaigning again");
                    },
                    () = self.sweep(&leadership) => {}
                }
                self.metrics.leader.set(0);
                if let Err(e) = leadership.resign().await {
                    tracing::debug!(error = %e, "resign failed; the lease will end it");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// Removes long-expired join tokens and tombstones, hourly.
    async fn sweep(&self, leadership: &Leadership) {
        loop {
            match crate::tokens::sweep(&self.store, leadership.fence()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "swept expired join tokens"),
                Err(e) => tracing::debug!(error = %e, "sweeping join tokens failed"),
            }
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    /// Drives the root rotation under way, if any (see `rotation`), once
    /// the federation side (the verifier) exists.
    async fn rotate(&self, leadership: &Leadership) -> Result<()> {
        let mut federate = self.federate.clone();
        let f = loop {
            if let Some(f) = federate.borrow_and_update().clone() {
                break f;
            }
            if federate.changed().await.is_err() {
                return std::future::pending().await;
            }
        };
        Driver {
            store: self.store.clone(),
            trust_domain: self.trust_domain.clone(),
            source: self.ca.clone(),
            verifier: Verifier {
                store: self.store.clone(),
                trust_domain: self.trust_domain.clone(),
                svid: f.svid.clone(),
                view: f.view.clone(),
            },
            metrics: self.metrics.clone(),
            poll: self.rotation_poll,
        }
        .run(leadership.fence())
        .await
    }

    /// Publishes the bundle the stored roots call for. A conflict (the
    /// rotation's driver changed the roots or published meanwhile) reads
    /// the roots again.
    async fn publish(&self, fence: Compare, state: &ca::CaState) -> Result<()> {
        for _ in 0..8 {
            let roots = ca::bundle_roots(&self.store, &self.ca, state).await?;
            match ca::publish_bundle(&self.store, fence.clone(), &self.trust_domain, roots).await {
                Ok(_) => return Ok(()),
                Err(ControllerError::Conflict(detail)) => {
                    tracing::debug!(%detail, "publishing the bundle raced; reading the roots again");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn lead(&self, leadership: &Leadership) -> Result<()> {
        if let CaSource::Store { root_ttl } = &self.ca {
            ca::ensure_root(
                &self.store,
                leadership.fence(),
                &self.trust_domain,
                *root_ttl,
            )
            .await?;
        }
        let state = ca::load(&self.store, &self.trust_domain, &self.ca).await?;
        let mut federate = self.federate.clone();
        let mut peer_tasks = PeerTasks::default();
        loop {
            self.publish(leadership.fence(), &state).await?;
            let (revision, set) = self.sync(leadership.fence(), &state).await?;
            if let Some(f) = federate.borrow_and_update().as_ref() {
                peer_tasks.reconcile(f, &leadership.fence(), &set);
            }
            // Wait for the next change of the resources, the peers'
            // bundles held, the roots or our published bundle, then let a
            // burst of changes settle.
            let mut resources = self.store.watch(keys::RESOURCES, revision + 1).await?;
            let mut held = self.store.watch(keys::PEER_BUNDLES, revision + 1).await?;
            let mut roots = self.store.watch(keys::CA, revision + 1).await?;
            let mut own = self.store.watch(keys::OWN_BUNDLE, revision + 1).await?;
            let event = tokio::select! {
                e = resources.next() => e,
                e = held.next() => e,
                e = roots.next() => e,
                e = own.next() => e,
                _ = federate.changed() => None,
            };
            if let Some(Err(e)) = event {
                tracing::debug!(error = %e, "watch broke; reading again");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Compiles the snapshot from what is stored and stores it with the next
    /// version when its content changed. Returns the revision read and
    /// the resources.
    async fn sync(
        &self,
        fence: Compare,
        state: &ca::CaState,
    ) -> Result<(i64, causeway_resources::ResourceSet)> {
        let stored = stored::read(&self.store).await?;
        let issuing = match (&self.ca, self.store.get(keys::ROOT).await?.kv) {
            (CaSource::Store { .. }, Some(kv)) => {
                ca::sha256_hex(ca::parse_root(keys::ROOT, &kv.value)?.cert())
            }
            _ => state.pin.clone(),
        };
        peers::sync(&self.store, fence.clone(), &stored.set).await?;
        let own = ca::published(&self.store)
            .await?
            .ok_or_else(|| ControllerError::corrupt(keys::OWN_BUNDLE, "not published"))?;
        let held = peers::read_all(&self.store).await?;
        let mut snap = compile(&self.trust_domain, &stored.set, &own, &held);
        snap.svid_root = issuing;
        let current = self.store.get(keys::SNAPSHOT).await?;
        let (version, mod_revision) = match &current.kv {
            Some(kv) => {
                let cur = pb::ConfigSnapshot::decode(kv.value.as_slice())
                    .map_err(|e| ControllerError::corrupt(keys::SNAPSHOT, e))?;
                if fingerprint(&cur) == fingerprint(&snap) {
                    return Ok((stored.revision, stored.set));
                }
                (cur.version + 1, kv.mod_revision)
            }
            None => (1, 0),
        };
        snap.version = version;
        let txn = Txn::new()
            .when(fence.clone())
            .when(Compare::ModRevision(keys::SNAPSHOT.into(), mod_revision))
            .put(keys::SNAPSHOT, snap.encode_to_vec());
        if self.store.txn(txn).await?.applied {
            tracing::info!(version, contents = ?describe(&snap), "new config version");
        }
        Ok((stored.revision, stored.set))
    }
}
