//! The demo's running parts, all in this process: each organization's
//! federation controller (`causeway controller --config`'s code), its
//! gateway run by that controller (`causeway gateway --config`'s), and the
//! sample services. Each part reads its file from the temp dir, written
//! from config/demo/ just before it starts ([`super::files`]).
//! [`Parts::shutdown`] stops them all, gateways first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use causeway_controller::{ControllerConfig, StartOptions};
use causeway_gateway::control::ControlTasks;
use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::admin_api_client::AdminApiClient;
use tempfile::TempDir;
use tonic::transport::Channel;

use super::files::{Addresses, GatewayListens, SideFiles};
use super::services::{self, Sample};
use super::traffic::Traffic;

/// How long a gateway's open calls may take to finish when it stops.
const DRAIN: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Controller {
    pub(crate) side: &'static str,
    pub(crate) trust_domain: String,
    pub(crate) config: PathBuf,
    pub(crate) running: causeway_controller::Running,
}

impl Controller {
    /// A client of its admin API (what the CLI's `--controller` uses).
    pub(crate) async fn admin(&self) -> anyhow::Result<AdminApiClient<Channel>> {
        causeway_controller::client::admin(&self.running.admin_socket)
            .await
            .with_context(|| format!("{}'s controller: admin socket", self.trust_domain))
    }

    /// The trust domain's own bundle document (`causeway bundle export`).
    pub(crate) async fn export_bundle(&self) -> anyhow::Result<String> {
        Ok(self
            .admin()
            .await?
            .export_bundle(pb::ExportBundleRequest {})
            .await
            .map_err(|s| anyhow!("bundle export: {}", s.message()))?
            .into_inner()
            .document)
    }

    /// `https://<federation>/`: where peers fetch its bundle.
    pub(crate) fn bundle_endpoint(&self) -> String {
        self.running
            .federation
            .map(|a| format!("https://{a}/"))
            .unwrap_or_default()
    }
}

#[derive(Debug)]
pub(crate) struct Gateway {
    pub(crate) side: &'static str,
    pub(crate) trust_domain: String,
    pub(crate) name: String,
    pub(crate) id: String,
    pub(crate) config: PathBuf,
    /// The listeners as the file declares them (fixed addresses).
    pub(crate) declared: GatewayListens,
    pub(crate) running: causeway_gateway::runtime::Running,
    tasks: ControlTasks,
}

impl Gateway {
    /// The bound address of the listener `name`.
    pub(crate) fn listener(&self, name: &str) -> anyhow::Result<SocketAddr> {
        self.running
            .listeners
            .get(name)
            .copied()
            .ok_or_else(|| anyhow!("{}: no listener {name} in its file", self.name))
    }
}

#[derive(Debug)]
pub(crate) struct Parts {
    pub(crate) dir: TempDir,
    pub(crate) addresses: Addresses,
    pub(crate) controllers: Vec<Controller>,
    pub(crate) gateways: Vec<Gateway>,
    /// Sample services, with their trust domain.
    pub(crate) samples: Vec<(String, Sample)>,
    pub(crate) traffic: Option<Traffic>,
}

