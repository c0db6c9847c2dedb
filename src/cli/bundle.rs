//! `causeway bundle export` and `causeway bundle inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::say;

use anyhow::Context;
use causeway_trust::files::CaDir;
use causeway_trust::{TrustBundle, TrustDomain};
use clap::{Subcommand, ValueEnum};

use super::ca::read;
use super::describe_time;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// The SPIFFE bundle document (JWKS).
    Json,
    /// The X.509 authorities as PEM.
    Pem,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BundleCommand {
    /// Print the trust domain's bundle, to hand to a peer out of band: from
    /// a CA directory (--dir) or a running controller (--controller/--config).
    Export {
        #[arg(long, required_unless_present_any = ["controller", "config"])]
        dir: Option<PathBuf>,
        #[command(flatten)]
        target: super::admin::Target,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Show a bundle's authorities, sequence, refresh hint and digest.
    Inspect {
        file: PathBuf,
        /// The trust domain the bundle belongs to (the document does not say;
        /// by default it is read from the authorities' SPIFFE IDs).
        #[arg(long)]
        trust_domain: Option<TrustDomain>,
    },
}

pub(crate) fn run(cmd: BundleCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BundleCommand::Export {
            dir,
            target,
            format,
        } => {
            let Some(dir) = dir.filter(|_| !target.is_set()) else {
                if matches!(format, Format::Pem) {
                    anyhow::bail!("--format pem is for --dir; a controller exports JSON");
                }
                return super::admin::export_bundle(&target);
            };
            let ca = CaDir::open(&dir)?;
            match format {
                Format::Json => say!("{}", ca.bundle().to_json()),
                Format::Pem => super::say_raw(format_args!("{}", ca.bundle().to_pem())),
            }
            Ok(ExitCode::SUCCESS)
        }
        BundleCommand::Inspect { file, trust_domain } => {
            let text = read(&file)?;
            let inferred = trust_domain.is_none();
            let bundle =
                load(&text, trust_domain).with_context(|| format!("{}", file.display()))?;
            print_bundle(&bundle, inferred);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Parses a bundle file (JSON or PEM) for a given or inferred trust domain.
pub(crate) fn load(text: &[u8], td: Option<TrustDomain>) -> anyhow::Result<TrustBundle> {
    let td = match td {
        Some(td) => td,
        None => TrustBundle::infer_trust_domain(text)
            .context("cannot tell which trust domain the bundle belongs to; pass --trust-domain")?,
    };
    Ok(TrustBundle::parse(td, text)?)
}

fn print_bundle(b: &TrustBundle, inferred: bool) {
    if inferred {
        say!(
            "trust domain:  {} (read from the authorities' SPIFFE IDs; --trust-domain to set)",
            b.trust_domain()
        );
    } else {
        say!("trust domain:  {}", b.trust_domain());
    }
    match b.sequence() {
        Some(s) => say!("sequence:      {s}"),
        None => say!("sequence:      (none)"),
    }
    match b.refresh_hint() {
        Some(h) => say!("refresh hint:  {}s", h.as_secs()),
        None => say!("refresh hint:  (none)"),
    }
    say!("digest:        {}", b.digest());
    say!("x509 authorities: {}", b.x509_authorities().len());
    for cert in b.x509_authorities() {
        match causeway_trust::svid::summarize(cert) {
            Ok(s) => {
                say!("  - subject:   {}", s.subject);
                say!("    serial:    {}", s.serial);
                say!("    not after: {}", describe_time(s.not_after));
                say!("    key:       {}", s.key_type);
            }
            Err(e) => say!("  - unreadable: {e}"),
        }
    }
    say!("jwt authorities: {}", b.jwt_authorities().len());
    for j in b.jwt_authorities() {
        say!("  - kid: {}", j.key_id);
    }
}
