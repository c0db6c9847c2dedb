//! `causeway svid inspect` and `causeway svid verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::say;

use anyhow::{Context, bail};
use causeway_trust::svid::{self, SvidInfo};
use causeway_trust::{BundleSet, Expected, PeerRole, TrustDomain};
use clap::Subcommand;
use rustls_pki_types::{CertificateDer, UnixTime};

use super::bundle::load;
use super::ca::read;
use super::describe_time;

#[derive(Debug, Subcommand)]
pub(crate) enum SvidCommand {
    /// Check that a certificate (PEM or DER; the first one in the file) is a
    /// well-formed X.509-SVID leaf, without a bundle.
    Inspect { file: PathBuf },
    /// Check shape, validity period and chain against a trust bundle.
    Verify {
        #[arg(long)]
        bundle: PathBuf,
        #[arg(long)]
        cert: PathBuf,
        /// The trust domain the bundle belongs to (default: the SVID's own).
        #[arg(long)]
        trust_domain: Option<TrustDomain>,
    },
}

pub(crate) fn run(cmd: SvidCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SvidCommand::Inspect { file } => {
            let chain = certificates(&file)?;
            let info =
                svid::check_leaf(&chain[0]).with_context(|| format!("{}", file.display()))?;
            print_info(&info, chain.len());
            Ok(ExitCode::SUCCESS)
        }
        SvidCommand::Verify {
            bundle,
            cert,
            trust_domain,
        } => {
            let chain = certificates(&cert)?;
            let info =
                svid::check_leaf(&chain[0]).with_context(|| format!("{}", cert.display()))?;
            // The bundle document does not name its trust domain: without
            // --trust-domain it is taken as the bundle of the SVID's own.
            let td = trust_domain.unwrap_or_else(|| info.spiffe_id.trust_domain());
            let text = read(&bundle)?;
            let bundle_doc =
                load(&text, Some(td)).with_context(|| format!("{}", bundle.display()))?;
            let set = BundleSet::from_bundles([bundle_doc])?;
            // An SVID serves as client and server alike; check it as a client
            // certificate (the stricter use for a workload identity).
            set.verify(
                &chain[0],
                &chain[1..],
                UnixTime::now(),
                PeerRole::Client,
                &Expected::AnyKnownDomain,
            )
            .with_context(|| format!("{}", cert.display()))?;
            print_info(&info, chain.len());
            say!(
                "  verified:   chains to the bundle of {}",
                info.spiffe_id.trust_domain()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The certificates in a PEM or DER file, leaf first; never empty.
fn certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let raw = read(path)?;
    let looks_pem = raw.windows(11).any(|w| w == b"-----BEGIN ");
    let chain = if looks_pem {
        causeway_trust::pem::certificates(&raw)
            .map_err(|e| anyhow::anyhow!("{}: malformed PEM: {e}", path.display()))?
    } else if svid::summarize(&raw).is_ok() {
        vec![CertificateDer::from(raw)]
    } else {
        Vec::new()
    };
    if chain.is_empty() {
        bail!(
            "{}: no certificate found (expected PEM CERTIFICATE blocks or DER)",
            path.display()
        );
    }
    Ok(chain)
}

fn print_info(info: &SvidInfo, chain_len: usize) {
    say!("{}", info.spiffe_id);
    say!("  serial:     {}", info.serial);
    say!("  not before: {}", describe_time(info.not_before));
    say!("  not after:  {}", describe_time(info.not_after));
    say!("  issuer:     {}", info.issuer);
    say!("  chain:      {chain_len} certificate(s)");
}
