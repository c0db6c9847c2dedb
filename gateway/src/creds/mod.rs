//! Credential reload: once a gateway runs, the task started here is the one
//! owner of its SVID and bundles. It watches the files the config names,
//! and when one changes it loads and checks the new contents *before*
//! swapping them into the [`SvidSource`] and [`SharedBundles`] that the
//! peer listener and the dialer read at every handshake. Established
//! connections are never touched.
//!
//! ```text
//! every interval (or on reload_now, e.g. SIGHUP):
//!   read file(s) ─► content hash ─┬─ same as in use ────────────► nothing
//!                                 ├─ same as a refused one ─────► nothing (until it changes)
//!                                 ├─ differs from last tick ────► wait a tick (a writer may be busy)
//!                                 └─ stable for one interval ───► parse + check ─┬─ ok ─► swap, log, count
//!                                                                               └─ bad ─► keep the last good,
//!                                                                                         log, count
//! ```
//!
//! The checks, in order: the PEM parses into an X.509-SVID carrying the
//! config's ID (the checks of [`load_svid`], shared with start-up); it is neither
//! expired nor not yet valid; it chains to the bundle held for our own
//! trust domain, if the SVID in use does (PEM cannot tell a chain file cut
//! after its first block from a leaf-only file: this catches it); the key
//! belongs to the certificate. Bundles: the file parses and every authority
//! can be a trust anchor.
//!
//! Waiting for a change to be stable for one interval keeps a rotation tool
//! that writes the certificate and then the key (or rewrites a file in
//! place) from producing a refusal on every rotation; a file that stays
//! broken is refused, logged with its path and reason, counted in
//! `causeway_gateway_credential_reloads_total`, and not retried until its
//! contents change. A certificate that is not yet valid, or that does not
//! chain to our bundle yet, is retried every tick (clock skew passes; the
//! bundle may be written after the SVID). Each pass reads the bundles
//! before the SVID, so that an SVID from a new root and the own bundle that
//! adds the root, written one after the other (root rotation), are taken
//! in the same pass. Every swap is announced on [`Credentials::changes`].
//!
//! The bundle files of other trust domains may change with the config
//! ([`Credentials::prepare_bundle_files`], then
//! [`Credentials::commit_bundle_files`] when the config is swapped in): a
//! new peer's bundle is read and checked before the config naming the peer
//! is in effect, and from then on watched like the others.
//!
//! The same task warns about expiry: an SVID within a third of its lifetime
//! (or ten minutes) of `not_after` is logged at warn, an expired one at
//! error, at start, at every swap and then every [`EXPIRY_LOG_EVERY`].

mod expiry;
mod load;
mod owner;
mod watch;

pub use expiry::{EXPIRY_LOG_EVERY, EXPIRY_WARN_FLOOR, Expiry, log_expiry, rfc3339, unix_now};
pub use load::{
    LoadError, bundle_from_file, insert_bundle, load_bundles, load_svid, svid_from_pem,
};
pub use owner::{
    BundleFiles, Credentials, DEFAULT_RELOAD_INTERVAL, MIN_RELOAD_INTERVAL, ReloadError,
    SVID_SOURCE, SourceStatus,
};
pub use watch::ReloadTask;
