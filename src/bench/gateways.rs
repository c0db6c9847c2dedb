//! Causeway's paths: `causeway gateway --config` child processes of the
//! current executable, configs written in the run's temp dir with port 0
//! everywhere, addresses read from each gateway's ready line.
//!
//! - one gateway: east's TCP listener `local` → east's local service `echo`
//!   (east's own rules authorize the caller) → upstream;
//! - two gateways: east's listener `remote` → import `echo.west` → QUIC +
//!   mTLS → west's peer listener → west's checks and rules → upstream.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use super::pki::{CLIENT, EAST, EAST_GW, Pki, WEST, WEST_GW};
use super::process::ChildGuard;

/// The service port every config uses for the echo service.
const PORT: u16 = 7;

/// A started gateway process and its ready line.
#[derive(Debug)]
struct Gateway {
    guard: ChildGuard,
    ready: serde_json::Value,
}

impl Gateway {
    fn start(name: &str, config: &Path, dir: &Path, threads: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the causeway executable")?;
        let mut cmd = Command::new(exe);
        cmd.arg("gateway")
            .arg("--config")
            .arg(config)
            .args(["--drain", "0s"])
            .args(["--threads", &threads.to_string()])
            .env("CAUSEWAY_LOG", "warn");
        let mut guard = ChildGuard::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
        let line = guard.ready_line(Duration::from_secs(30))?;
        let ready = serde_json::from_str(&line)
            .with_context(|| format!("{name}: ready line {line:?} is not JSON"))?;
        Ok(Self { guard, ready })
    }

    fn addr(&self, pointer: &str) -> anyhow::Result<SocketAddr> {
        self.ready
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no address at {pointer} in the ready line {}", self.ready))
    }
}

fn write(path: PathBuf, text: String) -> anyhow::Result<PathBuf> {
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// East with one listener to a local service: the one-gateway path.
/// Returns the process and the address callers connect to.
pub(crate) fn one_gateway(
    dir: &Path,
    pki: &Pki,
    upstream: SocketAddr,
    threads: usize,
) -> anyhow::Result<(Vec<ChildGuard>, SocketAddr)> {
    let config = write(
        dir.join("east-1gw.yaml"),
        format!(
            r#"trust_domain: {EAST}
id: {EAST_GW}
svid: {{cert: "{cert}", key: "{key}"}}
bundles:
  - {{trust_domain: {EAST}, file: "{east_bundle}"}}
listeners:
  - {{name: local, listen: "127.0.0.1:0", protocol: tcp, service: echo, port: {PORT}, caller: {{identity: "{CLIENT}"}}}}
services:
  - {{name: echo, port: {PORT}, endpoints: ["{upstream}"]}}
authorization:
  - service: echo
    allow:
      - id: {CLIENT}
"#,
            cert = p(&pki.east_gw.cert),
            key = p(&pki.east_gw.key),
            east_bundle = p(&pki.east_bundle),
        ),
    )?;
    let east = Gateway::start("east-1gw", &config, dir, threads)?;
    let entry = east.addr("/listeners/local")?;
    Ok((vec![east.guard], entry))
}

/// West serving the upstream to east's callers, east importing it: the
/// two-gateway path over QUIC.
pub(crate) fn two_gateways(
    dir: &Path,
    pki: &Pki,
    upstream: SocketAddr,
    threads: usize,
) -> anyhow::Result<(Vec<ChildGuard>, SocketAddr)> {
    let bundles = format!(
        "bundles:\n  - {{trust_domain: {EAST}, file: \"{}\"}}\n  - {{trust_domain: {WEST}, file: \"{}\"}}\n",
        p(&pki.east_bundle),
        p(&pki.west_bundle)
    );
    let west_config = write(
        dir.join("west-2gw.yaml"),
        format!(
            r#"trust_domain: {WEST}
id: {WEST_GW}
svid: {{cert: "{cert}", key: "{key}"}}
{bundles}peer_listener: {{listen: "127.0.0.1:0"}}
services:
  - {{name: echo, port: {PORT}, endpoints: ["{upstream}"]}}
peers:
  - name: east
    trust_domain: {EAST}
    gateways:
      - {{address: "127.0.0.1:9", id: {EAST_GW}}}
authorization:
  - service: echo
    allow:
      - id: {CLIENT}
"#,
            cert = p(&pki.west_gw.cert),
            key = p(&pki.west_gw.key),
        ),
    )?;
    // West never dials east: east's address in west's config is a
    // placeholder; what matters is east's gateway ID, the only peer west's
    // QUIC listener accepts.
    let west = Gateway::start("west-2gw", &west_config, dir, threads)?;
    let west_addr = west.addr("/peer_listener")?;
    let east_config = write(
        dir.join("east-2gw.yaml"),
        format!(
            r#"trust_domain: {EAST}
id: {EAST_GW}
svid: {{cert: "{cert}", key: "{key}"}}
{bundles}listeners:
  - {{name: remote, listen: "127.0.0.1:0", protocol: tcp, service: echo.west, port: {PORT}, caller: {{identity: "{CLIENT}"}}}}
imports:
  - {{name: echo.west, port: {PORT}, peer: west, remote_service: echo, remote_port: {PORT}}}
peers:
  - name: west
    trust_domain: {WEST}
    gateways:
      - {{address: "{west_addr}", id: {WEST_GW}}}
"#,
            cert = p(&pki.east_gw.cert),
            key = p(&pki.east_gw.key),
        ),
    )?;
    let east = Gateway::start("east-2gw", &east_config, dir, threads)?;
    let entry = east.addr("/listeners/remote")?;
    Ok((vec![east.guard, west.guard], entry))
}
