//! End to end with real processes: two `causeway gateway` processes, one per
//! trust domain, every certificate and bundle made by `causeway ca` and
//! `causeway bundle export`, a real TCP upstream, all on loopback. Every
//! process is killed by this test, by its pid, even when an assertion fails.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::process::Gateway;
use support::{FRONTEND, ca_init, ca_issue, export, s};

const BATCH: &str = "spiffe://east.acme.example/ns/batch/sa/job";

fn round_trip(addr: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(payload).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn west_config(dir: &Path, upstream: SocketAddr) -> PathBuf {
    let path = dir.join("west.yaml");
    fs::write(
        &path,
        format!(
            r#"
trust_domain: west.globex.example
id: spiffe://west.globex.example/gateway/west-1
svid: {{cert: west-gw.pem, key: west-gw.key}}
bundles:
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
peer_listener: {{listen: "127.0.0.1:0"}}
services:
  - {{name: payments, port: 8080, endpoints: ["{upstream}"]}}
peers:
  - name: east
    trust_domain: east.acme.example
    gateways:
      - {{address: "127.0.0.1:9", id: spiffe://east.acme.example/gateway/east-1}}
authorization:
  - service: payments
    allow:
      - id: {FRONTEND}
"#
        ),
    )
    .unwrap();
    path
}

fn east_config(dir: &Path, name: &str, svid: &str, west: SocketAddr) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    fs::write(
        &path,
        format!(
            r#"
trust_domain: east.acme.example
id: spiffe://east.acme.example/gateway/east-1
svid: {{cert: {svid}.pem, key: {svid}.key}}
bundles:
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
listeners:
  - {{name: frontend, listen: "127.0.0.1:0", protocol: tcp, service: payments.west, port: 80, caller: {{identity: "{FRONTEND}"}}}}
  - {{name: batch, listen: "127.0.0.1:0", protocol: tcp, service: payments.west, port: 80, caller: {{identity: "{BATCH}"}}}}
imports:
  - {{name: payments.west, port: 80, peer: west, remote_service: payments, remote_port: 8080}}
peers:
  - name: west
    trust_domain: west.globex.example
    gateways:
      - {{address: "{west}", id: spiffe://west.globex.example/gateway/west-1}}
limits: {{handshake_timeout: 2s}}
"#
        ),
    )
    .unwrap();
    path
}

#[test]
fn two_gateway_processes_carry_a_tcp_call_across_trust_domains() {
    let t = support::tmp();
    let d = t.path();
    ca_init(&d.join("east-ca"), "east.acme.example", &[]);
    ca_init(
        &d.join("west-ca"),
        "west.globex.example",
        &["--intermediate"],
    );
    let east_gw = "spiffe://east.acme.example/gateway/east-1";
    ca_issue(&d.join("east-ca"), east_gw, &d.join("east-gw"), &[]);
    ca_issue(
        &d.join("west-ca"),
        "spiffe://west.globex.example/gateway/west-1",
        &d.join("west-gw"),
        &[],
    );
    // An east gateway SVID that expired an hour ago.
    let expired = ca_issue(
        &d.join("east-ca"),
        east_gw,
        &d.join("east-gw-expired"),
        &["--ttl", "1h", "--backdate", "2h"],
    );
    let expired_serial = support::field(&expired.stdout, "serial:").to_owned();
    export(&d.join("east-ca"), "json", &d.join("east.bundle.json"));
    export(&d.join("west-ca"), "json", &d.join("west.bundle.json"));

    let west = Gateway::start(
        &west_config(d, support::upstreams::payments_blocking()),
        d.join("west.log"),
    );
    let west_addr = west.addr("/peer_listener");
    let east = Gateway::start(
        &east_config(d, "east", "east-gw", west_addr),
        d.join("east.log"),
    );

    // The frontend reaches west's payments service through both gateways.
    let frontend = east.addr("/listeners/frontend");
    assert_eq!(
        round_trip(frontend, b"hello"),
        b"payments|hello",
        "east log:\n{}",
        east.log_text()
    );
    for i in 0..10 {
        let msg = format!("call {i}");
        assert_eq!(
            round_trip(frontend, msg.as_bytes()),
            format!("payments|{msg}").as_bytes()
        );
    }

    // West's rules do not allow the batch job: nothing comes back.
    assert_eq!(round_trip(east.addr("/listeners/batch"), b"hello"), b"");

    // A gateway with an expired SVID is refused, and west's log names the
    // certificate's serial.
    let stale = Gateway::start(
        &east_config(d, "east-stale", "east-gw-expired", west_addr),
        d.join("stale.log"),
    );
    assert_eq!(round_trip(stale.addr("/listeners/frontend"), b"hello"), b"");
    let log = west.log_text();
    assert!(
        log.contains("reason=\"expired\"") && log.contains(&expired_serial),
        "west log should name the expired serial {expired_serial}:\n{log}"
    );
}

#[test]
fn a_wrong_config_is_refused_with_every_problem_and_the_process_exits() {
    let t = support::tmp();
    let path = t.path().join("bad.yaml");
    fs::write(
        &path,
        "trust_domain: East\nid: spiffe://west.example/gw\nsvid: {cert: a, key: b}\nlisteners:\n  - {name: x, listen: nowhere, protocol: udp, caller: {mtls: true}}\n",
    )
    .unwrap();
    let run = support::causeway(&["gateway", "--config", s(&path)]).failure();
    for want in [
        "trust_domain",
        "listeners[0].listen",
        "listeners[0].protocol",
        "bad.yaml",
    ] {
        assert!(
            run.stderr.contains(want),
            "stderr should mention {want}: {run:?}"
        );
    }
}
