//! A federation of two or three trust domains, every part a real process
//! on loopback: per domain a controller (embedded store) and its gateways,
//! joined with one-time tokens, and an HTTP upstream; the domains peered
//! with each other by Peering files, each side's first bundle from
//! `causeway bundle export`, as an operator would. Every domain exports
//! its `echo` service to every other, which imports it as
//! `echo.<short name>`; a caller at a domain's first gateway reaches any
//! peer's upstream through its `web` listener.
//!
//! Ports come from the OS (port 0 and the ready lines), then the config
//! files are rewritten with them, so a restarted process comes back where
//! the others look for it. Data lives in a temporary directory, removed at
//! the end unless `CAUSEWAY_CHAOS_KEEP` is set.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::load::{Figures, Load, probe};
use crate::process::{CRASH_VAR, Causeway, Proc, Run, http_get, tail};
use crate::upstream::http_upstream;

/// Where a scenario's progress lines go.
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// The trust domains, in order.
const DOMAINS: [&str; 3] = ["alpha", "beta", "gamma"];

/// How a mesh is built.
#[derive(Debug, Clone)]
pub struct MeshOptions {
    /// Two or three.
    pub domains: usize,
    /// The controllers' `svid_ttl`.
    pub svid_ttl: Duration,
    /// Domains (by index) with a second gateway: joined to its controller
    /// and sent every config, but outside the data path (no listener, not
    /// named in the peers' peerings).
    pub spare_gateway: Vec<usize>,
    /// Pause between two requests of one load.
    pub load_interval: Duration,
}

impl Default for MeshOptions {
    fn default() -> Self {
        Self {
            domains: 3,
            svid_ttl: Duration::from_secs(60),
            spare_gateway: Vec::new(),
            load_interval: Duration::from_millis(25),
        }
    }
}

/// One gateway process of a domain.
#[derive(Debug)]
pub struct Gw {
    pub name: String,
    pub proc: Proc,
    /// Outside the data path.
    pub spare: bool,
}

/// One trust domain.
#[derive(Debug)]
pub struct Domain {
    pub td: String,
    pub short: String,
    pub dir: PathBuf,
    /// `None` while stopped.
    pub controller: Option<Proc>,
    /// Where its controller listens and serves its admin API.
    pub api: String,
    pub federation: String,
    pub socket: String,
    pub gateways: Vec<Gw>,
    pub upstream: SocketAddr,
    restarts: usize,
}

impl Domain {
    pub fn frontend(&self) -> String {
        format!("spiffe://{}/ns/shop/sa/frontend", self.td)
    }

    pub fn gateway_id(&self, name: &str) -> String {
        format!("spiffe://{}/causeway/gateway/{name}", self.td)
    }

    /// The gateway on the data path.
    pub fn gateway(&self) -> Result<&Gw> {
        self.gateways
            .iter()
            .find(|g| !g.spare)
            .ok_or_else(|| anyhow!("{} has no gateway", self.td))
    }

    pub fn spare(&self) -> Result<&Gw> {
        self.gateways
            .iter()
            .find(|g| g.spare)
            .ok_or_else(|| anyhow!("{} has no spare gateway", self.td))
    }

