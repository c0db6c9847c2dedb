//! Keeping a peer's bundle current: fetch from the peer's bundle endpoint
//! at the interval its document hints (clamped), retry with backoff on
//! failure, fetch at once when poked (a peer controller pushing "my bundle
//! changed"), and publish each new bundle on a watch channel. A failed or
//! refused fetch never replaces the bundle held.
//!
//! The endpoint is authenticated with the bundle held for its trust domain:
//! the peer's own bundle (the usual case, and then each fetched bundle
//! authenticates the next one, which is how a peer's root rotation reaches
//! us: old root, then old + new, then new) or, for an endpoint hosted by
//! another trust domain, the bundles given in `anchors`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use causeway_trust::{BundleSet, SharedBundles, SpiffeId, TrustBundle};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::fetch::{FetchError, fetch_bundle};

/// How often and how patiently to refresh.
#[derive(Debug, Clone)]
pub struct RefreshPolicy {
    /// When the document carries no refresh hint.
    pub default_interval: Duration,
    /// Bounds on the hint, so that a peer cannot make us poll in a loop or
    /// never.
    pub min_interval: Duration,
    pub max_interval: Duration,
    /// Time for one fetch, connect to last byte.
    pub timeout: Duration,
    /// First retry after a failure; doubles up to the interval in effect.
    pub first_retry: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            default_interval: Duration::from_secs(300),
            min_interval: Duration::from_secs(5),
            max_interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            first_retry: Duration::from_secs(1),
        }
    }
}

impl RefreshPolicy {
    /// The wait before the next fetch, after one that brought `held`.
    pub fn interval(&self, held: &TrustBundle) -> Duration {
        held.refresh_hint()
            .unwrap_or(self.default_interval)
            .clamp(self.min_interval, self.max_interval.max(self.min_interval))
    }
}

/// What a refresher saw, for logs and metrics.
#[derive(Debug)]
pub enum RefreshEvent<'a> {
    /// A bundle that differs from the one held (other roots or sequence).
    Updated(&'a TrustBundle),
    /// The same bundle again.
    Unchanged,
    Failed(&'a FetchError),
}

/// A task refreshing one peer's bundle; stops when dropped.
#[derive(Debug)]
pub struct Refresher {
    current: watch::Receiver<TrustBundle>,
    poke: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Refresher {
    /// Starts refreshing `held` from `url`, whose server must present
    /// `endpoint_id`. `anchors`: the bundles that authenticate an endpoint
    /// outside the peer's trust domain (unused otherwise). `observe` hears
    /// every outcome.
    pub fn spawn(
        url: String,
        endpoint_id: SpiffeId,
        held: TrustBundle,
        anchors: Option<SharedBundles>,
        policy: RefreshPolicy,
        observe: impl Fn(RefreshEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        let (tx, current) = watch::channel(held);
        let poke = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            url,
            endpoint_id,
            tx,
            anchors,
            policy,
            poke.clone(),
            observe,
        ));
        Self {
            current,
            poke,
            task,
        }
    }

    /// The bundle held now.
    pub fn current(&self) -> TrustBundle {
        self.current.borrow().clone()
    }

    /// A receiver that sees every new bundle.
    pub fn subscribe(&self) -> watch::Receiver<TrustBundle> {
        self.current.clone()
    }

    /// Fetch now instead of at the next interval.
    pub fn refresh_now(&self) {
        self.poke.notify_one();
    }
}

impl Drop for Refresher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    url: String,
    endpoint_id: SpiffeId,
    tx: watch::Sender<TrustBundle>,
    anchors: Option<SharedBundles>,
    policy: RefreshPolicy,
    poke: Arc<Notify>,
    observe: impl Fn(RefreshEvent<'_>),
) {
    let mut retry = policy.first_retry;
    loop {
        let held = tx.borrow().clone();
        let interval = policy.interval(&held);
        let anchor_set = match &anchors {
            Some(a) if &endpoint_id.trust_domain() != held.trust_domain() => (*a.load()).clone(),
            _ => {
                let mut set = BundleSet::new();
                // The held bundle is the peer's own, already validated.
                let _ = set.insert(held.clone());
                set
            }
        };
        let wait = match fetch_bundle(&url, &endpoint_id, &anchor_set, &held, policy.timeout).await
        {
            Ok(fetched) => {
                retry = policy.first_retry;
                if fetched.digest() == held.digest() && fetched.sequence() == held.sequence() {
                    observe(RefreshEvent::Unchanged);
                } else {
                    observe(RefreshEvent::Updated(&fetched));
                    tx.send_replace(fetched.clone());
                }
                policy.interval(&fetched)
            }
            Err(e) => {
                observe(RefreshEvent::Failed(&e));
                let wait = jittered(retry).min(interval);
                retry = (retry * 2).min(interval);
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = poke.notified() => {}
        }
    }
}

/// `d` less up to a fifth, so that many refreshers started together spread
/// out; no random source is needed for that.
fn jittered(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.saturating_sub(d / 5 * (nanos % 1000) / 1000)
}
