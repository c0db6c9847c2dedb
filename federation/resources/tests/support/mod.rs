//! Shared by the resource tests: a directory with real bundle files, a valid
//! peering and service to start from, and the check that a refusal names
//! the file, the field and the reason.

#![allow(
    clippy::unwrap_used,
    dead_code,
    reason = "test support; each test binary uses a part"
)]

use std::path::{Path, PathBuf};

use causeway_resources::{Entry, Origin, ResourceError, ResourceSet, parse_str};
use causeway_trust::TrustDomain;
use causeway_trust::testing::TestDomain;

/// East is the local trust domain in these tests.
pub(crate) fn east() -> TrustDomain {
    TrustDomain::new("east.acme.example").unwrap()
}

/// A directory holding `west.bundle.json`, `north.bundle.json`,
/// `east.bundle.json` (real bundles of those domains) and `garbage.json`.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "west.globex.example",
            "north.initech.example",
            "east.acme.example",
        ] {
            let short = name.split('.').next().unwrap();
            let doc = TestDomain::new(name).bundle().to_json();
            std::fs::write(dir.path().join(format!("{short}.bundle.json")), doc).unwrap();
        }
        std::fs::write(dir.path().join("garbage.json"), "{\"not\": \"a bundle\"}").unwrap();
        Self { dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Parses `text` as the file `name` in the fixture's directory.
    pub(crate) fn parse(&self, name: &str, text: &str) -> Result<Vec<Entry>, ResourceError> {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        causeway_resources::load_file(&path)
    }

    pub(crate) fn entries(&self, name: &str, text: &str) -> Vec<Entry> {
        match self.parse(name, text) {
            Ok(e) => e,
            Err(e) => panic!("{name} refused:\n{e}"),
        }
    }

    /// What the store would hold after these files were applied.
    pub(crate) fn stored(&self, files: &[(&str, &str)]) -> ResourceSet {
        let mut set = ResourceSet::default();
        for (name, text) in files {
            set = causeway_resources::admit(&east(), &set, self.entries(name, text)).unwrap();
        }
        // Read back from the store: origin `store`.
        ResourceSet::new(
            set.into_entries()
                .into_iter()
                .map(|e| Entry {
                    origin: Origin::store(),
                    resource: e.resource,
                })
                .collect(),
        )
    }
}

/// Asserts that the refusal has a problem in `file` (its final path
/// component), at exactly `field`, whose reason contains `reason`; returns
/// its one-line rendering.
pub(crate) fn assert_problem(err: &ResourceError, file: &str, field: &str, reason: &str) -> String {
    let found = err.problems.iter().find(|p| {
        Path::new(&p.file).file_name().and_then(|f| f.to_str()) == Some(file)
            && p.field == field
            && p.reason.contains(reason)
    });
    match found {
        Some(p) => {
            let line = p.to_string();
            assert!(line.contains(file) && line.contains(field) && line.contains(reason));
            line
        }
        None => {
            panic!("no problem in {file} at {field} with reason containing {reason:?}; got:\n{err}")
        }
    }
}

pub(crate) fn parse_text(text: &str) -> Result<Vec<Entry>, ResourceError> {
    parse_str("inline.yaml", text, Path::new("/nonexistent"))
}

/// A valid peering of east with west; tests replace parts of it.
pub(crate) const PEERING_WEST: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Peering
name: west
spec:
  trustDomain: west.globex.example
  bundleEndpoint:
    url: https://bundle.west.globex.example:8443/bundle
    spiffeId: spiffe://west.globex.example/controller
  firstBundle:
    file: west.bundle.json
  gateways:
    - address: 192.0.2.10:15443
      id: spiffe://west.globex.example/gateway/west-1
  exports:
    - service: inventory
      ports: [8080]
      callers:
        - pattern: spiffe://west.globex.example/ns/payments/sa/*
  imports:
    - service: payments
      ports: [8080]
      localName: payments.west
  identityMap:
    - from: spiffe://west.globex.example/ns/payments/sa/*
      principal: west-payments
    - from: spiffe://west.globex.example/ns/audit/**
      principal: auditors
      shared: true
";

/// A valid local service of east.
pub(crate) const SERVICE_INVENTORY: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Service
name: inventory
spec:
  ports:
    - port: 8080
      protocol: http
    - port: 9090
      protocol: http2
  endpoints: [10.0.1.21:8080]
  authorization:
    - ports: [8080]
      allow:
        - principal: west-payments
";

/// A valid peering of east with north (another trust domain).
pub(crate) const PEERING_NORTH: &str = "\
apiVersion: causeway.dev/v1alpha1
kind: Peering
name: north
spec:
  trustDomain: north.initech.example
  bundleEndpoint:
    url: https://bundle.north.initech.example/
    spiffeId: spiffe://north.initech.example/controller
  firstBundle:
    file: north.bundle.json
  gateways:
    - address: gw.north.initech.example:15443
      id: spiffe://north.initech.example/gateway/1
";

/// `text` with `from` replaced by `to`, which must occur.
pub(crate) fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from:?} not in the text");
    text.replacen(from, to, 1)
}
