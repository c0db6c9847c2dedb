//! A gateway run by its controller, end to end with the real binary: it
//! joins with a one-time token (no certificate file written by hand), serves
//! the services the controller sends, applies a new version live, and
//! restarts on its cached config while the controller is down. Every
//! process is killed by its pid when the test ends, however it ends.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::client::{request, send};
use support::process::{Controller, Gateway};
use support::upstreams::http_upstream;
use support::{causeway, s, tmp};

const FRONTEND: &str = "spiffe://east.acme.example/ns/shop/sa/frontend";

/// A controller of east on the embedded store, in `dir`.
fn start_controller(dir: &Path) -> Controller {
    let config = dir.join("controller.yaml");
    fs::write(
        &config,
        "trust_domain: east.acme.example\ndata_dir: ctl-data\napi: {listen: 127.0.0.1:0}\n\
         metrics: {listen: 127.0.0.1:0}\nsvid_ttl: 10m\n",
    )
    .unwrap();
    Controller::start(&config, dir.join("controller.log"))
}

/// A Service `echo` on port 8080 at `upstream`, callable by the frontend.
fn service_file(dir: &Path, upstream: SocketAddr) -> PathBuf {
    let path = dir.join("service-echo.yaml");
    fs::write(
        &path,
        format!(
            "apiVersion: causeway.dev/v1alpha1\nkind: Service\nname: echo\nspec:\n  ports:\n    \
             - port: 8080\n      protocol: http\n  endpoints: [\"{upstream}\"]\n  authorization:\n    \
             - allow:\n        - id: {FRONTEND}\n"
        ),
    )
    .unwrap();
    path
}

fn gateway_file(dir: &Path, api: &str) -> PathBuf {
    let path = dir.join("gateway.yaml");
    fs::write(
        &path,
        format!(
            "trust_domain: east.acme.example\ncontroller:\n  address: {api}\n  \
             token_file: east-1.token\n  data_dir: gw-data\n  name: east-1\n\
             admin: {{listen: 127.0.0.1:0}}\nlisteners:\n  - name: web\n    \
             listen: 127.0.0.1:0\n    protocol: http\n    caller: {{identity: {FRONTEND}}}\n"
        ),
    )
    .unwrap();
    path
}

/// Which upstream answers a call to `echo` through the gateway, once the
/// answer is `want` or 15 s have passed.
async fn seen_by(gw: &Gateway, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = send(gw.addr("/listeners/web"), request("echo", "/", b""), false).await;
        let by = a.header("x-seen-by").to_owned();
        if by == want || Instant::now() > deadline {
            if by == want {
                assert!(a.header("x-seen-xfcc").contains(FRONTEND), "xfcc: {a:?}");
            }
            return format!("{} {by}", a.status.as_u16());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_joins_with_a_token_serves_the_controllers_config_and_restarts_on_its_cache() {
    let dir = tmp();
    let first = http_upstream("echo-1").await;
    let second = http_upstream("echo-2").await;
    let c = start_controller(dir.path());
    let sock = c.socket();
    causeway(&[
        "apply",
        "-f",
        s(&service_file(dir.path(), first)),
        "--controller",
        &sock,
    ])
    .success();
    let token = causeway(&[
        "token",
        "create",
        "--gateway",
        "east-1",
        "--controller",
        &sock,
    ])
    .success();
    fs::write(dir.path().join("east-1.token"), token.stdout.trim()).unwrap();

    // Joined with the token: the SVID and bundle are the gateway's own files.
    let config = gateway_file(dir.path(), &c.api());
    let gw = Gateway::start(&config, dir.path().join("gateway.log"));
    assert_eq!(
        seen_by(&gw, "echo-1").await,
        "200 echo-1",
        "{}",
        gw.log_text()
    );
    assert!(dir.path().join("gw-data/svid.pem").exists());

    // A new version from the controller applies live.
    causeway(&[
        "apply",
        "-f",
        s(&service_file(dir.path(), second)),
        "--controller",
        &sock,
    ])
    .success();
    assert_eq!(
        seen_by(&gw, "echo-2").await,
        "200 echo-2",
        "{}",
        gw.log_text()
    );
    let gws = causeway(&["gateways", "--json", "--controller", &sock]).success();
    let list: serde_json::Value = serde_json::from_str(&gws.stdout).unwrap();
    assert_eq!(list[0]["name"], "east-1", "{list}");
    assert!(list[0]["acked_version"].as_u64().unwrap() >= 2, "{list}");

    // The controller goes away; the gateway restarts on its cached config
    // (the token was used up and is not needed any more).
    drop(c);
    drop(gw);
    fs::remove_file(dir.path().join("east-1.token")).unwrap();
    let gw = Gateway::start(&config, dir.path().join("gateway2.log"));
    assert_eq!(
        seen_by(&gw, "echo-2").await,
        "200 echo-2",
        "{}",
        gw.log_text()
    );
}
