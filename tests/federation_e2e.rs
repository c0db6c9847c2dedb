//! Two trust domains federated end to end, every part a real process on
//! loopback: east's controller on a real etcd, west's on the embedded
//! store, and one gateway per domain that joined its controller with a
//! one-time token. The test writes no certificate: the gateways' SVIDs come
//! from the joins and the peers' bundles from `causeway bundle export`.
//!
//! West exports an HTTP service to east; a caller at east's gateway reaches
//! it by its imported name, and west's gateway maps the caller to a
//! principal its Service allows. Then, with requests flowing the whole
//! time and none allowed to fail:
//!
//! 1. steady traffic;
//! 2. each controller is killed and restarted (etcd and embedded): every
//!    peering and service is still there and the gateways reconnect;
//! 3. the gateways' SVIDs (a 16 s lifetime) have been renewed several
//!    times, and what each controller reports is what the data plane uses;
//! 4. east's controller, etcd and west's controller are all stopped:
//!    traffic keeps flowing;
//! 5. east's gateway restarts while they are down, on its cached config and
//!    SVID, and traffic flows again.
//!
//! Every process (etcd, controllers, gateways) is killed by its pid when
//! its guard drops, however the test ends; the upstream lives in the test.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use causeway_store::testing::EtcdServer;
use support::client::{request, send};
use support::load::{Figures, Load, SvidWatch};
use support::process::{Controller, Gateway};
use support::upstreams::http_upstream;
use support::{FRONTEND, causeway, s, tmp};

const EAST: &str = "east.acme.example";
const WEST: &str = "west.globex.example";
/// The gateways' SVID lifetime: they renew at about half of it (±10%), so
/// every 7 to 9 s, several times in this test. It is also long enough that
/// an SVID renewed just before the controllers stop is still valid when
/// east's gateway restarts without them (phases 4 and 5 take about 8 s).
const SVID_TTL: &str = "16s";
/// What phases 4 and 5 need of both SVIDs when the controllers stop: the
/// restarted gateway must present a valid SVID, and get a valid one from
/// west, about 5 s later, and both must still be valid when the phase
/// ends 3 s after that; the rest is margin for a slow machine.
const SVID_LEFT_FOR_OUTAGE: f64 = 11.0;
/// West's Service, the local name east imports it as, and the upstream's
/// name (`x-seen-by`).
const SERVICE: &str = "echo";
const IMPORTED: &str = "echo.west";
const UPSTREAM: &str = "west-echo";
/// The principal west's identity map gives east's frontend.
const PRINCIPAL: &str = "east-frontend";

/// The bundle endpoint and its SPIFFE ID of the controller `peer` (of
/// trust domain `td`), for the other side's peering: its public port
/// (`federation` in the ready line), where it serves the SPIFFE bundle
/// endpoint and the federation API.
fn bundle_endpoint(peer: &Controller, td: &str) -> (String, String) {
    let addr = peer.ready["federation"].as_str().unwrap();
    (
        format!("https://{addr}/"),
        format!("spiffe://{td}/causeway/controller"),
    )
}

/// One trust domain's files, in its own directory.
struct Side {
    td: &'static str,
    /// The gateway's name: its ID is spiffe://<td>/causeway/gateway/<name>.
    gateway: &'static str,
    dir: PathBuf,
    /// The controller's `store:` line.
    store: String,
}

impl Side {
    fn new(root: &Path, td: &'static str, gateway: &'static str, store: String) -> Self {
        let dir = root.join(td);
        fs::create_dir_all(&dir).unwrap();
        Self {
            td,
            gateway,
            dir,
            store,
        }
    }

