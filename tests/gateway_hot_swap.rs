//! SVID rotation under load, with real processes: an east and a west
//! `causeway gateway`, certificates from `causeway ca issue`, a TCP echo
//! upstream behind west. While clients call through east without pause
//! (a new TCP connection per call, and long-lived connections playing
//! ping-pong), the test writes a new SVID over each gateway's files: east's
//! by temp file and rename, as a rotation tool does; west's in place, in
//! pieces, to prove that a half-written file or a certificate without its
//! key is never taken. No call may fail, the long-lived connections must
//! survive, /config_dump must show the new serials, and new QUIC
//! connections (a probe here, and a third gateway process) must see and be
//! accepted with the new certificates. Every process is killed by its pid.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use causeway_gateway::config::Limits;
use causeway_gateway::service::ServiceName;
use causeway_gateway::transport::header::{Protocol, StreamHeader};
use causeway_gateway::transport::quic::quic_client_config;
use causeway_trust::tls::SvidSource;
use causeway_trust::{BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Svid};
use causeway_trust::{TrustBundle, TrustDomain};
use rustls_pki_types::CertificateDer;
use support::process::Gateway;
use support::{FRONTEND, ca_init, ca_issue, export, field, with_ext};

const EAST_GW: &str = "spiffe://east.acme.example/gateway/east-1";
const WEST_GW: &str = "spiffe://west.globex.example/gateway/west-1";
const RELOAD: &str = "100ms";

/// GET /config_dump on the admin listener.
fn dump(gw: &Gateway) -> serde_json::Value {
    let mut c = TcpStream::connect(gw.addr("/admin")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /config_dump HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap()
}

fn serial(gw: &Gateway) -> String {
    dump(gw)["credentials"]["svid"]["serial"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Polls /config_dump until `ok` holds; at most 10 s.
fn wait_for(
    gw: &Gateway,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = dump(gw);
        if ok(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "never saw {what}:\n{d:#}\nlog:\n{}",
            gw.log_text()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn write_config(path: &Path, text: &str) -> PathBuf {
    fs::write(path, text).unwrap();
    path.to_owned()
}

fn west_config(dir: &Path, upstream: SocketAddr) -> PathBuf {
    write_config(
        &dir.join("west.yaml"),
        &format!(
            r#"
trust_domain: west.globex.example
id: {WEST_GW}
svid: {{cert: west-gw.pem, key: west-gw.key}}
bundles:
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
admin: {{listen: "127.0.0.1:0"}}
peer_listener: {{listen: "127.0.0.1:0"}}
services:
  - {{name: payments, port: 8080, endpoints: ["{upstream}"]}}
peers:
  - name: east
    trust_domain: east.acme.example
    gateways:
      - {{address: "127.0.0.1:9", id: {EAST_GW}}}
authorization:
  - service: payments
    allow:
      - id: {FRONTEND}
"#
        ),
    )
}

fn east_config(dir: &Path, name: &str, west: SocketAddr) -> PathBuf {
    write_config(
        &dir.join(format!("{name}.yaml")),
        &format!(
            r#"
trust_domain: east.acme.example
id: {EAST_GW}
svid: {{cert: east-gw.pem, key: east-gw.key}}
bundles:
  - {{trust_domain: east.acme.example, file: east.bundle.json}}
  - {{trust_domain: west.globex.example, file: west.bundle.json}}
admin: {{listen: "127.0.0.1:0"}}
peer_listener: {{listen: "127.0.0.1:0"}}
listeners:
  - {{name: frontend, listen: "127.0.0.1:0", protocol: tcp, service: payments.west, port: 80, caller: {{identity: "{FRONTEND}"}}}}
imports:
  - {{name: payments.west, port: 80, peer: west, remote_service: payments, remote_port: 8080}}
peers:
  - name: west
    trust_domain: west.globex.example
    gateways:
      - {{address: "{west}", id: {WEST_GW}}}
limits: {{handshake_timeout: 2s}}
"#
        ),
    )
}

/// One call on a new connection; the reply must be the echo.
fn call(addr: SocketAddr, msg: &[u8]) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(msg).map_err(|e| format!("write: {e}"))?;
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| format!("read: {e}"))?;
    let mut want = b"payments|".to_vec();
    want.extend_from_slice(msg);
    if out == want {
        Ok(())
    } else {
        Err(format!("reply {:?}", String::from_utf8_lossy(&out)))
    }
}

/// Load on east's frontend listener until `stop`: `short` threads making a
/// new connection per call, `long` threads each keeping one connection and
/// playing ping-pong on it.
struct Load {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    pings: Vec<Arc<AtomicU64>>,
    failures: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, short: usize, long: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for t in 0..short {
            let (stop, calls, failures) = (stop.clone(), calls.clone(), failures.clone());
            threads.push(std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let msg = format!("short {t} call {i}");
                    match call(addr, msg.as_bytes()) {
                        Ok(()) => calls.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.lock().unwrap().push(format!("{msg}: {e}"));
                            0
                        }
                    };
                    i += 1;
                }
            }));
        }
        let mut pings = Vec::new();
        for t in 0..long {
            let count = Arc::new(AtomicU64::new(0));
            pings.push(count.clone());
            let (stop, failures) = (stop.clone(), failures.clone());
            threads.push(std::thread::spawn(move || {
                let fail = |e: String| failures.lock().unwrap().push(format!("long {t}: {e}"));
                let mut conn = match TcpStream::connect(addr) {
                    Ok(c) => c,
                    Err(e) => return fail(format!("connect: {e}")),
                };
                conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut prefix = [0u8; 9];
                if let Err(e) = conn.read_exact(&mut prefix) {
                    return fail(format!("greeting: {e}"));
                }
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ping = format!("ping {t} {i:08}|");
                    let mut pong = vec![0u8; ping.len()];
                    if let Err(e) = conn
                        .write_all(ping.as_bytes())
                        .and_then(|()| conn.read_exact(&mut pong))
                    {
                        return fail(format!("ping {i}: {e}"));
                    }
                    if pong != ping.as_bytes() {
                        return fail(format!(
                            "ping {i}: got {:?}",
                            String::from_utf8_lossy(&pong)
                        ));
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }));
        }
        Self {
            stop,
            calls,
            pings,
            failures,
            threads,
        }
    }

    fn pings(&self) -> Vec<u64> {
        self.pings
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .collect()
    }

    fn stop(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (self.calls.load(Ordering::Relaxed), failures)
    }
}

