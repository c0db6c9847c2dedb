//! The peers to beat: nginx (stream module) and haproxy, each as a two-hop
//! TCP proxy with mTLS between the hops, when installed. Same shape as two
//! gateways: plain TCP into hop 1, TLS 1.3 with a client certificate from
//! hop 1 to hop 2, hop 2 requiring and verifying it, plain TCP to the
//! upstream. The certificates are the same trust domains' SVIDs.
//!
//! Each hop is its own process (two nginx masters, two haproxy processes),
//! as each gateway is, with the program's default thread or worker count
//! (one per core). The configs ask for no port 0: a free port is taken from
//! the OS just before, and readiness is a successful TCP connect.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::pki::Pki;
use super::process::{ChildGuard, free_port};

/// Why a peer proxy is not measured in this run.
#[derive(Debug)]
pub(crate) enum Absent {
    /// Not installed (or unusable as installed): skipped, not an error.
    Skip(String),
    /// Installed but it failed: reported as a failure.
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Absent {
    fn from(e: anyhow::Error) -> Self {
        Self::Failed(e)
    }
}

/// A program on PATH or in the sbin directories (where Debian puts nginx
/// and haproxy, and which a non-root PATH may lack).
pub(crate) fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

pub(crate) fn write(path: PathBuf, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

pub(crate) fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Runs a config check (`nginx -t`, `haproxy -c`); its output on failure.
pub(crate) fn check(program: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed:\n{}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The `load_module` line nginx needs for the stream module, or why it
/// cannot have one.
fn nginx_stream_module(nginx: &Path) -> Result<String, Absent> {
    let out = Command::new(nginx)
        .arg("-V")
        .output()
        .map_err(|e| Absent::Skip(format!("cannot run {}: {e}", nginx.display())))?;
    // nginx -V prints its build options on stderr.
    let info = String::from_utf8_lossy(&out.stderr).into_owned();
    if info.contains("--with-stream=dynamic") {
        let dir = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("--modules-path="))
            .unwrap_or("/usr/lib/nginx/modules");
        let module = Path::new(dir).join("ngx_stream_module.so");
        if !module.is_file() {
            return Err(Absent::Skip(format!(
                "nginx has no stream module ({} missing; Debian: libnginx-mod-stream)",
                module.display()
            )));
        }
        Ok(format!("load_module {};", module.display()))
    } else if info.contains("--with-stream") {
        Ok(String::new())
    } else {
        Err(Absent::Skip(
            "nginx was built without the stream module".into(),
        ))
    }
}

/// nginx, two instances: hop 1 (plain in, TLS with a client certificate
/// out) and hop 2 (TLS in, client certificate required, plain out).
pub(crate) fn nginx(
    dir: &Path,
    pki: &Pki,
    upstream: SocketAddr,
) -> Result<(Vec<ChildGuard>, SocketAddr), Absent> {
    let nginx = find("nginx").ok_or_else(|| Absent::Skip("nginx is not installed".into()))?;
    let module = nginx_stream_module(&nginx)?;
    let (p1, p2) = (free_port()?, free_port()?);
    let main = |name: &str| nginx_main(dir, name, &module);
    // proxy_half_close: the bulk client closes its side and waits for the
    // sink's count, as through the gateways (nginx >= 1.21.4).
    let hop1 = write(
        dir.join("nginx-hop1.conf"),
        &format!(
            "{main}stream {{\n  server {{\n    listen 127.0.0.1:{p1};\n    proxy_pass 127.0.0.1:{p2};\n\
             \x20   proxy_half_close on;\n\
             \x20   proxy_ssl on;\n    proxy_ssl_protocols TLSv1.3;\n\
             \x20   proxy_ssl_certificate {cert};\n    proxy_ssl_certificate_key {key};\n\
             \x20   # hop 2's SVID names it by a URI SAN only, and nginx can check a\n\
             \x20   # DNS name or IP only: it does not verify the server here.\n\
             \x20   proxy_ssl_verify off;\n  }}\n}}\n",
            main = main("nginx-hop1"),
            cert = p(&pki.hop1.cert),
            key = p(&pki.hop1.key),
        ),
    )?;
    let hop2 = write(
        dir.join("nginx-hop2.conf"),
        &format!(
            "{main}stream {{\n  server {{\n    listen 127.0.0.1:{p2} ssl;\n    ssl_protocols TLSv1.3;\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             \x20   ssl_client_certificate {roots};\n    ssl_verify_client on;\n    ssl_verify_depth 2;\n\
             \x20   proxy_pass {upstream};\n    proxy_half_close on;\n  }}\n}}\n",
            main = main("nginx-hop2"),
            cert = p(&pki.hop2.cert),
            key = p(&pki.hop2.key),
            roots = p(&pki.east_roots),
        ),
    )?;
    let guards = vec![
        start_nginx(&nginx, dir, "nginx-hop2", &hop2, &[p2])?,
        start_nginx(&nginx, dir, "nginx-hop1", &hop1, &[p1])?,
    ];
    Ok((guards, SocketAddr::from(([127, 0, 0, 1], p1))))
}

/// The top of an nginx config: one master in the foreground with a worker
/// per core (`worker_processes auto`), its files in `dir`, and `module`
/// (a `load_module` line or nothing).
pub(crate) fn nginx_main(dir: &Path, name: &str, module: &str) -> String {
    format!(
        "daemon off;\nmaster_process on;\nworker_processes auto;\npid {dir}/{name}.pid;\n\
         error_log {dir}/{name}.error.log warn;\n{module}\n\
         events {{ worker_connections 4096; }}\n",
        dir = p(dir),
    )
}

/// Checks `conf` (`nginx -t`), starts an nginx master on it and waits
/// until every one of `ports` on loopback accepts connections.
pub(crate) fn start_nginx(
    nginx: &Path,
    dir: &Path,
    name: &str,
    conf: &Path,
    ports: &[u16],
) -> Result<ChildGuard, Absent> {
    let conf = p(conf);
    let prefix = format!("{}/", p(dir));
    check(nginx, &["-t", "-q", "-p", &prefix, "-c", &conf])?;
    let mut cmd = Command::new(nginx);
    cmd.args(["-p", &prefix, "-c", &conf]);
    let mut guard = ChildGuard::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
    for &port in ports {
        guard.wait_listening(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10),
        )?;
    }
    Ok(guard)
}

/// haproxy, two processes, same shape as nginx; here hop 1 does verify
/// hop 2's chain (haproxy checks no name unless asked to).
pub(crate) fn haproxy(
    dir: &Path,
    pki: &Pki,
    upstream: SocketAddr,
) -> Result<(Vec<ChildGuard>, SocketAddr), Absent> {
    let haproxy = find("haproxy").ok_or_else(|| Absent::Skip("haproxy is not installed".into()))?;
    let (p1, p2) = (free_port()?, free_port()?);
    let common = "global\n  maxconn 4096\n\
                  defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1m\n  timeout server 1m\n";
    let hop1 = write(
        dir.join("haproxy-hop1.cfg"),
        &format!(
            "{common}frontend hop1\n  bind 127.0.0.1:{p1}\n  default_backend hop2\n\
             backend hop2\n  server hop2 127.0.0.1:{p2} ssl crt {crt} ca-file {roots} verify required ssl-min-ver TLSv1.3\n",
            crt = p(&pki.hop1.combined),
            roots = p(&pki.west_roots),
        ),
    )?;
    let hop2 = write(
        dir.join("haproxy-hop2.cfg"),
        &format!(
            "{common}frontend hop2\n  bind 127.0.0.1:{p2} ssl crt {crt} ca-file {roots} verify required ssl-min-ver TLSv1.3\n\
             \x20 default_backend upstream\n\
             backend upstream\n  server upstream {upstream}\n",
            crt = p(&pki.hop2.combined),
            roots = p(&pki.east_roots),
        ),
    )?;
    let mut guards = Vec::new();
    for (name, conf, port) in [("haproxy-hop2", &hop2, p2), ("haproxy-hop1", &hop1, p1)] {
        let conf = p(conf);
        check(&haproxy, &["-c", "-q", "-f", &conf])?;
        let mut cmd = Command::new(&haproxy);
        // -db: stay in the foreground, one process (threads, no master).
        cmd.args(["-db", "-f", &conf]);
        let mut guard = ChildGuard::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
        guard.wait_listening(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(10),
        )?;
        guards.push(guard);
    }
    Ok((guards, SocketAddr::from(([127, 0, 0, 1], p1))))
}
