//! `causeway ca init` and `causeway ca issue`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::say;

use anyhow::Context;
use causeway_trust::files::{self, CaDir, InitOptions};
use causeway_trust::{SpiffeId, TrustDomain, Validity};
use clap::Subcommand;
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject;

use super::{describe_time, parse_duration};

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create a trust domain's CA in a directory: a root (ECDSA P-256) and,
    /// with --intermediate, an intermediate that signs the SVIDs.
    Init {
        #[arg(long)]
        trust_domain: TrustDomain,
        #[arg(long)]
        dir: PathBuf,
        /// Sign SVIDs with an intermediate below the root.
        #[arg(long)]
        intermediate: bool,
        /// Put the intermediate under this upstream root instead of a root of
        /// our own (PEM certificate; needs --upstream-key).
        #[arg(long, requires = "upstream_key")]
        upstream_cert: Option<PathBuf>,
        /// The upstream root's private key (PEM), used once to sign the intermediate.
        #[arg(long, requires = "upstream_cert")]
        upstream_key: Option<PathBuf>,
        /// Lifetime of the root.
        #[arg(long, default_value = "8760h", value_parser = parse_duration)]
        root_ttl: Duration,
        /// Lifetime of the intermediate.
        #[arg(long, default_value = "720h", value_parser = parse_duration)]
        intermediate_ttl: Duration,
    },
    /// Issue an X.509-SVID: writes PREFIX.pem (leaf then chain) and, without
    /// --csr, PREFIX.key (mode 0600).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        spiffe_id: SpiffeId,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        ttl: Duration,
        /// Sign this CSR (PEM or DER) instead of generating a key: the key
        /// never leaves its owner. The CSR must request exactly --spiffe-id.
        #[arg(long)]
        csr: Option<PathBuf>,
        /// Start the validity window this long ago (drills and tests: with
        /// more than --ttl the SVID is already expired).
        #[arg(long, value_parser = parse_duration)]
        backdate: Option<Duration>,
    },
}

pub(crate) fn run(cmd: CaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CaCommand::Init {
            trust_domain,
            dir,
            intermediate,
            upstream_cert,
            upstream_key,
            root_ttl,
            intermediate_ttl,
        } => {
            let upstream = match (upstream_cert, upstream_key) {
                (Some(c), Some(k)) => Some((read(&c)?, read(&k)?)),
                _ => None,
            };
            let opts = InitOptions {
                intermediate: intermediate || upstream.is_some(),
                upstream,
                root_ttl,
                intermediate_ttl,
            };
            let ca = CaDir::init(&dir, &trust_domain, &opts)?;
            let root = &ca.bundle().x509_authorities()[0];
            let summary = causeway_trust::svid::summarize(root)?;
            say!("created CA for {trust_domain} in {}", dir.display());
            say!("  signer:     {:?}", ca.config().signer);
            say!("  root:       serial {}", summary.serial);
            say!("  root until: {}", describe_time(summary.not_after));
            say!("  bundle:     {}", ca.bundle().digest());
            Ok(ExitCode::SUCCESS)
        }
        CaCommand::Issue {
            dir,
            spiffe_id,
            out,
            ttl,
            csr,
            backdate,
        } => {
            let ca = CaDir::open(&dir)?;
            let validity = match backdate {
                Some(ago) => Validity::backdated(ttl, ago),
                None => Validity::starting_now(ttl),
            };
            let cert_path = with_ext(&out, "pem");
            let (chain_pem, info) = match csr {
                Some(csr_path) => {
                    let raw = read(&csr_path)?;
                    let der = match CertificateSigningRequestDer::from_pem_slice(&raw) {
                        Ok(der) => der.as_ref().to_vec(),
                        Err(_) => raw,
                    };
                    let issued = ca
                        .ca()
                        .sign_csr(&der, validity, |requested| *requested == spiffe_id)
                        .with_context(|| format!("{}", csr_path.display()))?;
                    (issued.chain_pem(), issued.info)
                }
                None => {
                    let svid = ca.ca().issue_with_new_key(&spiffe_id, validity)?;
                    let key_path = with_ext(&out, "key");
                    let key_pem =
                        causeway_trust::pem::encode("PRIVATE KEY", svid.key().secret_der());
                    files::write_file(&key_path, key_pem.as_bytes(), true)?;
                    say!("wrote {}", key_path.display());
                    (
                        causeway_trust::pem::encode_certificates(svid.chain()),
                        svid.info().clone(),
                    )
                }
            };
            files::write_file(&cert_path, chain_pem.as_bytes(), false)?;
            say!("wrote {}", cert_path.display());
            say!("  spiffe id: {}", info.spiffe_id);
            say!("  serial:    {}", info.serial);
            say!("  not after: {}", describe_time(info.not_after));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

pub(crate) fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