/// `ca issue` into `DIR/NAME.{pem,key}`; returns the serial.
fn issue(ca: &Path, id: &str, out: &Path) -> String {
    let run = ca_issue(ca, id, out, &[]);
    field(&run.stdout, "serial:").to_owned()
}

/// Where `needle` starts in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

/// Replaces `to` by `from`'s contents through a temp file and a rename.
fn rename_over(from: &Path, to: &Path) {
    let tmp = to.with_extension("rotating");
    fs::copy(from, &tmp).unwrap();
    fs::rename(&tmp, to).unwrap();
}

/// A new QUIC connection to a gateway's peer listener, presenting the SVID
/// in `cert`/`key` and trusting the bundle files, expecting `server_id`.
/// When `call_payments`, a stream asks for payments:8080 as the frontend
/// and must get the echo (proving the server accepted this client).
/// Returns the serial of the certificate the server presented.
fn probe(
    addr: SocketAddr,
    dir: &Path,
    client: &str,
    server_id: &str,
    call_payments: bool,
) -> Result<String, String> {
    let svid = Svid::from_pem(
        &fs::read(dir.join(format!("{client}.pem"))).unwrap(),
        &fs::read(dir.join(format!("{client}.key"))).unwrap(),
    )
    .unwrap();
    let bundle = |td: &str, file: &str| {
        TrustBundle::parse(
            TrustDomain::new(td).unwrap(),
            &fs::read(dir.join(file)).unwrap(),
        )
        .unwrap()
    };
    let bundles = BundleSet::from_bundles([
        bundle("east.acme.example", "east.bundle.json"),
        bundle("west.globex.example", "west.bundle.json"),
    ])
    .unwrap();
    let verifier = SpiffeVerifier::new(
        SharedBundles::new(bundles),
        Expected::ids([SpiffeId::new(server_id).unwrap()]),
    );
    let config = quic_client_config(
        &SvidSource::new(svid).unwrap(),
        Arc::new(verifier),
        &Limits::default(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(config);
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ep.connect(addr, "gateway").map_err(|e| e.to_string())?,
        )
        .await
        .map_err(|_| "no handshake within 5s".to_owned())?
        .map_err(|e| e.to_string())?;
        let certs = conn
            .peer_identity()
            .and_then(|i| i.downcast::<Vec<CertificateDer<'static>>>().ok())
            .ok_or("no peer certificate")?;
        let serial = causeway_trust::svid::summarize(&certs[0])
            .map_err(|e| e.to_string())?
            .serial;
        if call_payments {
            let header = StreamHeader {
                service: ServiceName::new("payments").unwrap(),
                port: 8080,
                caller: SpiffeId::new(FRONTEND).unwrap(),
                traceparent: None,
                tracestate: None,
                deadline: None,
                request_id: "probe".into(),
                protocol: Protocol::Tcp,
                request: None,
            };
            let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
            let mut bytes = header.encode();
            bytes.extend_from_slice(b"probe");
            send.write_all(&bytes).await.map_err(|e| e.to_string())?;
            let _ = send.finish();
            let back = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1 << 16))
                .await
                .map_err(|_| "no reply within 5s".to_owned())?
                .map_err(|e| e.to_string())?;
            if back != b"payments|probe" {
                return Err(format!("reply {:?}", String::from_utf8_lossy(&back)));
            }
        }
        conn.close(0u32.into(), b"done");
        Ok(serial)
    })
}

