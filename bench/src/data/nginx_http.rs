//! nginx as the HTTP peer to beat, when installed: an L7 reverse proxy
//! (`proxy_pass` to an `upstream` block) with keep-alive pools on every
//! hop, so that no request pays for a connection, as through the gateways.
//!
//! - one hop: plain HTTP/1.1 and h2c in, HTTP/1.1 keep-alive to the
//!   upstream (the one-gateway path's peer);
//! - two hops: hop 1 takes plain HTTP/1.1 and h2c, and calls hop 2 over
//!   TLS 1.3 with a client certificate (east's SVID), keep-alive and
//!   session reuse; hop 2 requires and verifies it against east's root,
//!   then calls the upstream over keep-alive HTTP/1.1 (the two-gateway
//!   path's peer). nginx proxies HTTP/1.1 only (`grpc_pass` aside), so an
//!   h2c call leaves hop 1 as HTTP/1.1.
//!
//! h2c needs `listen ... http2` on a port of its own (nginx 1.22 speaks
//! prior-knowledge HTTP/2 there, and HTTP/2 only); without the HTTP/2
//! module the h2c scenarios are skipped. Each nginx is one master with a
//! worker per core, as in the TCP scenario.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use super::pki::Pki;
use super::process::{ChildGuard, free_port};
use super::proxies::{Absent, find, nginx_main, p, start_nginx, write};

/// A started nginx path: its masters, where HTTP/1.1 goes in, and where
/// h2c does (or why it cannot).
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) guards: Vec<ChildGuard>,
    pub(crate) http: SocketAddr,
    pub(crate) h2c: Result<SocketAddr, String>,
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// nginx, and whether it has the HTTP/2 module.
fn nginx() -> Result<(std::path::PathBuf, bool), Absent> {
    let nginx = find("nginx").ok_or_else(|| Absent::Skip("nginx is not installed".into()))?;
    let out = Command::new(&nginx)
        .arg("-V")
        .output()
        .map_err(|e| Absent::Skip(format!("cannot run {}: {e}", nginx.display())))?;
    // nginx -V prints its build options on stderr.
    let info = String::from_utf8_lossy(&out.stderr);
    Ok((nginx, info.contains("--with-http_v2_module")))
}

/// What every hop's `http` block starts with: no access log (the gateways
/// keep none either), temp files in the run's dir, and client connections
/// kept for the whole run (nginx closes them after 1,000 requests by
/// default, HTTP/2 ones included).
fn http_common(dir: &Path, name: &str) -> String {
    let d = p(dir);
    format!(
        "  access_log off;\n\
         \x20 client_body_temp_path {d}/{name}-body;\n  proxy_temp_path {d}/{name}-proxy;\n\
         \x20 fastcgi_temp_path {d}/{name}-fastcgi;\n  uwsgi_temp_path {d}/{name}-uwsgi;\n\
         \x20 scgi_temp_path {d}/{name}-scgi;\n\
         \x20 keepalive_requests 1000000;\n"
    )
}

/// An `upstream` block with a keep-alive pool.
fn pool(name: &str, server: SocketAddr) -> String {
    format!(
        "  upstream {name} {{\n    server {server};\n    keepalive 64;\n    keepalive_requests 1000000;\n  }}\n"
    )
}

/// The `listen` lines of hop 1: HTTP/1.1, and h2c where nginx can.
fn listens(http: u16, h2c: Option<u16>) -> String {
    let mut out = format!("    listen 127.0.0.1:{http};\n");
    if let Some(port) = h2c {
        out.push_str(&format!("    listen 127.0.0.1:{port} http2;\n"));
    }
    out
}

/// What keeps a proxied request on the pool's keep-alive connections.
const KEEPALIVE_PROXY: &str =
    "      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n";

const NO_HTTP2: &str = "nginx was built without the HTTP/2 module (--with-http_v2_module)";

