//! Test support: a whole trust domain (root, CA, bundle) in one call, and
//! SVIDs from it, valid or deliberately broken. Enabled by the `testing`
//! feature; used by this crate's tests and by the gateway's and
//! controller's.

#![allow(clippy::expect_used, reason = "test support fails loudly on misuse")]

use std::time::Duration;

use crate::bundle::TrustBundle;
use crate::ca::{Authority, Ca, DEFAULT_ROOT_TTL, Validity};
use crate::id::{SpiffeId, TrustDomain};
use crate::svid::Svid;

/// A trust domain with its own root CA.
#[derive(Debug)]
pub struct TestDomain {
    pub trust_domain: TrustDomain,
    pub ca: Ca,
}

impl TestDomain {
    /// A new trust domain with a fresh root that signs directly.
    pub fn new(name: &str) -> Self {
        let trust_domain = TrustDomain::new(name).expect("valid trust domain name");
        let root = Authority::new_root(&trust_domain, DEFAULT_ROOT_TTL).expect("root");
        Self {
            ca: Ca::with_root(trust_domain.clone(), root),
            trust_domain,
        }
    }

    /// A new trust domain that signs with an intermediate below a new root.
    pub fn with_intermediate(name: &str) -> Self {
        let trust_domain = TrustDomain::new(name).expect("valid trust domain name");
        let root = Authority::new_root(&trust_domain, DEFAULT_ROOT_TTL).expect("root");
        let inter = Authority::new_intermediate(&trust_domain, &root, Duration::from_secs(86400))
            .expect("intermediate");
        let mut d = Self {
            ca: Ca::with_intermediate(trust_domain.clone(), inter, Vec::new()),
            trust_domain,
        };
        d.ca.set_roots(vec![root.cert().clone()]);
        d
    }

    /// The bundle holding this domain's root(s).
    pub fn bundle(&self) -> TrustBundle {
        TrustBundle::new(self.trust_domain.clone(), self.ca.roots().to_vec()).with_sequence(1)
    }

    /// The SPIFFE ID with the given path in this domain.
    pub fn id(&self, path: &str) -> SpiffeId {
        self.trust_domain.workload_id(path).expect("valid path")
    }

    /// A valid SVID for `path`, one hour long.
    pub fn svid(&self, path: &str) -> Svid {
        self.ca
            .issue_with_new_key(
                &self.id(path),
                Validity::starting_now(Duration::from_secs(3600)),
            )
            .expect("issue")
    }

    /// An SVID that expired an hour ago.
    pub fn expired_svid(&self, path: &str) -> Svid {
        self.ca
            .issue_with_new_key(
                &self.id(path),
                Validity::backdated(Duration::from_secs(3600), Duration::from_secs(7200)),
            )
            .expect("issue")
    }
}