#[test]
fn svids_rotate_under_load_without_a_failed_call() {
    let started = Instant::now();
    let t = support::tmp();
    let d = t.path();
    causeway_trust::tls::install_default_provider();
    ca_init(&d.join("east-ca"), "east.acme.example", &[]);
    ca_init(
        &d.join("west-ca"),
        "west.globex.example",
        &["--intermediate"],
    );
    fs::create_dir(d.join("new")).unwrap();
    let east_old = issue(&d.join("east-ca"), EAST_GW, &d.join("east-gw"));
    let west_old = issue(&d.join("west-ca"), WEST_GW, &d.join("west-gw"));
    export(&d.join("east-ca"), "json", &d.join("east.bundle.json"));
    export(&d.join("west-ca"), "json", &d.join("west.bundle.json"));

    let west = Gateway::start_args(
        &west_config(d, support::upstreams::payments_blocking()),
        d.join("west.log"),
        &["--reload-interval", RELOAD],
    );
    let west_peer = west.addr("/peer_listener");
    let east = Gateway::start_args(
        &east_config(d, "east", west_peer),
        d.join("east.log"),
        &["--reload-interval", RELOAD],
    );
    assert_eq!(serial(&west), west_old);
    assert_eq!(serial(&east), east_old);
    let frontend = east.addr("/listeners/frontend");
    call(frontend, b"warm up").unwrap();

    let load = Load::start(frontend, 3, 2);
    std::thread::sleep(Duration::from_millis(300));

    // East: a new SVID from the same CA, moved in by rename (certificate,
    // then key).
    let east_new = issue(&d.join("east-ca"), EAST_GW, &d.join("new/east-gw"));
    rename_over(
        &with_ext(&d.join("new/east-gw"), "pem"),
        &d.join("east-gw.pem"),
    );
    rename_over(
        &with_ext(&d.join("new/east-gw"), "key"),
        &d.join("east-gw.key"),
    );
    wait_for(&east, "east's new serial", |v| {
        v["credentials"]["svid"]["serial"] == east_new.as_str()
    });

    // West: rewritten in place, in pieces, key first: the most dangerous
    // order, since a certificate cut short after its leaf block reads as a
    // valid leaf-only chain that matches the new key.
    let west_new = issue(&d.join("west-ca"), WEST_GW, &d.join("new/west-gw"));
    let cert = fs::read(with_ext(&d.join("new/west-gw"), "pem")).unwrap();
    let key = fs::read(with_ext(&d.join("new/west-gw"), "key")).unwrap();
    let refused = |what: &str, reason: &str| {
        let v = wait_for(&west, what, |v| {
            v["credentials"]["svid"]["reload"]["last_result"] == reason
        });
        assert_eq!(v["credentials"]["svid"]["serial"], west_old.as_str());
        // It stays refused over several reload intervals.
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(serial(&west), west_old, "{what}: taken");
    };
    fs::write(d.join("west-gw.key"), &key).unwrap();
    refused("the new key with the old certificate", "key_mismatch");
    let leaf_end = find(&cert, b"-----END CERTIFICATE-----\n") + 26;
    let mut f = File::create(d.join("west-gw.pem")).unwrap();
    f.write_all(&cert[..leaf_end / 2]).unwrap();
    refused("a certificate cut inside a block", "invalid");
    f.write_all(&cert[leaf_end / 2..leaf_end]).unwrap();
    refused("a certificate cut after the leaf", "untrusted_chain");
    f.write_all(&cert[leaf_end..]).unwrap();
    drop(f);
    wait_for(&west, "west's new serial", |v| {
        v["credentials"]["svid"]["serial"] == west_new.as_str()
    });

    // Keep the load on a little after both rotations.
    let pings_after_rotation = load.pings();
    std::thread::sleep(Duration::from_millis(500));
    let pings_at_end = load.pings();
    let (calls, failures) = load.stop();
    assert!(
        failures.is_empty(),
        "{} failed calls: {failures:#?}\neast log:\n{}",
        failures.len(),
        east.log_text()
    );
    assert!(calls > 20, "only {calls} calls went through");
    for (i, (before, after)) in pings_after_rotation.iter().zip(&pings_at_end).enumerate() {
        assert!(
            after > before,
            "long-lived connection {i} stopped: {before} then {after} pings"
        );
    }

    // Both dumps show the new serials; west's log names the refused file.
    assert_eq!(serial(&east), east_new);
    assert_eq!(serial(&west), west_new);
    let west_log = west.log_text();
    assert!(
        west_log.contains("credential reload refused") && west_log.contains("west-gw.pem"),
        "west log should name the refused file:\n{west_log}"
    );

    // New connections see the new certificates and are accepted with them:
    // east's new SVID calls west's payments; west's new SVID reaches east.
    assert_eq!(
        probe(west_peer, d, "east-gw", WEST_GW, true).unwrap(),
        west_new
    );
    assert_eq!(
        probe(east.addr("/peer_listener"), d, "west-gw", EAST_GW, false).unwrap(),
        east_new
    );
    // A third gateway process, reading east's rotated files, dials west.
    let east2 = Gateway::start_args(
        &east_config(d, "east-2", west_peer),
        d.join("east-2.log"),
        &["--reload-interval", RELOAD],
    );
    assert_eq!(serial(&east2), east_new);
    call(east2.addr("/listeners/frontend"), b"from a new process").unwrap();

    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
}
