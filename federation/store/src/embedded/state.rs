//! The embedded store's state in memory, without I/O: keys and their
//! revisions, leases, the watch history and the watchers.
//!
//! Promises: [`State::apply`] is the only way a change enters, at a
//! revision greater than every earlier one; every watcher registered with
//! [`State::watch`] gets, in order, every event of its prefix from its start
//! revision on, each once, with no gap between the replayed history and
//! live events (both happen under the store's one lock).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::{
    Compare, GetResponse, KeyValue, LeaseId, ListResponse, Op, Result, Revision, StoreError,
    WatchEvent,
};

/// The most events kept for watches; older ones are compacted away.
pub const HISTORY_MAX_EVENTS: usize = 10_000;
/// The most value bytes kept in the watch history.
pub const HISTORY_MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: Revision,
    pub(crate) mod_revision: Revision,
    pub(crate) lease: Option<LeaseId>,
}

#[derive(Debug)]
struct LeaseEntry {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

#[derive(Debug)]
struct Watcher {
    prefix: String,
    from: Revision,
    tx: mpsc::UnboundedSender<Result<WatchEvent>>,
}

#[derive(Debug)]
pub(crate) struct State {
    revision: Revision,
    /// Watches from a revision below this one are refused as compacted.
    compacted: Revision,
    kvs: BTreeMap<String, Entry>,
    history: VecDeque<WatchEvent>,
    history_bytes: usize,
    leases: HashMap<LeaseId, LeaseEntry>,
    next_lease: i64,
    watchers: Vec<Watcher>,
}

impl State {
    /// The state of a snapshot taken at `revision`. The history starts
    /// after it (revision 1, the empty store, has no events to miss).
    pub(crate) fn from_snapshot(revision: Revision, kvs: BTreeMap<String, Entry>) -> Self {
        Self {
            revision,
            compacted: if revision <= 1 { 0 } else { revision + 1 },
            kvs,
            history: VecDeque::new(),
            history_bytes: 0,
            leases: HashMap::new(),
            next_lease: 1,
            watchers: Vec::new(),
        }
    }

    pub(crate) fn revision(&self) -> Revision {
        self.revision
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.kvs.iter()
    }

    pub(crate) fn get(&self, key: &str) -> GetResponse {
        GetResponse {
            kv: self.kvs.get(key).map(|e| key_value(key, e)),
            revision: self.revision,
        }
    }

    pub(crate) fn list(&self, prefix: &str) -> ListResponse {
        let kvs = self
            .kvs
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| key_value(k, e))
            .collect();
        ListResponse {
            kvs,
            revision: self.revision,
        }
    }

    pub(crate) fn compares_hold(&self, compares: &[Compare]) -> bool {
        compares.iter().all(|c| match c {
            Compare::Absent(k) => !self.kvs.contains_key(k),
            Compare::ModRevision(k, rev) => self.kvs.get(k).map_or(0, |e| e.mod_revision) == *rev,
            Compare::Value(k, v) => self.kvs.get(k).is_some_and(|e| &e.value == v),
        })
    }

    /// Refuses a put with a lease this process does not hold.
    pub(crate) fn check_leases(&self, ops: &[Op], now: Instant) -> Result<()> {
        for op in ops {
            if let Op::Put {
                lease: Some(lease), ..
            } = op
                && !self.lease_alive(*lease, now)
            {
                return Err(StoreError::LeaseNotFound(*lease));
            }
        }
        Ok(())
    }

    /// The operations that change something: deletes of absent keys go.
    pub(crate) fn effective(&self, ops: Vec<Op>) -> Vec<Op> {
        ops.into_iter()
            .filter(|op| match op {
                Op::Put { .. } => true,
                Op::Delete { key } => self.kvs.contains_key(key),
            })
            .collect()
    }