/// One nginx: HTTP/1.1 and h2c in, keep-alive HTTP/1.1 to the upstream.
pub(crate) fn one_hop(dir: &Path, upstream: SocketAddr) -> Result<Started, Absent> {
    let (nginx, http2) = nginx()?;
    let name = "nginx-1hop-http";
    let http = free_port()?;
    let h2c = if http2 { Some(free_port()?) } else { None };
    let conf = write(
        dir.join(format!("{name}.conf")),
        &format!(
            "{main}http {{\n{common}{pool}  server {{\n{listens}    location / {{\n\
             \x20     proxy_pass http://backend;\n{KEEPALIVE_PROXY}    }}\n  }}\n}}\n",
            main = nginx_main(dir, name, ""),
            common = http_common(dir, name),
            pool = pool("backend", upstream),
            listens = listens(http, h2c),
        ),
    )?;
    let ports: Vec<u16> = std::iter::once(http).chain(h2c).collect();
    let guard = start_nginx(&nginx, dir, name, &conf, &ports)?;
    Ok(Started {
        guards: vec![guard],
        http: loopback(http),
        h2c: h2c.map(loopback).ok_or_else(|| NO_HTTP2.to_owned()),
    })
}

/// Two nginx masters, mTLS and keep-alive between them.
pub(crate) fn two_hops(dir: &Path, pki: &Pki, upstream: SocketAddr) -> Result<Started, Absent> {
    let (nginx, http2) = nginx()?;
    let (hop1, hop2) = ("nginx-2hop-http-hop1", "nginx-2hop-http-hop2");
    let http = free_port()?;
    let h2c = if http2 { Some(free_port()?) } else { None };
    let tls = free_port()?;
    let hop1_conf = write(
        dir.join(format!("{hop1}.conf")),
        &format!(
            "{main}http {{\n{common}{pool}  server {{\n{listens}    location / {{\n\
             \x20     proxy_pass https://hop2;\n{KEEPALIVE_PROXY}\
             \x20     proxy_ssl_protocols TLSv1.3;\n\
             \x20     proxy_ssl_certificate {cert};\n      proxy_ssl_certificate_key {key};\n\
             \x20     proxy_ssl_session_reuse on;\n\
             \x20     # hop 2's SVID names it by a URI SAN only, and nginx can check a\n\
             \x20     # DNS name or IP only: it does not verify the server here.\n\
             \x20     proxy_ssl_verify off;\n    }}\n  }}\n}}\n",
            main = nginx_main(dir, hop1, ""),
            common = http_common(dir, hop1),
            pool = pool("hop2", loopback(tls)),
            listens = listens(http, h2c),
            cert = p(&pki.hop1.cert),
            key = p(&pki.hop1.key),
        ),
    )?;
    let hop2_conf = write(
        dir.join(format!("{hop2}.conf")),
        &format!(
            "{main}http {{\n{common}{pool}  server {{\n    listen 127.0.0.1:{tls} ssl;\n\
             \x20   ssl_protocols TLSv1.3;\n\
             \x20   ssl_certificate {cert};\n    ssl_certificate_key {key};\n\
             \x20   ssl_client_certificate {roots};\n    ssl_verify_client on;\n    ssl_verify_depth 2;\n\
             \x20   location / {{\n      proxy_pass http://backend;\n{KEEPALIVE_PROXY}    }}\n  }}\n}}\n",
            main = nginx_main(dir, hop2, ""),
            common = http_common(dir, hop2),
            pool = pool("backend", upstream),
            cert = p(&pki.hop2.cert),
            key = p(&pki.hop2.key),
            roots = p(&pki.east_roots),
        ),
    )?;
    let ports: Vec<u16> = std::iter::once(http).chain(h2c).collect();
    let guards = vec![
        start_nginx(&nginx, dir, hop2, &hop2_conf, &[tls])?,
        start_nginx(&nginx, dir, hop1, &hop1_conf, &ports)?,
    ];
    Ok(Started {
        guards,
        http: loopback(http),
        h2c: h2c.map(loopback).ok_or_else(|| NO_HTTP2.to_owned()),
    })
}
