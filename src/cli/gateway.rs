//! `causeway gateway --config FILE`: run one gateway until SIGTERM or Ctrl-C.
//!
//! Once every listener is bound it prints one JSON line on stdout with the
//! bound addresses (useful with port 0), then logs on stderr. SIGHUP reads
//! the credential files at once instead of at the next poll, and re-reads
//! the config file and applies it live (what changed is logged, or why it
//! was refused; a refused config leaves the one in effect serving).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use causeway_gateway::config::GatewayConfig;
use causeway_gateway::runtime::StartOptions;
use causeway_gateway::state::Origin;
use clap::Args;

use super::{parse_duration, say};

#[derive(Debug, Args)]
pub(crate) struct GatewayArgs {
    /// The gateway's YAML config.
    #[arg(long)]
    config: PathBuf,
    /// How long open streams may take to finish after SIGTERM.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,
    /// How often the SVID and bundle files are read for changes.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    reload_interval: Duration,
    /// Threads that serve traffic. 1 (the default) runs everything on one
    /// event loop: on loopback it took half the CPU per request of a
    /// multi-threaded runtime, because QUIC packets are batched instead of
    /// sent one per stream write (docs/benchmarks.md). Scale out with more
    /// gateway processes, or raise this.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

pub(crate) fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let controlled = causeway_gateway::config::control::names_controller(&args.config);
    // A controller-run gateway's file alone is not a whole config.
    let config = if controlled {
        None
    } else {
        Some(GatewayConfig::load(&args.config)?)
    };
    let rt = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .context("tokio runtime")?;
    rt.block_on(async move {
        let (running, _control) = match config {
            Some(config) => {
                let options = StartOptions {
                    reload_interval: args.reload_interval,
                    origin: Origin::new(args.config.display().to_string(), None),
                    ..StartOptions::default()
                };
                (causeway_gateway::runtime::start_with(config, options).await?, None)
            }
            None => {
                let (running, tasks) =
                    causeway_gateway::controlled::start(&args.config, args.reload_interval).await?;
                (running, Some(tasks))
            }
        };
        let ready = serde_json::json!({
            "event": "ready",
            "peer_listener": running.peer_listener.map(|a| a.to_string()),
            "admin": running.admin.map(|a| a.to_string()),
            "listeners": running.listeners.iter().map(|(k, v)| (k.clone(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        });
        say!("{ready}");
        wait_for_signal(|| {
            running.reload_now();
            if controlled {
                // The config comes from the controller; the file holds
                // only what cannot change live.
                return;
            }
            match running.apply_file(&args.config) {
                Ok(applied) => tracing::info!(
                    file = %args.config.display(),
                    generation = applied.generation,
                    "SIGHUP: config reloaded: {}",
                    applied.changes
                ),
                Err(e) => tracing::error!(
                    file = %args.config.display(),
                    reason = e.reason(),
                    "SIGHUP: config not applied, the one in effect stays: {e}"
                ),
            }
        })
        .await?;
        running.shutdown(args.drain).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Waits for SIGTERM or Ctrl-C; calls `reload` on every SIGHUP meanwhile.
async fn wait_for_signal(reload: impl Fn()) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            r = tokio::signal::ctrl_c() => return r.context("Ctrl-C handler"),
            Some(()) = hup.recv() => {
                tracing::info!("SIGHUP: reading the credential files and the config now");
                reload();
            }
        }
    }
}
