//! SIGHUP re-reads the config file of a running `causeway gateway` process
//! and applies it live: a moved endpoint and a new service are served by
//! new calls without a restart; a file that changes a field which cannot
//! change live is refused, logged with the field, and the config in effect
//! keeps serving. The process is killed by its pid.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::process::Gateway;
use support::upstreams::http_upstream;
use support::{FRONTEND, ca_init, ca_issue, export};

fn config(payments: SocketAddr, billing: Option<SocketAddr>, admin: &str) -> String {
    let billing = billing
        .map(|b| format!("  - {{name: billing, port: 8080, endpoints: [\"{b}\"]}}\n"))
        .unwrap_or_default();
    format!(
        r#"
trust_domain: east.acme.example
id: spiffe://east.acme.example/gateway/east-1
svid: {{cert: east-gw.pem, key: east-gw.key}}
bundles:
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
admin: {{listen: "{admin}"}}
listeners:
  - {{name: front, listen: "127.0.0.1:0", protocol: http, caller: {{identity: "{FRONTEND}"}}}}
services:
  - {{name: payments, port: 8080, endpoints: ["{payments}"]}}
{billing}authorization:
  - service: "*"
    allow: [{{trust_domain: east.acme.example}}]
"#
    )
}

/// GET / with `Host: host`: the status and who answered (`x-seen-by`).
fn call(addr: SocketAddr, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let by = out
        .lines()
        .find_map(|l| l.strip_prefix("x-seen-by: "))
        .unwrap_or("")
        .to_owned();
    (status, by)
}

fn sighup(gw: &Gateway) {
    let pid = gw.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
}

fn wait_until(what: &str, gw: &Gateway, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "never {what}; log:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn generation(gw: &Gateway) -> u64 {
    let (_, body) = gw.admin_get("/config_dump");
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    d["config"]["generation"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_the_config_file_live_and_refuses_fixed_fields() {
    let (a, b) = (http_upstream("A").await, http_upstream("B").await);
    let dir = support::tmp();
    let d = dir.path();
    ca_init(&d.join("ca"), "east.acme.example", &[]);
    let gw_id = "spiffe://east.acme.example/gateway/east-1";
    ca_issue(&d.join("ca"), gw_id, &d.join("east-gw"), &[]);
    export(&d.join("ca"), "json", &d.join("east.bundle.json"));
    let path = d.join("east.yaml");
    fs::write(&path, config(a, None, "127.0.0.1:0")).unwrap();
    let gw = Gateway::start(&path, d.join("east.log"));
    let front = gw.addr("/listeners/front");
    assert_eq!(call(front, "payments"), (200, "A".into()));
    assert_eq!(call(front, "billing").0, 404);

    write_and_hup(&gw, &path, &config(b, Some(a), "127.0.0.1:0"));
    wait_until("served payments from B", &gw, || {
        call(front, "payments") == (200, "B".into())
    });
    assert_eq!(call(front, "billing"), (200, "A".into()));
    assert_eq!(generation(&gw), 2);
    let (_, dump) = gw.admin_get("/config_dump");
    assert!(dump.contains(&path.display().to_string()), "{dump}");

    // The admin address cannot move in a running gateway.
    write_and_hup(&gw, &path, &config(a, None, "127.0.0.1:1"));
    wait_until("logged the refusal", &gw, || {
        gw.log_text().contains("config not applied")
    });
    let log = gw.log_text();
    assert!(log.contains("admin.listen"), "{log}");
    assert_eq!(call(front, "payments"), (200, "B".into()));
    assert_eq!(generation(&gw), 2);
}

fn write_and_hup(gw: &Gateway, path: &Path, text: &str) {
    fs::write(path, text).unwrap();
    sighup(gw);
}
