//! A gateway run by a federation controller: join (once, with the token)
//! or take the SVID on disk, then serve the first config that arrives, from
//! the controller or from the last good one cached on disk, and apply every
//! later version live. Used by `causeway gateway`, the demo, the bench and
//! the tests alike.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::config::GatewayConfig;
use crate::control::join::JoinError;
use crate::control::{
    ApplyConfig, ApplyFuture, ControlClient, ControlError, ControlOptions, ControlTasks,
};
use crate::runtime::{Running, StartOptions, start_with};
use crate::state::Origin;
use tokio::sync::{Mutex, oneshot};

/// Why a controller-run gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("getting the gateway's SVID from its controller: {0}")]
    Join(#[from] JoinError),
    #[error("the control client stopped before the gateway started")]
    Stopped,
}

/// Starts the gateway on the first config, applies the later ones.
struct Starter {
    client: Arc<ControlClient>,
    options: std::sync::Mutex<Option<StartOptions>>,
    started: Mutex<Option<oneshot::Sender<Running>>>,
    applier: std::sync::OnceLock<crate::apply::ConfigApplier>,
}

impl ApplyConfig for Starter {
    fn apply(&self, config: GatewayConfig) -> ApplyFuture<'_> {
        Box::pin(async move {
            if let Some(applier) = self.applier.get() {
                return applier
                    .apply(config, Origin::new("controller", None))
                    .map(|_| ())
                    .map_err(|e| e.to_string());
            }
            let mut started = self.started.lock().await;
            let options = self
                .options
                .lock()
                .map_err(|_| "start options poisoned".to_owned())?
                .take()
                .ok_or_else(|| "the gateway is already starting".to_owned())?;
            let running = start_with(config, options)
                .await
                .map_err(|e| e.to_string())?;
            self.client
                .attach(running.credentials().clone(), running.metrics().clone());
            let _ = self.applier.set(running.applier());
            if let Some(tx) = started.take() {
                let _ = tx.send(running);
            }
            Ok(())
        })
    }
}

/// Starts `client`'s tasks with an applier that starts the gateway
/// (with `options`) on the first config and swaps in every later one.
/// The running gateway arrives on the receiver once the first config
/// is in effect.
pub fn spawn(
    client: &Arc<ControlClient>,
    options: StartOptions,
) -> (oneshot::Receiver<Running>, ControlTasks) {
    let (tx, rx) = oneshot::channel();
    let starter = Arc::new(Starter {
        client: client.clone(),
        options: std::sync::Mutex::new(Some(options)),
        started: Mutex::new(Some(tx)),
        applier: std::sync::OnceLock::new(),
    });
    (rx, client.spawn(starter))
}

/// `causeway gateway --config FILE` for a file with a `controller:`
/// section: loads it, joins if there is no SVID yet, and returns once
/// the first config (the controller's or the cached one) is in effect.
pub async fn start(
    config: &Path,
    reload_interval: Duration,
) -> Result<(Running, ControlTasks), StartError> {
    let registry = prometheus::Registry::new();
    let client = ControlClient::load(config, ControlOptions::default(), &registry)?;
    client.ensure_svid().await?;
    tracing::info!("waiting for the first config, from the controller or the disk cache");
    let (rx, tasks) = spawn(
        &client,
        StartOptions {
            registry,
            reload_interval,
            origin: Origin::new("controller", None),
        },
    );
    let running = rx.await.map_err(|_| StartError::Stopped)?;
    Ok((running, tasks))
}
