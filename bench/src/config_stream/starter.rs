//! What `causeway gateway` does with the configs a controller streams to a
//! controller-run gateway (src/cli/gateway.rs, `controlled`): the first one
//! starts the data plane, every later one is applied live. The bench's
//! in-process gateways run the same steps through the gateway crate's
//! public API; the product binary is not a library, so these few lines are
//! kept here rather than shared.

use std::sync::{Arc, OnceLock};

use causeway_gateway::apply::ConfigApplier;
use causeway_gateway::config::GatewayConfig;
use causeway_gateway::control::{ApplyConfig, ApplyFuture, ControlClient, ControlTasks};
use causeway_gateway::live::Origin;
use causeway_gateway::runtime::{Running, StartOptions, start_with};
use tokio::sync::{Mutex, oneshot};

/// Starts the gateway on the first config, applies the later ones.
struct Starter {
    client: Arc<ControlClient>,
    options: std::sync::Mutex<Option<StartOptions>>,
    started: Mutex<Option<oneshot::Sender<Running>>>,
    applier: OnceLock<ConfigApplier>,
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

/// Starts `client`'s tasks with an applier that starts the gateway (with
/// `options`) on the first config and swaps in every later one. The
/// running gateway arrives on the receiver once the first config is in
/// effect.
pub(crate) fn spawn(
    client: &Arc<ControlClient>,
    options: StartOptions,
) -> (oneshot::Receiver<Running>, ControlTasks) {
    let (tx, rx) = oneshot::channel();
    let starter = Arc::new(Starter {
        client: client.clone(),
        options: std::sync::Mutex::new(Some(options)),
        started: Mutex::new(Some(tx)),
        applier: OnceLock::new(),
    });
    (rx, client.spawn(starter))
}