    fn gateway_id(&self) -> String {
        format!("spiffe://{}/causeway/gateway/{}", self.td, self.gateway)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn write_controller_config(&self, api: &str, metrics: &str, federation: &str) {
        fs::write(
            self.path("controller.yaml"),
            format!(
                "trust_domain: {}\ndata_dir: ctl-data\n{}\napi: {{listen: \"{api}\"}}\n\
                 metrics: {{listen: \"{metrics}\"}}\nfederation: {{listen: \"{federation}\"}}\n\
                 svid_ttl: {SVID_TTL}\n",
                self.td, self.store
            ),
        )
        .unwrap();
    }

    fn start_controller(&self, log: &str) -> Controller {
        Controller::start(&self.path("controller.yaml"), self.path(log))
    }

    /// The gateway's local file; `web`: an HTTP listener for east's
    /// frontend.
    fn write_gateway_config(&self, api: &str, admin: &str, peer: &str, web: Option<&str>) {
        let mut text = format!(
            "trust_domain: {}\ncontroller:\n  address: \"{api}\"\n  token_file: {}.token\n  \
             data_dir: gw-data\n  name: {}\nadmin: {{listen: \"{admin}\"}}\n\
             peer_listener: {{listen: \"{peer}\"}}\n",
            self.td, self.gateway, self.gateway
        );
        if let Some(web) = web {
            text.push_str(&format!(
                "listeners:\n  - name: web\n    listen: \"{web}\"\n    protocol: http\n    \
                 caller: {{identity: {FRONTEND}}}\n"
            ));
        }
        fs::write(self.path("gateway.yaml"), text).unwrap();
    }

    fn start_gateway(&self, log: &str) -> Gateway {
        Gateway::start(&self.path("gateway.yaml"), self.path(log))
    }

    /// Rewrites the configs with the ports the OS gave, so that a restarted
    /// process comes back where the others (the gateway's controller
    /// address, the peer's peering, the load) look for it.
    fn pin_ports(&self, c: &Controller, gw: &Gateway) {
        let metrics = c.ready["metrics"].as_str().unwrap();
        let federation = c.ready["federation"].as_str().unwrap();
        self.write_controller_config(&c.api(), metrics, federation);
        let web = gw.ready["listeners"]["web"].as_str();
        self.write_gateway_config(
            &c.api(),
            &gw.addr("/admin").to_string(),
            &gw.addr("/peer_listener").to_string(),
            web,
        );
    }
}

/// West's Service: `echo` on port 8080 at `upstream`, for east's frontend
/// (by the principal the identity map gives it).
fn west_service(west: &Side, upstream: SocketAddr) -> PathBuf {
    let path = west.path("service-echo.yaml");
    fs::write(
        &path,
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Service\nname: {SERVICE}\nspec:\n  ports:\n    \
             - port: 8080\n      protocol: http\n  endpoints: [\"{upstream}\"]\n  authorization:\n    \
             - allow:\n        - principal: {PRINCIPAL}\n"
        ),
    )
    .unwrap();
    path
}

/// A peering of `local` with `peer`, whose first bundle `local` holds in
/// `<peer td>.bundle.json`; `rest` is the end of the spec (exports,
/// imports, identity map).
fn peering(
    local: &Side,
    name: &str,
    peer: &Side,
    peer_controller: &Controller,
    peer_gateway: SocketAddr,
    rest: &str,
) -> PathBuf {
    let (url, endpoint_id) = bundle_endpoint(peer_controller, peer.td);
    let path = local.path(&format!("peering-{name}.yaml"));
    fs::write(
        &path,
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Peering\nname: {name}\nspec:\n  \
             trustDomain: {}\n  bundleEndpoint:\n    url: {url}\n    spiffeId: {endpoint_id}\n  \
             firstBundle:\n    file: {}.bundle.json\n  gateways:\n    - address: \"{peer_gateway}\"\n      \
             id: {}\n{rest}",
            peer.td,
            peer.td,
            peer.gateway_id()
        ),
    )
    .unwrap();
    path
}

/// Polls `f` every 200 ms until it gives a value, or panics after `limit`
/// with `what` and the last thing `f` saw.
#[track_caller]
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {limit:?}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `causeway gateways --json` at the controller, parsed.
fn gateways(c: &Controller) -> serde_json::Value {
    let run = causeway(&["gateways", "--json", "--controller", &c.socket()]).success();
    serde_json::from_str(&run.stdout).unwrap()
}