    /// Applies `ops` (already written to the log) at `revision` and tells
    /// the watchers.
    pub(crate) fn apply(&mut self, revision: Revision, ops: Vec<Op>) {
        debug_assert!(revision > self.revision);
        self.revision = revision;
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                Op::Put { key, value, lease } => {
                    let old = self
                        .kvs
                        .get(&key)
                        .map(|old| (old.create_revision, old.lease));
                    let create_revision = match old {
                        Some((create_revision, old_lease)) => {
                            if old_lease != lease {
                                self.unlink_lease(&key, old_lease);
                            }
                            create_revision
                        }
                        None => revision,
                    };
                    if let Some(l) = lease.and_then(|l| self.leases.get_mut(&l)) {
                        l.keys.insert(key.clone());
                    }
                    let entry = Entry {
                        value,
                        create_revision,
                        mod_revision: revision,
                        lease,
                    };
                    events.push(WatchEvent::Put(key_value(&key, &entry)));
                    self.kvs.insert(key, entry);
                }
                Op::Delete { key } => {
                    if let Some(old) = self.kvs.remove(&key) {
                        self.unlink_lease(&key, old.lease);
                        events.push(WatchEvent::Delete { key, revision });
                    }
                }
            }
        }
        for event in events {
            self.publish(event);
        }
    }

    fn unlink_lease(&mut self, key: &str, lease: Option<LeaseId>) {
        if let Some(l) = lease.and_then(|l| self.leases.get_mut(&l)) {
            l.keys.remove(key);
        }
    }

    fn publish(&mut self, event: WatchEvent) {
        self.watchers.retain(|w| {
            if event.revision() < w.from || !event.key().starts_with(&w.prefix) {
                return !w.tx.is_closed();
            }
            w.tx.send(Ok(event.clone())).is_ok()
        });
        self.history_bytes += event_bytes(&event);
        self.history.push_back(event);
        while self.history.len() > HISTORY_MAX_EVENTS || self.history_bytes > HISTORY_MAX_BYTES {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes -= event_bytes(&old);
            self.compacted = self.compacted.max(old.revision() + 1);
        }
    }

    /// A new watcher of `prefix` from `from` (0: the next revision).
    pub(crate) fn watch(
        &mut self,
        prefix: &str,
        from: Revision,
    ) -> mpsc::UnboundedReceiver<Result<WatchEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let from = if from <= 0 { self.revision + 1 } else { from };
        if from < self.compacted {
            let _ = tx.send(Err(StoreError::Compacted {
                requested: from,
                compacted: self.compacted,
            }));
            return rx;
        }
        for event in &self.history {
            if event.revision() >= from && event.key().starts_with(prefix) {
                let _ = tx.send(Ok(event.clone()));
            }
        }
        self.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            from,
            tx,
        });
        rx
    }

    /// Forgets the watch history before `revision`.
    pub(crate) fn compact(&mut self, revision: Revision) -> Result<()> {
        if revision > self.revision {
            return Err(StoreError::Rejected(format!(
                "cannot compact at future revision {revision} (current {})",
                self.revision
            )));
        }
        if revision < self.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        self.compacted = revision;
        while self
            .history
            .front()
            .is_some_and(|e| e.revision() < revision)
        {
            if let Some(old) = self.history.pop_front() {
                self.history_bytes -= event_bytes(&old);
            }
        }
        Ok(())
    }

    // Leases (in process only).

    pub(crate) fn grant(&mut self, ttl: Duration, now: Instant) -> LeaseId {
        let id = LeaseId(self.next_lease);
        self.next_lease += 1;
        self.leases.insert(
            id,
            LeaseEntry {
                ttl,
                deadline: now + ttl,
                keys: BTreeSet::new(),
            },
        );
        id
    }

    fn lease_alive(&self, lease: LeaseId, now: Instant) -> bool {
        self.leases.get(&lease).is_some_and(|l| l.deadline > now)
    }

    pub(crate) fn keep_alive(&mut self, lease: LeaseId, now: Instant) -> Result<Duration> {
        match self.leases.get_mut(&lease) {
            Some(l) if l.deadline > now => {
                l.deadline = now + l.ttl;
                Ok(l.ttl)
            }
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    /// Removes a lease; returns the deletes of its keys.
    pub(crate) fn end_lease(&mut self, lease: LeaseId) -> Option<Vec<Op>> {
        let entry = self.leases.remove(&lease)?;
        Some(
            entry
                .keys
                .into_iter()
                .filter(|k| self.kvs.contains_key(k))
                .map(|key| Op::Delete { key })
                .collect(),
        )
    }

    pub(crate) fn expired_leases(&self, now: Instant) -> Vec<LeaseId> {
        self.leases
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Keys put with a lease: after a restart, of leases that no longer
    /// exist.
    pub(crate) fn leased_keys(&self) -> Vec<String> {
        self.kvs
            .iter()
            .filter(|(_, e)| e.lease.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }
}

fn key_value(key: &str, e: &Entry) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: e.value.clone(),
        create_revision: e.create_revision,
        mod_revision: e.mod_revision,
        lease: e.lease,
    }
}

fn event_bytes(e: &WatchEvent) -> usize {
    match e {
        WatchEvent::Put(kv) => kv.key.len() + kv.value.len(),
        WatchEvent::Delete { key, .. } => key.len(),
    }
}
