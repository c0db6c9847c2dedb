//! The one owner of a running gateway's SVID and bundles: [`Credentials`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use causeway_trust::tls::{SvidSource, TlsError};
use causeway_trust::{
    BundleSet, Expected, PeerRole, SharedBundles, Svid, TrustBundle, TrustDomain, VerifyError,
};
use rustls_pki_types::UnixTime;
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{error, info, warn};

use super::expiry::{Expiry, ExpiryLog, log_expiry, rfc3339, system_time, unix_now};
use super::load::{LoadError, bundle_from_file, insert_bundle, svid_from_pem};
use super::watch::{Hashed, ReloadTask, Watch, Watches, read_hashed};
use crate::config::GatewayConfig;
use crate::metrics::Metrics;

/// How often the credential files are read when nothing else is said.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest interval accepted; shorter ones are raised to it.
pub const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(10);

/// Why new credential files were not taken. The SVID or bundle in use
/// stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read {}: {detail}", path.display())]
    Unreadable { path: PathBuf, detail: String },
    #[error(transparent)]
    Invalid(LoadError),
    #[error("{}: the private key in {} cannot be used with certificate {serial}: {detail}", cert.display(), key.display())]
    Key {
        cert: PathBuf,
        key: PathBuf,
        serial: String,
        /// The TLS stack's reason, such as a key that does not match.
        detail: String,
    },
    #[error("{}: SVID {serial} expired at {not_after}", path.display())]
    Expired {
        path: PathBuf,
        serial: String,
        not_after: String,
    },
    #[error("{}: SVID {serial} is not valid before {not_before}", path.display())]
    NotYetValid {
        path: PathBuf,
        serial: String,
        not_before: String,
    },
    /// The new SVID does not chain to the bundle held for our own trust
    /// domain while the one in use does: a chain file cut short (PEM cannot
    /// tell a file cut after its first block from a leaf-only file), or an
    /// SVID from a root the bundle does not hold yet.
    #[error("{}: SVID {serial} does not chain to the bundle held for our own trust domain ({detail}); the SVID in use does", path.display())]
    UntrustedChain {
        path: PathBuf,
        serial: String,
        detail: String,
    },
}

impl ReloadError {
    /// A short, closed-set label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "unreadable",
            Self::Invalid(LoadError::WrongIdentity { .. }) => "wrong_identity",
            Self::Invalid(_) => "invalid",
            Self::Key { .. } => "key_mismatch",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::UntrustedChain { .. } => "untrusted_chain",
        }
    }

    /// Whether the same contents may be accepted later: time passes, and a
    /// bundle holding the new root may arrive after the SVID.
    fn retry_same_contents(&self) -> bool {
        matches!(self, Self::NotYetValid { .. } | Self::UntrustedChain { .. })
    }
}

/// The last reload outcome of one watched source, for the config dump.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    /// `ok` or a [`ReloadError::reason`]; empty until the first check.
    pub last_result: &'static str,
    /// What was wrong with the files on disk, while it is wrong.
    pub last_error: Option<String>,
    /// When the SVID or bundle in use was last swapped by a reload.
    pub last_swap_unix: Option<i64>,
}

/// The key of the SVID's status entry; bundles use their trust domain.
pub const SVID_SOURCE: &str = "svid";

/// The gateway's live credentials and what the reload task last found.
/// Readers (the admin listener) read; only the reload task writes.
#[derive(Debug)]
pub struct Credentials {
    config: Arc<GatewayConfig>,
    svid: SvidSource,
    bundles: SharedBundles,
    /// The bundle files watched, by trust domain: the start config's, then
    /// those of the config in effect. Held while the bundle set is loaded,
    /// changed and stored, so that a reload and a new config never lose
    /// each other's change.
    bundle_files: Mutex<BTreeMap<TrustDomain, PathBuf>>,
    metrics: Arc<Metrics>,
    status: Mutex<BTreeMap<String, SourceStatus>>,
    trigger: Notify,
    /// Counts the swaps of the SVID or of the bundle set, so that others
    /// (the control client reporting holdings) learn of them at once.
    changes: watch::Sender<u64>,
}

