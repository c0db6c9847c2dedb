//! `causeway controller --config FILE`: run a trust domain's federation
//! controller until SIGTERM or Ctrl-C.
//!
//! Once it serves it prints one JSON line on stdout with the bound
//! addresses (useful with port 0), then logs on stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use causeway_controller::{ControllerConfig, StartOptions};
use clap::Args;

use super::say;

#[derive(Debug, Args)]
pub(crate) struct ControllerArgs {
    /// The controller's YAML config.
    #[arg(long)]
    config: PathBuf,
}

pub(crate) fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let config = ControllerConfig::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    rt.block_on(async move {
        let td = config.trust_domain.to_string();
        let running = causeway_controller::start(config, StartOptions::default()).await?;
        let ready = serde_json::json!({
            "event": "ready",
            "trust_domain": td,
            "api": running.api.to_string(),
            "admin_socket": running.admin_socket.display().to_string(),
            "metrics": running.metrics.map(|a| a.to_string()),
            "federation": running.federation.map(|a| a.to_string()),
            "root_pin": running.pin,
        });
        say!("{ready}");
        wait_for_signal().await?;
        running.shutdown().await;
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = term.recv() => Ok(()),
        r = tokio::signal::ctrl_c() => r.context("Ctrl-C handler"),
    }
}