    pub fn controller(&self) -> Result<&Proc> {
        self.controller
            .as_ref()
            .ok_or_else(|| anyhow!("the controller of {} is stopped", self.td))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_controller_config(&self, ttl: Duration, metrics: &str) -> Result<()> {
        let text = format!(
            "trust_domain: {}\ndata_dir: ctl-data\nstore: embedded\napi: {{listen: \"{}\"}}\n\
             metrics: {{listen: \"{metrics}\"}}\nfederation: {{listen: \"{}\"}}\nsvid_ttl: {}s\n",
            self.td,
            self.api,
            self.federation,
            ttl.as_secs()
        );
        write(&self.path("controller.yaml"), &text)
    }

    fn write_gateway_config(&self, name: &str, addrs: [&str; 3], web: bool) -> Result<()> {
        let [admin, peer, listen] = addrs;
        let mut text = format!(
            "trust_domain: {}\ncontroller:\n  address: \"{}\"\n  token_file: {name}.token\n  \
             data_dir: {name}-data\n  name: {name}\nadmin: {{listen: \"{admin}\"}}\n\
             peer_listener: {{listen: \"{peer}\"}}\n",
            self.td, self.api
        );
        if web {
            text.push_str(&format!(
                "listeners:\n  - name: web\n    listen: \"{listen}\"\n    protocol: http\n    \
                 caller: {{identity: {}}}\n",
                self.frontend()
            ));
        }
        write(&self.path(&format!("{name}.yaml")), &text)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The running federation; every process is killed when it drops.
pub struct Mesh {
    pub cw: Causeway,
    pub domains: Vec<Domain>,
    pub options: MeshOptions,
    progress: Progress,
    /// Runs the upstreams.
    _rt: tokio::runtime::Runtime,
    /// Dropped last: the processes (in `domains`) first.
    _root: Option<tempfile::TempDir>,
    pub root: PathBuf,
}

impl Mesh {
    /// The last warnings and errors of every running controller's log, for
    /// a failure's report: what the controllers said while it went wrong.
    pub fn controller_warnings(&self, per_controller: usize) -> String {
        let mut out = String::new();
        for d in &self.domains {
            let Some(c) = &d.controller else { continue };
            let text = c.log_text();
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
                .collect();
            let from = lines.len().saturating_sub(per_controller);
            out.push_str(&format!("\n    {} controller, last warnings:", d.td));
            for l in lines.iter().skip(from) {
                out.push_str("\n      ");
                out.push_str(l);
            }
        }
        out
    }
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("root", &self.root)
            .field("domains", &self.domains)
            .finish_non_exhaustive()
    }
}

impl Mesh {
    /// Builds and starts the federation; returns once a call between every
    /// pair of domains got through and `bundles verify` exits 0 at every
    /// controller.
    pub fn start(cw: &Causeway, options: MeshOptions, progress: Progress) -> Result<Self> {
        if !(2..=3).contains(&options.domains) {
            bail!("a mesh has two or three trust domains");
        }
        let dir = tempfile::Builder::new()
            .prefix("causeway-chaos-")
            .tempdir()
            .context("create a temporary directory")?;
        let root = dir.path().to_owned();
        let keep = std::env::var_os("CAUSEWAY_CHAOS_KEEP").is_some();
        let dir = if keep {
            progress(&format!("keeping {}", dir.keep().display()));
            None
        } else {
            Some(dir)
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let mut mesh = Self {
            cw: cw.clone(),
            domains: Vec::new(),
            options,
            progress,
            _rt: rt,
            _root: dir,
            root,
        };
        let started = Instant::now();
        for i in 0..mesh.options.domains {
            let d = mesh.start_domain(i)?;
            mesh.domains.push(d);
        }
        mesh.peer_all()?;
        mesh.wait_all_calls()?;
        for i in 0..mesh.domains.len() {
            mesh.wait_in_sync(i, Duration::from_secs(30))?;
        }
        mesh.say(&format!(
            "federation of {} up in {:.1?}: {}",
            mesh.domains.len(),
            started.elapsed(),
            mesh.domains
                .iter()
                .map(|d| d.td.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(mesh)
    }

    pub fn say(&self, line: &str) {
        (self.progress)(line);
    }

    fn start_domain(&self, i: usize) -> Result<Domain> {
        let short = DOMAINS[i].to_owned();
        let td = format!("{short}.example");
        let dir = self.root.join(&td);
        fs::create_dir_all(&dir)?;
        let upstream = self._rt.block_on(http_upstream(format!("{short}-echo")))?;
        let mut d = Domain {
            td,
            short,
            dir,
            controller: None,
            api: "127.0.0.1:0".into(),
            federation: "127.0.0.1:0".into(),
            socket: String::new(),
            gateways: Vec::new(),
            upstream,
            restarts: 0,
        };
        let ttl = self.options.svid_ttl;
        d.write_controller_config(ttl, "127.0.0.1:0")?;
        let c = self.spawn_controller(&d, None)?;
        d.api = c.field("/api")?;
        d.federation = c.field("/federation")?;
        d.socket = c.field("/admin_socket")?;
        d.write_controller_config(ttl, &c.field("/metrics")?)?;
        d.controller = Some(c);
        let mut names = vec![(format!("{}-1", d.short), false)];
        if self.options.spare_gateway.contains(&i) {
            names.push((format!("{}-2", d.short), true));
        }
        for (name, spare) in names {
            let token = self
                .cli(&[
                    "token",
                    "create",
                    "--gateway",
                    &name,
                    "--controller",
                    &d.socket,
                ])?
                .success()?;
            write(&d.path(&format!("{name}.token")), token.stdout.trim())?;
            let any = "127.0.0.1:0";
            d.write_gateway_config(&name, [any, any, any], !spare)?;
            let proc = self.spawn_gateway(&d, &name)?;
            let web = if spare {
                String::new()
            } else {
                proc.field("/listeners/web")?
            };
            d.write_gateway_config(
                &name,
                [&proc.field("/admin")?, &proc.field("/peer_listener")?, &web],
                !spare,
            )?;
            d.gateways.push(Gw { name, proc, spare });
        }
        self.say(&format!(
            "{}: controller pid {}, gateways {}",
            d.td,
            d.controller()?.pid(),
            d.gateways
                .iter()
                .map(|g| format!("{} pid {}", g.name, g.proc.pid()))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(d)
    }

    fn spawn_controller(&self, d: &Domain, crash_at: Option<&str>) -> Result<Proc> {
        let config = d.path("controller.yaml");
        let log = d.path(&format!("controller-{}.log", d.restarts));
        let env: Vec<(&str, &str)> = crash_at.map(|s| (CRASH_VAR, s)).into_iter().collect();
        self.cw.spawn(
            &format!("controller of {}", d.td),
            &["controller", "--config", path_str(&config)?],
            &env,
            &log,
        )
    }

    fn spawn_gateway(&self, d: &Domain, name: &str) -> Result<Proc> {
        let config = d.path(&format!("{name}.yaml"));
        let n = d.gateways.iter().filter(|g| g.name == name).count();
        let log = d.path(&format!("{name}-{n}.log"));
        self.cw.spawn(
            &format!("gateway {name}"),
            &["gateway", "--config", path_str(&config)?, "--drain", "1s"],
            &[],
            &log,
        )
    }

    /// Runs `causeway ARGS`.
    pub fn cli(&self, args: &[&str]) -> Result<Run> {
        self.cw.run(args)
    }

    /// Runs `causeway ARGS --controller <domain i's socket>`.
    pub fn at(&self, i: usize, args: &[&str]) -> Result<Run> {
        let mut a = args.to_vec();
        a.extend(["--controller", &self.domains[i].socket]);
        self.cw.run(&a)
    }

    /// Each domain's bundle to every other; services and peerings applied.
    fn peer_all(&self) -> Result<()> {
        for d in &self.domains {
            let b = self
                .at(self.index(&d.td)?, &["bundle", "export"])?
                .success()?;
            for other in self.domains.iter().filter(|o| o.td != d.td) {
                write(&other.path(&format!("{}.bundle.json", d.td)), &b.stdout)?;
            }
        }
        for (i, d) in self.domains.iter().enumerate() {
            let mut files = vec![self.write_service(d)?];
            for peer in self.domains.iter().filter(|o| o.td != d.td) {
                files.push(self.write_peering(d, peer)?);
            }
            let mut args = vec!["apply"];
            for f in &files {
                args.extend(["-f", path_str(f)?]);
            }
            self.at(i, &args)?.success()?;
        }
        Ok(())
    }

    fn index(&self, td: &str) -> Result<usize> {
        self.domains
            .iter()
            .position(|d| d.td == td)
            .ok_or_else(|| anyhow!("no domain {td}"))
    }

    /// `echo` on port 8080 at the domain's upstream, for every peer's
    /// frontend (by the principal its peering maps it to).
    fn write_service(&self, d: &Domain) -> Result<PathBuf> {
        let allow: String = self
            .domains
            .iter()
            .filter(|o| o.td != d.td)
            .map(|o| format!("        - principal: {}-frontend\n", o.short))
            .collect();
        let path = d.path("service-echo.yaml");
        write(
            &path,
            &format!(
                "apiVersion: causeway.dev/v1alpha1\nkind: Service\nname: echo\nspec:\n  ports:\n    \
                 - port: 8080\n      protocol: http\n  endpoints: [\"{}\"]\n  authorization:\n    \
                 - allow:\n{allow}",
                d.upstream
            ),
        )?;
        Ok(path)
    }

    /// `d`'s peering with `peer`: exports echo to the peer's frontend,
    /// imports the peer's echo as `echo.<peer>`.
    fn write_peering(&self, d: &Domain, peer: &Domain) -> Result<PathBuf> {
        let gw = peer.gateway()?;
        let path = d.path(&format!("peering-{}.yaml", peer.short));
        write(
            &path,
            &format!(
                "apiVersion: causeway.dev/v1alpha1\nkind: Peering\nname: {short}\nspec:\n  \
                 trustDomain: {td}\n  bundleEndpoint:\n    url: https://{fed}/\n    \
                 spiffeId: spiffe://{td}/causeway/controller\n  firstBundle:\n    file: {td}.bundle.json\n  \
                 gateways:\n    - address: \"{addr}\"\n      id: {id}\n  exports:\n    - service: echo\n      \
                 ports: [8080]\n      callers:\n        - id: {front}\n  imports:\n    - service: echo\n      \
                 ports: [8080]\n      localName: echo.{short}\n  identityMap:\n    - from: {front}\n      \
                 principal: {short}-frontend\n",
                short = peer.short,
                td = peer.td,
                fed = peer.federation,
                addr = gw.proc.field("/peer_listener")?,
                id = peer.gateway_id(&gw.name),
                front = peer.frontend(),
            ),
        )?;
        Ok(path)
    }

    /// Every ordered pair of domains.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        let n = self.domains.len();
        (0..n)
            .flat_map(|a| (0..n).filter(move |b| *b != a).map(move |b| (a, b)))
            .collect()
    }

    /// Where a load from `from` to `to` sends, with which Host, and the
    /// upstream that must answer.
    fn route(&self, from: usize, to: usize) -> Result<(String, SocketAddr, String, String)> {
        let (a, b) = (&self.domains[from], &self.domains[to]);
        Ok((
            format!("{}->{}", a.short, b.short),
            a.gateway()?.proc.addr("/listeners/web")?,
            format!("echo.{}", b.short),
            format!("{}-echo", b.short),
        ))
    }

    fn wait_all_calls(&self) -> Result<()> {
        for (from, to) in self.pairs() {
            let (name, target, host, upstream) = self.route(from, to)?;
            wait_for(
                &format!("a first call {name}"),
                Duration::from_secs(30),
                || probe(target, &host, &upstream),
            )
            .map_err(|e| anyhow!("{e}\n{}", self.gateway_logs()))?;
        }
        Ok(())
    }

    /// The last lines of every gateway's log, for a failure's message.
    pub fn gateway_logs(&self) -> String {
        let mut out = String::new();
        for d in &self.domains {
            for g in &d.gateways {
                out.push_str(&format!(
                    "--- {} ---\n{}",
                    g.name,
                    tail(&g.proc.log_text(), 15)
                ));
            }
        }
        out
    }

    /// Steady load on each of `pairs`.
    pub fn start_loads(&self, pairs: &[(usize, usize)]) -> Result<Loads> {
        let mut loads = Vec::new();
        for (from, to) in pairs {
            let (name, target, host, upstream) = self.route(*from, *to)?;
            loads.push(Load::start(
                name,
                target,
                host,
                upstream,
                self.options.load_interval,
            )?);
        }
        Ok(Loads(loads))
    }

    /// `bundles verify --json` at domain `i`: exit 0 or not, and the
    /// report.
    pub fn verify(&self, i: usize) -> Result<(bool, serde_json::Value)> {
        let r = self.at(i, &["bundles", "verify", "--json"])?;
        Ok((r.ok(), r.json()?))
    }

    /// Waits until `bundles verify` exits 0 at domain `i`; how many tries
    /// it took.
    pub fn wait_in_sync(&self, i: usize, limit: Duration) -> Result<usize> {
        let mut tries = 0;
        wait_for(
            &format!("bundles verify exits 0 at {}", self.domains[i].td),
            limit,
            || {
                tries += 1;
                let (ok, report) = self.verify(i).map_err(|e| e.to_string())?;
                if ok {
                    Ok(())
                } else {
                    Err(out_of_sync(&report))
                }
            },
        )?;
        Ok(tries)
    }

    /// `rotate status --json` at domain `i`.
    pub fn rotation(&self, i: usize) -> Result<serde_json::Value> {
        self.at(i, &["rotate", "status", "--json", "--history", "1"])?
            .success()?
            .json()
    }

    /// Kills domain `i`'s controller (SIGKILL).
    pub fn stop_controller(&mut self, i: usize) {
        if let Some(mut c) = self.domains[i].controller.take() {
            c.kill();
        }
    }

    /// Starts domain `i`'s controller again on its config and data,
    /// crashing at rotation step `crash_at` if given.
    pub fn start_controller(&mut self, i: usize, crash_at: Option<&str>) -> Result<()> {
        self.stop_controller(i);
        self.domains[i].restarts += 1;
        let c = self.spawn_controller(&self.domains[i], crash_at)?;
        self.domains[i].controller = Some(c);
        Ok(())
    }

    /// The controller process of domain `i`, to watch it end.
    pub fn controller_mut(&mut self, i: usize) -> Result<&mut Proc> {
        let td = self.domains[i].td.clone();
        self.domains[i]
            .controller
            .as_mut()
            .ok_or_else(|| anyhow!("the controller of {td} is stopped"))
    }

    /// GET `path` on gateway `g`'s admin listener.
    pub fn admin_get(&self, g: &Gw, path: &str) -> Result<String> {
        let (status, body) = http_get(g.proc.addr("/admin")?, path)?;
        if status != 200 {
            bail!("{}: GET {path}: {status}", g.name);
        }
        Ok(body)
    }
}

/// The parties out of sync in a `bundles verify --json` report, one line.
pub fn out_of_sync(report: &serde_json::Value) -> String {
    let parties = report["parties"].as_array().cloned().unwrap_or_default();
    let behind: Vec<String> = parties
        .iter()
        .filter(|p| p["in_sync"] != true)
        .map(|p| {
            format!(
                "{} {} {}: {}",
                p["kind"].as_str().unwrap_or("?"),
                p["trust_domain"].as_str().unwrap_or("?"),
                p["name"].as_str().unwrap_or(""),
                p["problem"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "{} of {} behind: {}",
        behind.len(),
        parties.len(),
        behind.join("; ")
    )
}

/// The loads of a scenario.
#[derive(Debug)]
pub struct Loads(pub Vec<Load>);

impl Loads {
    pub fn figures(&self) -> Vec<(String, Figures)> {
        self.0
            .iter()
            .map(|l| (l.name.clone(), l.figures()))
            .collect()
    }

    /// Stops every load; what each saw.
    pub fn stop(self) -> Vec<(String, Figures)> {
        self.0
            .into_iter()
            .map(|l| (l.name.clone(), l.stop()))
            .collect()
    }
}

/// Calls `f` every 200 ms until it gives a value; after `limit`, an error
/// naming `what` and the last thing `f` said.
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() > deadline => {
                bail!("{what}: not within {limit:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", p.display()))
}