impl Credentials {
    /// Takes over the credentials the runtime loaded at start: records their
    /// metrics and logs the SVID's expiry state.
    pub fn new(
        config: Arc<GatewayConfig>,
        svid: SvidSource,
        bundles: SharedBundles,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        let this = Self {
            bundle_files: Mutex::new(config.credentials.bundles.clone()),
            config,
            svid,
            bundles,
            metrics,
            status: Mutex::new(BTreeMap::new()),
            trigger: Notify::new(),
            changes: watch::Sender::new(0),
        };
        let current = this.svid.svid();
        this.metrics
            .set_svid_expiry(system_time(current.info().not_after));
        for b in this.bundles.load().bundles() {
            this.metrics
                .set_bundle_sequence(b.trust_domain().as_str(), b.sequence());
        }
        this.metrics.watch_bundles(this.bundles.clone());
        log_expiry(&current, unix_now());
        this.check_own_chain();
        Arc::new(this)
    }

    /// The SVID in use.
    pub fn svid(&self) -> Arc<Svid> {
        self.svid.svid()
    }

    /// The bundles in use.
    pub fn bundles(&self) -> Arc<BundleSet> {
        self.bundles.load()
    }

    /// The last reload outcome per source (`svid`, then trust domains).
    pub fn status(&self) -> BTreeMap<String, SourceStatus> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A receiver that sees a change whenever the SVID or the bundle set
    /// in use is swapped.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Asks the reload task to read every file now, without waiting for a
    /// change to settle (for SIGHUP: the operator says the files are
    /// ready).
    pub fn reload_now(&self) {
        self.trigger.notify_one();
    }

    /// Starts the reload task, reading the files every `interval` (at least
    /// [`MIN_RELOAD_INTERVAL`]). The task stops when the handle is dropped.
    pub fn spawn(self: &Arc<Self>, interval: Duration) -> ReloadTask {
        let interval = interval.max(MIN_RELOAD_INTERVAL);
        // What is on disk now is taken as settled: the runtime has just
        // loaded it, so unchanged files are confirmed on the first tick
        // without a swap, and files that changed since are swapped in then.
        let mut watches = Watches::default();
        watches.svid.seen = Some(self.read_svid().0);
        for (td, path) in &self.bundle_files() {
            let (hash, _) = read_hashed(&[path]);
            watches.bundles.entry(td.clone()).or_default().seen = Some(hash);
        }
        let this = self.clone();
        ReloadTask(tokio::spawn(
            async move { this.run(watches, interval).await },
        ))
    }

    async fn run(self: Arc<Self>, mut watches: Watches, interval: Duration) {
        let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut expiry = ExpiryLog::new(&self.svid.svid());
        loop {
            let forced = tokio::select! {
                _ = ticks.tick() => false,
                () = self.trigger.notified() => true,
            };
            self.pass(&mut watches, forced);
            expiry.tick(&self.svid.svid());
        }
    }

    /// One pass over every source: the bundles first, so that an SVID
    /// from a new root and the own bundle that adds the root, written
    /// together (root rotation), are taken in the same pass.
    fn pass(&self, watches: &mut Watches, forced: bool) {
        for (td, path) in &self.bundle_files() {
            let (hash, read) = read_hashed(&[path]);
            let watch = watches.bundles.entry(td.clone()).or_default();
            if watch.step(hash, forced) {
                let result = read.and_then(|mut files| {
                    let text = files.pop().unwrap_or_default();
                    self.try_bundle(td, path, &text)
                });
                self.settle(td.as_str(), "bundle", watch, hash, result);
            }
        }
        let (hash, read) = self.read_svid();
        if watches.svid.step(hash, forced) {
            let result = read.and_then(|(cert, key)| self.try_svid(&cert, &key));
            self.settle(SVID_SOURCE, "svid", &mut watches.svid, hash, result);
        }
    }

    fn read_svid(&self) -> Hashed<(Vec<u8>, Vec<u8>)> {
        let c = &self.config.credentials;
        let (hash, read) = read_hashed(&[&c.svid_cert, &c.svid_key]);
        let read = read.map(|mut files| {
            let key = files.pop().unwrap_or_default();
            let cert = files.pop().unwrap_or_default();
            (cert, key)
        });
        (hash, read)
    }

