//! `causeway demo serve -f SERVICE.yaml...`: the demo's sample services on
//! the endpoints a Service file names, for running the parts by hand (the
//! README's quickstart). Each endpoint gets the sample of its port's
//! protocol: HTTP (answers with who called, from the gateway's
//! `x-forwarded-client-cert`) or a TCP echo.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use causeway_resources::address::Host;
use causeway_resources::service::Protocol;
use causeway_resources::{Resource, load_file};
use clap::Args;

use super::Signals;
use super::services::{self, Sample};
use crate::cli::say;

#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// A Service file (config/demo/west/service-payments.yaml); repeat for
    /// more. Every endpoint must be an IP address of this machine.
    #[arg(short = 'f', long = "file", value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// The trust domain the services belong to, for their answers.
    #[arg(long, value_name = "TD")]
    trust_domain: String,
}

/// Each endpoint of each Service, with its protocol, read and checked
/// before anything binds.
fn endpoints(files: &[PathBuf]) -> anyhow::Result<Vec<(String, Protocol, SocketAddr)>> {
    let mut out = Vec::new();
    for file in files {
        let entries = load_file(file).map_err(|e| anyhow::anyhow!("{e}"))?;
        for entry in entries {
            let Resource::Service(svc) = entry.resource else {
                continue;
            };
            for port in &svc.ports {
                let eps = if port.endpoints.is_empty() {
                    &svc.endpoints
                } else {
                    &port.endpoints
                };
                for ep in eps {
                    let Host::Ip(ip) = ep.host else {
                        bail!(
                            "{}: service {}: endpoint {ep} is a name; a sample service binds an IP address",
                            file.display(),
                            svc.name
                        );
                    };
                    let addr = SocketAddr::new(ip, ep.port);
                    if !out.iter().any(|(_, _, a)| *a == addr) {
                        out.push((svc.name.to_string(), port.protocol, addr));
                    }
                }
            }
        }
    }
    if out.is_empty() {
        bail!("no Service endpoint in the files given");
    }
    Ok(out)
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let endpoints = endpoints(&args.files)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async {
        let mut signals = Signals::new()?;
        let mut samples: Vec<Sample> = Vec::new();
        for (name, protocol, addr) in endpoints {
            let sample = match protocol {
                Protocol::Tcp => services::tcp_echo(&name, addr).await,
                Protocol::Http | Protocol::Http2 => {
                    services::http(&name, &args.trust_domain, addr).await
                }
            };
            match sample {
                Ok(s) => {
                    say!("{} ({}) on {}", s.service, s.protocol, s.addr);
                    samples.push(s);
                }
                Err(e) => {
                    samples.iter().for_each(Sample::stop);
                    return Err(e);
                }
            }
        }
        let s = signals.recv().await;
        say!("{s}: stopping");
        samples.iter().for_each(Sample::stop);
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn file(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    const SERVICE: &str = "apiVersion: causeway.dev/v1alpha1
kind: Service
name: ledger
spec:
  ports:
    - {port: 5432, protocol: tcp}
    - {port: 8081, protocol: http, endpoints: ['127.0.0.1:18081']}
  endpoints: [ENDPOINT]
";

    #[test]
    fn each_port_gets_the_sample_of_its_protocol_on_its_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            dir.path(),
            "s.yaml",
            &SERVICE.replace("ENDPOINT", "'127.0.0.1:15432'"),
        );
        let got = endpoints(&[f]).unwrap();
        let want = vec![
            (
                "ledger".to_owned(),
                Protocol::Tcp,
                "127.0.0.1:15432".parse().unwrap(),
            ),
            (
                "ledger".to_owned(),
                Protocol::Http,
                "127.0.0.1:18081".parse().unwrap(),
            ),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn a_name_a_bad_file_or_a_missing_one_is_refused_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let named = file(
            dir.path(),
            "named.yaml",
            &SERVICE.replace("ENDPOINT", "'ledger.internal:5432'"),
        );
        let e = endpoints(&[named]).unwrap_err().to_string();
        assert!(
            e.contains("named.yaml") && e.contains("ledger.internal:5432 is a name"),
            "{e}"
        );
        let bad = file(dir.path(), "bad.yaml", "kind: Service\nname: x\n");
        let e = endpoints(&[bad]).unwrap_err().to_string();
        assert!(e.contains("bad.yaml"), "{e}");
        let e = endpoints(&[dir.path().join("missing.yaml")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.yaml"), "{e}");
    }
}