/// Waits until the controller reports `name` connected and holding an
/// acked config of at least `version`.
fn wait_connected(c: &Controller, name: &str, version: u64) -> serde_json::Value {
    wait_for(
        &format!("{name} connected to its controller"),
        Duration::from_secs(30),
        || {
            let list = gateways(c);
            let g = list
                .as_array()
                .and_then(|l| l.iter().find(|g| g["name"] == name))
                .cloned()
                .unwrap_or_default();
            let acked = g["acked_version"].as_u64().unwrap_or(0);
            if g["connected"] == true && acked >= version {
                Ok(g)
            } else {
                Err(list.to_string())
            }
        },
    )
}

/// After a restart: the peering `peer` is listed and applying the same
/// files again changes nothing.
fn assert_kept(c: &Controller, peer: &str, peer_td: &str, files: &[&Path]) {
    let sock = c.socket();
    let list = causeway(&["peer", "list", "--json", "--controller", &sock]).success();
    let peers: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(peers[0]["name"], peer, "{peers}");
    assert_eq!(peers[0]["trust_domain"], peer_td, "{peers}");
    let mut args = vec!["apply", "--dry-run", "--controller", &sock];
    for f in files {
        args.extend(["-f", s(f)]);
    }
    let dry = causeway(&args).success();
    let want = format!("0 created, 0 updated, {} unchanged", files.len());
    assert!(dry.stdout.contains(&want), "{dry:?}");
}

/// Kills `old` (SIGKILL) and starts the controller again on the same
/// config and store. Returns once the peering (`peer`: name and trust
/// domain) and `files` are all still there and `gw` has opened a config
/// stream to the new process (its own count went up).
fn restart_controller(
    side: &Side,
    old: Controller,
    gw: &Gateway,
    peer: (&str, &str),
    files: &[&Path],
) -> Controller {
    const OPENED: &str = r#"causeway_gateway_controller_connects_total{result="ok"}"#;
    let before = gw.metric(OPENED);
    drop(old);
    let c = side.start_controller(&format!("controller-{}-2.log", side.gateway));
    assert_kept(&c, peer.0, peer.1, files);
    wait_for(
        &format!("{} reconnected to its controller", side.gateway),
        Duration::from_secs(30),
        || {
            let (opened, up) = (
                gw.metric(OPENED),
                gw.metric("causeway_gateway_controller_connected"),
            );
            if opened > before && up == 1.0 {
                Ok(())
            } else {
                Err(format!(
                    "streams opened {opened} (before: {before}), up {up}"
                ))
            }
        },
    );
    c
}