    /// Records the outcome of one attempt: status, metric, log.
    fn settle(
        &self,
        source: &str,
        kind: &'static str,
        watch: &mut Watch,
        hash: u64,
        result: Result<Swap, ReloadError>,
    ) {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = status.entry(source.to_owned()).or_default();
        match result {
            Ok(swap) => {
                watch.applied = Some(hash);
                watch.refused = None;
                watch.logged = None;
                entry.last_result = "ok";
                entry.last_error = None;
                if swap == Swap::Swapped {
                    entry.last_swap_unix = Some(unix_now());
                    self.metrics.credential_reload(kind, "ok");
                    self.changed();
                }
            }
            Err(e) => {
                if !e.retry_same_contents() {
                    watch.refused = Some(hash);
                }
                let text = e.to_string();
                entry.last_result = e.reason();
                entry.last_error = Some(text.clone());
                // Once per contents and reason, not once per tick.
                if watch.logged != Some((hash, e.reason())) {
                    watch.logged = Some((hash, e.reason()));
                    self.metrics.credential_reload(kind, e.reason());
                    error!(
                        kind,
                        source,
                        reason = e.reason(),
                        "credential reload refused, keeping the {kind} in use: {text}"
                    );
                }
            }
        }
    }

    fn try_svid(&self, cert: &[u8], key: &[u8]) -> Result<Swap, ReloadError> {
        let c = &self.config.credentials;
        let new = svid_from_pem(&self.config, cert, key).map_err(ReloadError::Invalid)?;
        let current = self.svid.svid();
        if same_svid(&new, &current) {
            return Ok(Swap::Unchanged);
        }
        let info = new.info().clone();
        let now = unix_now();
        match Expiry::at(info.not_before, info.not_after, now) {
            Expiry::Expired => {
                return Err(ReloadError::Expired {
                    path: c.svid_cert.clone(),
                    serial: info.serial,
                    not_after: rfc3339(info.not_after),
                });
            }
            Expiry::NotYetValid => {
                return Err(ReloadError::NotYetValid {
                    path: c.svid_cert.clone(),
                    serial: info.serial,
                    not_before: rfc3339(info.not_before),
                });
            }
            Expiry::Valid | Expiry::Expiring { .. } => {}
        }
        // Never trade an SVID that chains to our own bundle for one that
        // does not; if neither does, the new one is no worse.
        if let Err(e) = self.own_chain(&new)
            && self.own_chain(&current).is_ok()
        {
            return Err(ReloadError::UntrustedChain {
                path: c.svid_cert.clone(),
                serial: info.serial,
                detail: e.to_string(),
            });
        }
        // `replace` checks that the key belongs to the certificate before
        // it stores anything: a mismatched pair leaves the old SVID in use.
        self.svid
            .replace(new.clone())
            .map_err(|e: TlsError| ReloadError::Key {
                cert: c.svid_cert.clone(),
                key: c.svid_key.clone(),
                serial: info.serial.clone(),
                detail: e.to_string(),
            })?;
        self.metrics.set_svid_expiry(system_time(info.not_after));
        info!(id = %info.spiffe_id, serial = %info.serial, previous_serial = %current.info().serial,
            not_after = %rfc3339(info.not_after), "SVID reloaded: presented from the next handshake on");
        log_expiry(&new, now);
        self.check_own_chain();
        Ok(Swap::Swapped)
    }

    fn try_bundle(&self, td: &TrustDomain, path: &Path, text: &[u8]) -> Result<Swap, ReloadError> {
        let new = bundle_from_file(td, path, text).map_err(ReloadError::Invalid)?;
        let files = self.lock_bundle_files();
        if files.get(td).map(PathBuf::as_path) != Some(path) {
            // A new config dropped or moved it since this pass began.
            return Ok(Swap::Unchanged);
        }
        let current = self.bundles.load();
        let previous = current.get(td);
        if previous == Some(&new) {
            return Ok(Swap::Unchanged);
        }
        let (sequence, digest) = (new.sequence(), new.digest());
        let mut set = (*current).clone();
        insert_bundle(&mut set, new, path).map_err(ReloadError::Invalid)?;
        if let (Some(old), Some(new)) = (previous.and_then(|b| b.sequence()), sequence)
            && new < old
        {
            warn!(trust_domain = %td, file = %path.display(), old, new,
                "bundle sequence went backwards; taking the file as the truth");
        }
        // Stores hold the files lock, so nothing was swapped in since `load`.
        self.bundles.store(set);
        drop(files);
        self.metrics.set_bundle_sequence(td.as_str(), sequence);
        info!(trust_domain = %td, sequence = ?sequence, %digest,
            previous_digest = %previous.map(|b| b.digest()).unwrap_or_default(),
            "bundle reloaded: used from the next handshake on");
        if td == &self.config.trust_domain {
            self.check_own_chain();
        }
        Ok(Swap::Swapped)
    }

