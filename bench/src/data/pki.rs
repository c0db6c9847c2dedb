//! The benchmark's certificates: two trust domains with separate CAs (the
//! trust core's `CaDir`, as `causeway ca init` makes them), an SVID for each
//! gateway and for each hop of the nginx/haproxy proxies, and the bundles,
//! all written as files in the run's temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use causeway_trust::files::{CaDir, InitOptions};
use causeway_trust::{SpiffeId, TrustDomain, Validity};

pub(crate) const EAST: &str = "east.bench.example";
pub(crate) const WEST: &str = "west.bench.example";
/// The caller every listener assigns to the benchmark's connections.
pub(crate) const CLIENT: &str = "spiffe://east.bench.example/ns/bench/sa/client";
pub(crate) const EAST_GW: &str = "spiffe://east.bench.example/gateway/east";
pub(crate) const WEST_GW: &str = "spiffe://west.bench.example/gateway/west";
/// nginx/haproxy: the first hop presents this as its client certificate...
pub(crate) const PROXY_HOP1: &str = "spiffe://east.bench.example/proxy/hop1";
/// ...and the second hop this as its server certificate.
pub(crate) const PROXY_HOP2: &str = "spiffe://west.bench.example/proxy/hop2";

/// An SVID as files: the chain (leaf first) and the key.
#[derive(Debug, Clone)]
pub(crate) struct SvidFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    /// Chain then key in one file, as haproxy's `crt` wants it.
    pub(crate) combined: PathBuf,
}

/// Everything the gateways and the proxies read.
#[derive(Debug)]
pub(crate) struct Pki {
    pub(crate) east_gw: SvidFiles,
    pub(crate) west_gw: SvidFiles,
    pub(crate) hop1: SvidFiles,
    pub(crate) hop2: SvidFiles,
    /// SPIFFE bundle documents, as `causeway bundle export` prints them.
    pub(crate) east_bundle: PathBuf,
    pub(crate) west_bundle: PathBuf,
    /// The same roots as PEM, for nginx and haproxy.
    pub(crate) east_roots: PathBuf,
    pub(crate) west_roots: PathBuf,
}

impl Pki {
    /// Creates both CAs under `dir` and issues every SVID (valid for a day).
    pub(crate) fn create(dir: &Path) -> anyhow::Result<Self> {
        let east = CaDir::init(
            &dir.join("east-ca"),
            &TrustDomain::new(EAST)?,
            &InitOptions::default(),
        )?;
        let west = CaDir::init(
            &dir.join("west-ca"),
            &TrustDomain::new(WEST)?,
            &InitOptions::default(),
        )?;
        let write = |name: &str, text: &str| -> anyhow::Result<PathBuf> {
            let path = dir.join(name);
            causeway_trust::files::write_file(&path, text.as_bytes(), true)?;
            Ok(path)
        };
        let issue = |ca: &CaDir, id: &str, name: &str| -> anyhow::Result<SvidFiles> {
            let id: SpiffeId = id.parse().with_context(|| format!("SPIFFE ID {id}"))?;
            let svid = ca
                .ca()
                .issue_with_new_key(&id, Validity::starting_now(Duration::from_secs(86400)))?;
            let chain = causeway_trust::pem::encode_certificates(svid.chain());
            let key = causeway_trust::pem::encode("PRIVATE KEY", svid.key().secret_der());
            Ok(SvidFiles {
                cert: write(&format!("{name}.pem"), &chain)?,
                key: write(&format!("{name}.key"), &key)?,
                combined: write(&format!("{name}.combined.pem"), &format!("{chain}{key}"))?,
            })
        };
        Ok(Self {
            east_gw: issue(&east, EAST_GW, "east-gw")?,
            west_gw: issue(&west, WEST_GW, "west-gw")?,
            hop1: issue(&east, PROXY_HOP1, "hop1")?,
            hop2: issue(&west, PROXY_HOP2, "hop2")?,
            east_bundle: write("east.bundle.json", &east.bundle().to_json())?,
            west_bundle: write("west.bundle.json", &west.bundle().to_json())?,
            east_roots: write("east.roots.pem", &east.bundle().to_pem())?,
            west_roots: write("west.roots.pem", &west.bundle().to_pem())?,
        })
    }
}