impl Parts {
    pub(crate) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new()
                .prefix("causeway-demo-")
                .tempdir()
                .context("creating a temp dir")?,
            addresses: Addresses::default(),
            controllers: Vec::new(),
            gateways: Vec::new(),
            samples: Vec::new(),
            traffic: None,
        })
    }

    pub(crate) fn side_dir(&self, side: &SideFiles) -> PathBuf {
        self.dir.path().join(side.dir)
    }

    pub(crate) fn controller(&self, side: &str) -> anyhow::Result<&Controller> {
        self.controllers
            .iter()
            .find(|c| c.side == side)
            .ok_or_else(|| anyhow!("no controller for {side}"))
    }

    pub(crate) fn gateway(&self, side: &str) -> anyhow::Result<&Gateway> {
        self.gateways
            .iter()
            .find(|g| g.side == side)
            .ok_or_else(|| anyhow!("no gateway for {side}"))
    }

    /// `causeway controller --config <side>/controller.yaml`.
    pub(crate) async fn start_controller(&mut self, side: &SideFiles) -> anyhow::Result<()> {
        let name = format!("config/demo/{}/controller.yaml", side.dir);
        let declared = ControllerConfig::parse(&name, side.controller, Path::new("."))?;
        let listens: Vec<SocketAddr> = [Some(declared.api_listen)]
            .into_iter()
            .chain([declared.metrics_listen, declared.federation_listen])
            .flatten()
            .collect();
        let path = self.addresses.write(
            &self.side_dir(side),
            "controller.yaml",
            side.controller,
            &listens,
        )?;
        let config = ControllerConfig::load(&path)?;
        let trust_domain = config.trust_domain.to_string();
        let running = causeway_controller::start(config, StartOptions::default())
            .await
            .with_context(|| format!("starting {trust_domain}'s controller"))?;
        self.addresses.bound(declared.api_listen, running.api);
        for (fixed, bound) in [
            (declared.metrics_listen, running.metrics),
            (declared.federation_listen, running.federation),
        ] {
            if let (Some(f), Some(b)) = (fixed, bound) {
                self.addresses.bound(f, b);
            }
        }
        self.controllers.push(Controller {
            side: side.dir,
            trust_domain,
            config: path,
            running,
        });
        Ok(())
    }

    /// `causeway token create --gateway NAME > TOKEN_FILE`, then
    /// `causeway gateway --config <side>/gateway.yaml`: the gateway joins,
    /// and serves once its first config has come.
    pub(crate) async fn start_gateway(&mut self, side: &SideFiles) -> anyhow::Result<()> {
        let file = format!("config/demo/{}/gateway.yaml", side.dir);
        let raw: causeway_gateway::config::raw::RawConfig = serde_saphyr::from_str(side.gateway)
            .with_context(|| format!("{file}: not a gateway file"))?;
        let control = raw
            .controller
            .as_ref()
            .with_context(|| format!("{file}: no controller: section"))?;
        let token_file = control
            .token_file
            .as_ref()
            .with_context(|| format!("{file}: controller.token_file is needed for the join"))?;
        let declared = GatewayListens::of(&file, side.gateway)?;
        let c = self.controller(side.dir)?;
        let token = c
            .admin()
            .await?
            .create_token(pb::CreateTokenRequest {
                gateway: control.name.clone(),
                ttl_seconds: 0,
            })
            .await
            .map_err(|s| anyhow!("token create: {}", s.message()))?
            .into_inner()
            .token;
        let dir = self.side_dir(side);
        causeway_trust::files::write_file(
            &dir.join(token_file),
            format!("{token}\n").as_bytes(),
            true,
        )?;
        let path = self
            .addresses
            .write(&dir, "gateway.yaml", side.gateway, &declared.all())?;
        let (running, tasks) = causeway_gateway::controlled::start(&path, Duration::from_secs(1))
            .await
            .with_context(|| format!("starting {}", control.name))?;
        let bound = [
            (declared.admin, running.admin),
            (declared.peer_listener, running.peer_listener),
        ];
        for (fixed, bound) in bound {
            if let (Some(f), Some(b)) = (fixed, bound) {
                self.addresses.bound(f, b);
            }
        }
        for (name, (fixed, _, _)) in &declared.listeners {
            if let Some(b) = running.listeners.get(name) {
                self.addresses.bound(*fixed, *b);
            }
        }
        self.gateways.push(Gateway {
            side: side.dir,
            trust_domain: raw.trust_domain.clone(),
            name: control.name.clone(),
            id: format!(
                "spiffe://{}/causeway/gateway/{}",
                raw.trust_domain, control.name
            ),
            config: path,
            declared,
            running,
            tasks,
        });
        Ok(())
    }

    /// One sample service per endpoint of each Service file of `side`: HTTP
    /// or a TCP echo, by the Service's first port's protocol.
    pub(crate) async fn start_samples(&mut self, side: &SideFiles, td: &str) -> anyhow::Result<()> {
        for (name, text) in side.resources {
            let doc: serde_json::Value = serde_saphyr::from_str(text)
                .with_context(|| format!("config/demo/{}/{name}: not YAML", side.dir))?;
            if doc["kind"] != "Service" {
                continue;
            }
            let service = doc["name"].as_str().unwrap_or_default();
            let tcp = doc["spec"]["ports"][0]["protocol"] == "tcp";
            let endpoints = doc["spec"]["endpoints"].as_array().cloned();
            for e in endpoints.unwrap_or_default() {
                let fixed: SocketAddr =
                    e.as_str().unwrap_or_default().parse().with_context(|| {
                        format!("config/demo/{}/{name}: endpoint {e}", side.dir)
                    })?;
                let any = SocketAddr::from(([127, 0, 0, 1], 0));
                let sample = if tcp {
                    services::tcp_echo(service, any).await?
                } else {
                    services::http(service, td, any).await?
                };
                self.addresses.bound(fixed, sample.addr);
                self.samples.push((td.to_owned(), sample));
            }
        }
        Ok(())
    }

    /// `causeway bundle export` at `from`'s controller, written where
    /// `to`'s peering names it: `<to>/<from>.bundle.json`. Returns the
    /// bundle's sequence.
    pub(crate) async fn export_bundle(
        &self,
        from: &SideFiles,
        to: &SideFiles,
    ) -> anyhow::Result<String> {
        let doc = self.controller(from.dir)?.export_bundle().await?;
        let path = self.side_dir(to).join(format!("{}.bundle.json", from.dir));
        std::fs::write(&path, &doc).with_context(|| format!("writing {}", path.display()))?;
        Ok(path.display().to_string())
    }

    /// `causeway apply -f FILE...` at `side`'s controller, each of its
    /// resource files written first; returns the plan.
    pub(crate) async fn apply(&self, side: &SideFiles) -> anyhow::Result<String> {
        let dir = self.side_dir(side);
        let mut paths = Vec::new();
        for (name, text) in side.resources {
            paths.push(self.addresses.write(&dir, name, text, &[])?);
        }
        let files = crate::cli::admin::resource_files(&paths)
            .map_err(|problems| anyhow!("refused:\n  {}", problems.join("\n  ")))?;
        let r = self
            .controller(side.dir)?
            .admin()
            .await?
            .apply(pb::ApplyRequest {
                files,
                dry_run: false,
            })
            .await
            .map_err(|s| anyhow!("apply: {}", s.message()))?
            .into_inner();
        if !r.problems.is_empty() {
            bail!("apply refused:\n  {}", r.problems.join("\n  "));
        }
        Ok(r.plan)
    }

    /// Stops everything: the traffic, the gateways (open calls get
    /// [`DRAIN`] to finish), the controllers, the sample services.
    pub(crate) async fn shutdown(&mut self) {
        drop(self.traffic.take());
        for g in self.gateways.drain(..) {
            drop(g.tasks);
            g.running.shutdown(DRAIN).await;
        }
        for c in self.controllers.drain(..) {
            c.running.shutdown().await;
        }
        for (_, s) in self.samples.drain(..) {
            s.stop();
        }
    }
}