    /// The bundle files watched now.
    pub fn bundle_files(&self) -> BTreeMap<TrustDomain, PathBuf> {
        self.lock_bundle_files().clone()
    }

    fn lock_bundle_files(&self) -> std::sync::MutexGuard<'_, BTreeMap<TrustDomain, PathBuf>> {
        self.bundle_files
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads and checks the bundles a new config names that are not
    /// watched yet (a new peer domain, or a file moved), without taking
    /// anything in use: [`Self::commit_bundle_files`] does, when the config
    /// is swapped in. The own trust domain's file is not the config's to
    /// change (`config::live` refuses that).
    pub fn prepare_bundle_files(
        &self,
        files: &BTreeMap<TrustDomain, PathBuf>,
    ) -> Result<BundleFiles, ReloadError> {
        let watched = self.bundle_files();
        let mut scratch = (*self.bundles.load()).clone();
        let mut added = Vec::new();
        for (td, path) in files {
            if watched.get(td) == Some(path) {
                continue;
            }
            let text = read_hashed(&[path]).1?.pop().unwrap_or_default();
            let bundle = bundle_from_file(td, path, &text).map_err(ReloadError::Invalid)?;
            insert_bundle(&mut scratch, bundle.clone(), path).map_err(ReloadError::Invalid)?;
            added.push((td.clone(), bundle));
        }
        Ok(BundleFiles {
            files: files.clone(),
            added,
        })
    }

    /// Takes prepared bundle files in use: their bundles join the set every
    /// handshake reads, bundles of domains the config no longer names
    /// leave it, and the reload task watches the new list.
    pub fn commit_bundle_files(&self, change: BundleFiles) {
        let mut files = self.lock_bundle_files();
        let mut set = (*self.bundles.load()).clone();
        for (td, bundle) in change.added {
            let (sequence, digest) = (bundle.sequence(), bundle.digest());
            if set.insert(bundle).is_ok() {
                self.metrics.set_bundle_sequence(td.as_str(), sequence);
                info!(trust_domain = %td, sequence = ?sequence, %digest,
                    "bundle added by the config: used from the next handshake on");
            }
        }
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        for td in files.keys() {
            if !change.files.contains_key(td) && td != &self.config.trust_domain {
                set.remove(td);
                status.remove(td.as_str());
                self.metrics.remove_bundle_sequence(td.as_str());
                info!(trust_domain = %td, "bundle dropped by the config");
            }
        }
        drop(status);
        self.bundles.store(set);
        *files = change.files;
        drop(files);
        self.changed();
    }

    /// Whether an SVID verifies, chain and validity, against the bundle
    /// held for our own trust domain, as a peer holding it would check.
    fn own_chain(&self, svid: &Svid) -> Result<(), VerifyError> {
        let (leaf, rest) = svid
            .chain()
            .split_first()
            .ok_or(VerifyError::NoCertificate)?;
        let expected = Expected::ids([self.config.id.clone()]);
        self.bundles
            .load()
            .verify(leaf, rest, UnixTime::now(), PeerRole::Client, &expected)
            .map(|_| ())
    }

    /// Warns when the SVID in use does not chain to the bundle held for our
    /// own trust domain: peers holding the same bundle would refuse it (a
    /// root rotation done out of order).
    fn check_own_chain(&self) {
        let svid = self.svid.svid();
        if let Err(e @ VerifyError::UntrustedChain { .. }) = self.own_chain(&svid) {
            warn!(serial = %svid.info().serial, trust_domain = %self.config.trust_domain,
                "the SVID in use does not chain to the bundle held for our own trust domain; \
                 peers holding that bundle will refuse it: {e}");
        }
    }
}

/// The bundles of a new config's bundle files, read and checked, not yet
/// in use.
#[derive(Debug)]
pub struct BundleFiles {
    files: BTreeMap<TrustDomain, PathBuf>,
    added: Vec<(TrustDomain, TrustBundle)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Swap {
    Swapped,
    /// The files hold what is already in use.
    Unchanged,
}

fn same_svid(a: &Svid, b: &Svid) -> bool {
    a.chain() == b.chain() && a.key().secret_der() == b.key().secret_der()
}
