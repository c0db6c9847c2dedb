//! Causeway's paths: `causeway gateway --config` child processes of the
//! `causeway` binary, configs written in the run's temp dir with port 0
//! everywhere, addresses read from each gateway's ready line.
//!
//! - one gateway: east's listener → east's local service `echo` (east's
//!   own rules authorize the caller) → upstream;
//! - two gateways: east's listener → import `echo.west` → QUIC + mTLS →
//!   west's peer listener → west's checks and rules → upstream.
//!
//! The listener is TCP (bound to the service) or HTTP (plain, routed by
//! Host: `echo` or `echo.west`); either way it assigns the caller's
//! identity, as a sidecar on a trusted address would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use super::pki::{CLIENT, EAST, EAST_GW, Pki, WEST, WEST_GW};
use super::process::ChildGuard;

/// The listener east's callers reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tcp,
    Http,
}

impl Kind {
    /// The service port: the TCP echo's, or HTTP's.
    fn port(self) -> u16 {
        match self {
            Self::Tcp => 7,
            Self::Http => 80,
        }
    }

    /// Suffix of file and process names.
    fn suffix(self) -> &'static str {
        match self {
            Self::Tcp => "",
            Self::Http => "-http",
        }
    }

    /// East's listener, as one YAML flow mapping, to `service`.
    fn listener(self, service: &str) -> String {
        match self {
            Self::Tcp => format!(
                r#"{{name: entry, listen: "127.0.0.1:0", protocol: tcp, service: {service}, port: {}, caller: {{identity: "{CLIENT}"}}}}"#,
                self.port()
            ),
            Self::Http => format!(
                r#"{{name: entry, listen: "127.0.0.1:0", protocol: http, caller: {{identity: "{CLIENT}"}}}}"#
            ),
        }
    }
}

/// What starting gateways needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gateways<'a> {
    /// The `causeway` binary.
    pub(crate) bin: &'a Path,
    pub(crate) dir: &'a Path,
    pub(crate) pki: &'a Pki,
    /// `causeway gateway --threads`.
    pub(crate) threads: usize,
}

/// A started gateway process and its ready line.
#[derive(Debug)]
struct Gateway {
    guard: ChildGuard,
    ready: serde_json::Value,
}

impl Gateway {
    fn start(g: &Gateways<'_>, name: &str, config: &Path) -> anyhow::Result<Self> {
        let mut cmd = Command::new(g.bin);
        cmd.arg("gateway")
            .arg("--config")
            .arg(config)
            .args(["--drain", "0s"])
            .args(["--threads", &g.threads.to_string()])
            .env("CAUSEWAY_LOG", "warn");
        let mut guard = ChildGuard::spawn(name, cmd, &g.dir.join(format!("{name}.log")))?;
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

impl Gateways<'_> {
    /// East with one listener to a local service: the one-gateway path.
    /// Returns the process and the address callers connect to.
    pub(crate) fn one(
        &self,
        kind: Kind,
        upstream: SocketAddr,
    ) -> anyhow::Result<(Vec<ChildGuard>, SocketAddr)> {
        let (pki, port) = (self.pki, kind.port());
        let name = format!("east-1gw{}", kind.suffix());
        let config = write(
            self.dir.join(format!("{name}.yaml")),
            format!(
                r#"trust_domain: {EAST}
id: {EAST_GW}
svid: {{cert: "{cert}", key: "{key}"}}
bundles:
  - {{trust_domain: {EAST}, file: "{east_bundle}"}}
listeners:
  - {listener}
services:
  - {{name: echo, port: {port}, endpoints: ["{upstream}"]}}
authorization:
  - service: echo
    allow:
      - id: {CLIENT}
"#,
                cert = p(&pki.east_gw.cert),
                key = p(&pki.east_gw.key),
                east_bundle = p(&pki.east_bundle),
                listener = kind.listener("echo"),
            ),
        )?;
        let east = Gateway::start(self, &name, &config)?;
        let entry = east.addr("/listeners/entry")?;
        Ok((vec![east.guard], entry))
    }

    /// West serving the upstream to east's callers, east importing it: the
    /// two-gateway path over QUIC.
    pub(crate) fn two(
        &self,
        kind: Kind,
        upstream: SocketAddr,
    ) -> anyhow::Result<(Vec<ChildGuard>, SocketAddr)> {
        let (pki, port) = (self.pki, kind.port());
        let bundles = format!(
            "bundles:\n  - {{trust_domain: {EAST}, file: \"{}\"}}\n  - {{trust_domain: {WEST}, file: \"{}\"}}\n",
            p(&pki.east_bundle),
            p(&pki.west_bundle)
        );
        let west_name = format!("west-2gw{}", kind.suffix());
        let west_config = write(
            self.dir.join(format!("{west_name}.yaml")),
            format!(
                r#"trust_domain: {WEST}
id: {WEST_GW}
svid: {{cert: "{cert}", key: "{key}"}}
{bundles}peer_listener: {{listen: "127.0.0.1:0"}}
services:
  - {{name: echo, port: {port}, endpoints: ["{upstream}"]}}
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
        let west = Gateway::start(self, &west_name, &west_config)?;
        let west_addr = west.addr("/peer_listener")?;
        let east_name = format!("east-2gw{}", kind.suffix());
        let east_config = write(
            self.dir.join(format!("{east_name}.yaml")),
            format!(
                r#"trust_domain: {EAST}
id: {EAST_GW}
svid: {{cert: "{cert}", key: "{key}"}}
{bundles}listeners:
  - {listener}
imports:
  - {{name: echo.west, port: {port}, peer: west, remote_service: echo, remote_port: {port}}}
peers:
  - name: west
    trust_domain: {WEST}
    gateways:
      - {{address: "{west_addr}", id: {WEST_GW}}}
"#,
                cert = p(&pki.east_gw.cert),
                key = p(&pki.east_gw.key),
                listener = kind.listener("echo.west"),
            ),
        )?;
        let east = Gateway::start(self, &east_name, &east_config)?;
        let entry = east.addr("/listeners/entry")?;
        Ok((vec![east.guard, west.guard], entry))
    }
}