/// Asserts a phase lost nothing, and prints its figures.
#[track_caller]
fn assert_clean(phase: &str, f: &Figures, logs: &[&Gateway]) {
    #[allow(clippy::print_stderr, reason = "the figures of the run")]
    {
        eprintln!(
            "{phase}: {:.1?}: {} sent, {} ok, {} failed; longest gap {:.0?}, slowest {:.0?}",
            f.elapsed, f.sent, f.ok, f.failed, f.longest_gap, f.slowest
        );
    }
    let tails: String = logs.iter().map(|g| tail(&g.log_text(), 30)).collect();
    assert!(f.ok > 0, "{phase}: no request got through\n{tails}");
    assert_eq!(
        f.failed, 0,
        "{phase}: failed requests: {:#?}\n{tails}",
        f.failures
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n") + "\n"
}

/// Every certificate or key file under `dir`, relative to it.
fn pki_files(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            pki_files(&p, base, out);
        } else if ["pem", "key", "crt", "der"]
            .iter()
            .any(|x| p.extension().is_some_and(|e| e == *x))
        {
            out.push(p.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

#[test]
fn two_trust_domains_federate_renew_and_survive_their_controllers() {
    let root = tmp();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let upstream = rt.block_on(http_upstream(UPSTREAM));

    // The controllers: east on etcd, west on the embedded store.
    let etcd = EtcdServer::start(&root.path().join("etcd"));
    let east = Side::new(
        root.path(),
        EAST,
        "east-1",
        format!("store: {{etcd: {{endpoints: [\"{}\"]}}}}", etcd.endpoint),
    );
    let west = Side::new(root.path(), WEST, "west-1", "store: embedded".to_owned());
    east.write_controller_config("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0");
    west.write_controller_config("127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0");
    let east_ctl = east.start_controller("controller-east.log");
    let west_ctl = west.start_controller("controller-west.log");

    // Each gateway joins with a one-time token.
    for (side, c) in [(&east, &east_ctl), (&west, &west_ctl)] {
        let token = causeway(&[
            "token",
            "create",
            "--gateway",
            side.gateway,
            "--controller",
            &c.socket(),
        ])
        .success();
        fs::write(
            side.path(&format!("{}.token", side.gateway)),
            token.stdout.trim(),
        )
        .unwrap();
    }
    let any = "127.0.0.1:0";
    east.write_gateway_config(&east_ctl.api(), any, any, Some(any));
    west.write_gateway_config(&west_ctl.api(), any, any, None);
    let east_gw = east.start_gateway("gateway-east.log");
    let west_gw = west.start_gateway("gateway-west.log");
    east.pin_ports(&east_ctl, &east_gw);
    west.pin_ports(&west_ctl, &west_gw);
    let web = east_gw.addr("/listeners/web");

    // Each side's bundle, from its controller, is the other's first bundle.
    for (from, to) in [(&east_ctl, &west), (&west_ctl, &east)] {
        let b = causeway(&["bundle", "export", "--controller", &from.socket()]).success();
        let td = from.ready["trust_domain"].as_str().unwrap();
        fs::write(to.path(&format!("{td}.bundle.json")), b.stdout).unwrap();
    }

    // West exports echo to east's frontend and maps it to a principal;
    // east imports it as echo.west.
    let service = west_service(&west, upstream);
    let to_east = peering(
        &west,
        "east",
        &east,
        &east_ctl,
        east_gw.addr("/peer_listener"),
        &format!(
            "  exports:\n    - service: {SERVICE}\n      ports: [8080]\n      callers:\n        \
             - id: {FRONTEND}\n  identityMap:\n    - from: {FRONTEND}\n      principal: {PRINCIPAL}\n"
        ),
    );
    let to_west = peering(
        &east,
        "west",
        &west,
        &west_ctl,
        west_gw.addr("/peer_listener"),
        &format!(
            "  imports:\n    - service: {SERVICE}\n      ports: [8080]\n      localName: {IMPORTED}\n"
        ),
    );
    let west_files = [service.as_path(), to_east.as_path()];
    let east_files = [to_west.as_path()];
    for (c, files) in [(&west_ctl, &west_files[..]), (&east_ctl, &east_files[..])] {
        let mut args = vec!["apply", "--controller"];
        let sock = c.socket();
        args.push(&sock);
        for f in files {
            args.extend(["-f", s(f)]);
        }
        causeway(&args).success();
    }

    // The first cross-cluster call: through east's gateway to west's
    // upstream, as east's frontend, mapped to the principal at west.
    let first = wait_for(
        "a cross-cluster call through east's gateway",
        Duration::from_secs(30),
        || {
            let a = rt.block_on(send(web, request(IMPORTED, "/first", b""), false));
            if a.status == 200 {
                Ok(a)
            } else {
                Err(format!(
                    "{} {:?}\n--- east's gateway ---\n{}--- west's gateway ---\n{}",
                    a.status,
                    a.headers,
                    tail(&east_gw.log_text(), 30),
                    tail(&west_gw.log_text(), 30)
                ))
            }
        },
    );
    assert_eq!(first.header("x-seen-by"), UPSTREAM, "{first:?}");
    let xfcc = first.header("x-seen-xfcc");
    assert!(
        xfcc.contains(&format!("By={}", west.gateway_id())) && xfcc.contains(FRONTEND),
        "{xfcc}"
    );
    assert_eq!(first.header("x-seen-principal"), PRINCIPAL, "{first:?}");
    let mut pki = Vec::new();
    pki_files(root.path(), root.path(), &mut pki);
    pki.sort();
    assert_eq!(
        pki,
        [
            format!("{EAST}/gw-data/svid.pem"),
            format!("{WEST}/gw-data/svid.pem")
        ],
        "no certificate file but the gateways' own"
    );
    let east_version = wait_connected(&east_ctl, "east-1", 1)["acked_version"]
        .as_u64()
        .unwrap();
    let west_version = wait_connected(&west_ctl, "west-1", 1)["acked_version"]
        .as_u64()
        .unwrap();

    // Every party holds what it must, on both sides: each side's gateway,
    // the peer's controller and the peer's gateway (asked over the
    // federation API). The exit status says so.
    for c in [&east_ctl, &west_ctl] {
        let report = wait_for("bundles verify exits 0", Duration::from_secs(20), || {
            let r = causeway(&["bundles", "verify", "--json", "--controller", &c.socket()]);
            if r.status.success() {
                Ok(r.stdout)
            } else {
                Err(format!("{r:?}"))
            }
        });
        let report: serde_json::Value = serde_json::from_str(&report).unwrap();
        let mut kinds: Vec<&str> = report["parties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(
            kinds,
            ["local_gateway", "peer_controller", "peer_gateway"],
            "{report}"
        );
    }

    let watch = SvidWatch::start(vec![
        ("east-1".into(), east_gw.addr("/admin")),
        ("west-1".into(), west_gw.addr("/admin")),
    ]);
    let load = Load::start(web, IMPORTED, UPSTREAM);
    let mut totals = Figures::default();
    let mut tally = |f: &Figures| {
        totals.sent += f.sent;
        totals.failed += f.failed;
        totals.longest_gap = totals.longest_gap.max(f.longest_gap);
    };

    // 1. Steady traffic.
    std::thread::sleep(Duration::from_secs(3));
    let f = load.phase();
    assert_clean("1 steady", &f, &[&east_gw, &west_gw]);
    tally(&f);

    // 2. Each controller is killed (SIGKILL) and restarted on the same
    //    store: the peerings and services are all there, and each gateway
    //    reconnects and acks the same config.
    let west_ctl = restart_controller(&west, west_ctl, &west_gw, ("east", EAST), &west_files);
    wait_connected(&west_ctl, "west-1", west_version);
    let east_ctl = restart_controller(&east, east_ctl, &east_gw, ("west", WEST), &east_files);
    wait_connected(&east_ctl, "east-1", east_version);
    let serials_after_restarts =
        [watch.history("east-1"), watch.history("west-1")].map(|h| h.serials.len());
    let f = load.phase();
    assert_clean("2 controller restarts", &f, &[&east_gw, &west_gw]);
    tally(&f);

    // 3. Renewals: at least three per gateway, one of them or more from
    //    the restarted controller, each taken into use by the data plane
    //    (serials seen in its config dump); the SVID each controller reports
    //    is the one in use.
    wait_for(
        "three SVID renewals per gateway, one since the restarts",
        Duration::from_secs(45),
        || {
            let h = [watch.history("east-1"), watch.history("west-1")];
            let ok = (h.iter().zip(serials_after_restarts))
                .all(|(h, n)| h.renewals() >= 3 && h.serials.len() > n);
            if ok { Ok(()) } else { Err(format!("{h:?}")) }
        },
    );
    for (c, name) in [(&east_ctl, "east-1"), (&west_ctl, "west-1")] {
        wait_for(
            &format!("{name}'s controller reports the SVID in use"),
            Duration::from_secs(10),
            || {
                let g = wait_connected(c, name, 1);
                let now = watch.history(name);
                let in_use = now.serials.last().cloned().unwrap_or_default();
                if g["svid_serial"] == in_use.as_str() {
                    Ok(())
                } else {
                    Err(format!("controller: {g}, in use: {now:?}"))
                }
            },
        );
    }
    let f = load.phase();
    assert_clean("3 renewals", &f, &[&east_gw, &west_gw]);
    tally(&f);

    // Both SVIDs must outlive phases 4 and 5: wait for a moment when both
    // were renewed recently enough (within one renewal period, as both
    // renew every 7 to 9 s and each stays fresh for about 5 s of it).
    let left = wait_for(
        "both SVIDs fresh enough for the outage",
        Duration::from_secs(20),
        || {
            let left = ["east-1", "west-1"].map(|n| watch.history(n).left_now().unwrap_or(0.0));
            if left.iter().all(|l| *l >= SVID_LEFT_FOR_OUTAGE) {
                Ok(left)
            } else {
                Err(format!("seconds left: {left:?}"))
            }
        },
    );

    // 4. East's controller and etcd, and west's controller, all stop:
    //    traffic keeps flowing on what the gateways have.
    drop(east_ctl);
    etcd.kill();
    drop(west_ctl);
    std::thread::sleep(Duration::from_secs(5));
    let f = load.phase();
    assert_clean("4 controllers and etcd down", &f, &[&east_gw, &west_gw]);
    tally(&f);

    // 5. East's gateway restarts while they are down, without its token:
    //    it serves its cached config with its cached SVID. The load pauses
    //    while the process is away (a request sent to a gateway that is
    //    not running fails at connect, which says nothing about the
    //    gateway), and every request after it counts.
    fs::remove_file(east.path("east-1.token")).unwrap();
    let serial = watch.history("east-1").serials.last().cloned();
    load.pause();
    let restart = Instant::now();
    drop(east_gw);
    let east_gw = east.start_gateway("gateway-east-2.log");
    let restart = restart.elapsed();
    load.resume();
    std::thread::sleep(Duration::from_secs(3));
    let f = load.phase();
    assert_clean(
        "5 east's gateway restarted, controllers down",
        &f,
        &[&east_gw, &west_gw],
    );
    tally(&f);
    let cached = r#"causeway_gateway_config_snapshots_total{result="cached"}"#;
    assert_eq!(east_gw.metric(cached), 1.0, "{}", east_gw.log_text());
    assert_eq!(
        east_gw.metric("causeway_gateway_controller_connected"),
        0.0,
        "no controller to talk to"
    );
    let (_, dump) = east_gw.admin_get("/config_dump");
    let dump: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(
        dump["credentials"]["svid"]["serial"].as_str(),
        serial.as_deref(),
        "the SVID it had"
    );
    drop(load);
    // The new connection between the gateways (renewed SVIDs on both
    // sides) and every one before it: no handshake refused.
    for gw in [&east_gw, &west_gw] {
        let (_, metrics) = gw.admin_get("/metrics");
        // Every reason is exported from the start: each must be at zero.
        let series: Vec<&str> = (metrics.lines())
            .filter(|l| l.starts_with("causeway_gateway_handshake_failures_total"))
            .collect();
        assert!(!series.is_empty(), "the counter is exported");
        let refused: Vec<&&str> = series.iter().filter(|l| !l.ends_with(" 0")).collect();
        assert!(refused.is_empty(), "{refused:?}");
    }

    let [e, w] = [watch.history("east-1"), watch.history("west-1")];
    #[allow(clippy::print_stderr, reason = "the figures of the run")]
    {
        eprintln!(
            "total: {} sent, {} failed, longest gap {:.0?}; east's gateway restarted in {restart:.1?}\n\
             SVID serials in use: east-1 {} ({} renewals), west-1 {} ({} renewals); \
             left when the controllers stopped: {:.1} s, {:.1} s",
            totals.sent,
            totals.failed,
            totals.longest_gap,
            e.serials.len(),
            e.renewals(),
            w.serials.len(),
            w.renewals(),
            left[0],
            left[1]
        );
    }
    assert_eq!(totals.failed, 0);
    drop(rt);
}
