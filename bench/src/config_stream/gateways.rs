//! The benchmark's gateways: real controller-run gateways in this process.
//! Each has its own local file and data directory, joins with its own
//! one-time token (the gateway's control client: key made locally, CSR,
//! root pinned by the token), opens the config stream over mutual TLS with
//! its SVID on loopback, and runs the real data plane: the first config
//! starts it (admin listener, QUIC peer listener, one HTTP listener, all on
//! port 0), later versions are converted, validated, their bundles written,
//! applied live and cached before the ACK, as in `causeway gateway`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use causeway_gateway::control::{Answer, ControlClient, ControlOptions, ControlTasks};
use causeway_gateway::runtime::{Running, StartOptions};
use causeway_gateway::state::Origin;
use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::admin_api_client::AdminApiClient;
use tokio::sync::{oneshot, watch};
use tonic::transport::Channel;

use causeway_gateway::controlled;

/// One gateway, joined, before its config stream starts.
pub(crate) struct Joined {
    pub(crate) name: String,
    client: Arc<ControlClient>,
    registry: prometheus::Registry,
}

/// One gateway with its stream open.
pub(crate) struct Gateway {
    pub(crate) name: String,
    answers: watch::Receiver<Option<Answer>>,
    starting: Option<oneshot::Receiver<Running>>,
    running: Option<Running>,
    // Dropping it stops the stream and the renewals.
    _tasks: ControlTasks,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("name", &self.name).finish()
    }
}

pub(crate) fn name(i: usize) -> String {
    format!("gw-{i:03}")
}

/// Creates a token for gateway `name`, writes its local file, and joins.
pub(crate) async fn join(
    dir: &Path,
    admin: &mut AdminApiClient<Channel>,
    api: SocketAddr,
    td: &str,
    name: &str,
) -> anyhow::Result<Joined> {
    let token = admin
        .create_token(pb::CreateTokenRequest {
            gateway: name.to_owned(),
            ttl_seconds: 600,
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))
        .with_context(|| format!("creating a join token for {name}"))?
        .into_inner()
        .token;
    let token_file = dir.join(format!("{name}.token"));
    causeway_trust::files::write_file(&token_file, format!("{token}\n").as_bytes(), true)?;
    let config = dir.join(format!("{name}.yaml"));
    let text = format!(
        "trust_domain: {td}\n\
         controller:\n  address: {api}\n  token_file: {name}.token\n  \
         data_dir: {name}-data\n  name: {name}\n\
         admin: {{listen: 127.0.0.1:0}}\n\
         peer_listener: {{listen: 127.0.0.1:0}}\n\
         listeners:\n  - name: web\n    listen: 127.0.0.1:0\n    protocol: http\n    \
         caller: {{identity: spiffe://{td}/ns/team-0/sa/client}}\n"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    let registry = prometheus::Registry::new();
    let client = ControlClient::load(&config, ControlOptions::default(), &registry)?;
    client
        .ensure_svid()
        .await
        .with_context(|| format!("{name}: joining with its token"))?;
    Ok(Joined {
        name: name.to_owned(),
        client,
        registry,
    })
}

/// Opens the config stream; the data plane starts at the first config.
pub(crate) fn connect(joined: Joined) -> Gateway {
    let answers = joined.client.answers();
    let (starting, tasks) = controlled::spawn(
        &joined.client,
        StartOptions {
            registry: joined.registry,
            origin: Origin::new("controller", None),
            ..StartOptions::default()
        },
    );
    Gateway {
        name: joined.name,
        answers,
        starting: Some(starting),
        running: None,
        _tasks: tasks,
    }
}

impl Gateway {
    /// When this gateway ACKed `version` or a later one, waiting until
    /// `deadline`. A NACK of it is an error with the gateway's reason.
    pub(crate) async fn acked(
        &mut self,
        version: u64,
        deadline: Instant,
    ) -> anyhow::Result<Instant> {
        let wait = self
            .answers
            .wait_for(|a| a.as_ref().is_some_and(|a| a.version >= version));
        let waited = match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(Ok(a)) => Ok(a.clone()),
            Ok(Err(_)) => Err(false),
            Err(_) => Err(true),
        };
        let answer = match waited {
            Ok(a) => a,
            Err(false) => bail!("{}: its control client stopped", self.name),
            Err(true) => {
                let last = self.answers.borrow().clone();
                bail!(
                    "{}: no ACK of version {version} in time (last answer: {})",
                    self.name,
                    describe(last.as_ref())
                )
            }
        };
        let Some(answer) = answer else {
            bail!("{}: no answer", self.name);
        };
        if let Some(reason) = &answer.refused {
            bail!(
                "{}: refused version {} (NACK): {reason}",
                self.name,
                answer.version
            );
        }
        // The data plane runs once the first config was applied.
        if let Some(rx) = self.starting.take() {
            self.running = Some(
                rx.await
                    .with_context(|| format!("{}: the gateway did not start", self.name))?,
            );
        }
        Ok(answer.at)
    }

    /// Stops the data plane at once.
    pub(crate) async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::ZERO).await;
        }
    }
}

fn describe(a: Option<&Answer>) -> String {
    match a {
        None => "none".into(),
        Some(Answer {
            version,
            refused: None,
            ..
        }) => format!("ACK of version {version}"),
        Some(Answer {
            version,
            refused: Some(r),
            ..
        }) => format!("NACK of version {version}: {r}"),
    }
}
