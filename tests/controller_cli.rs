//! End-to-end tests of `causeway controller` and the commands that talk to
//! it (`apply`, `peer`, `token`, `bundle export --controller`, `gateways`,
//! `gateways forget`):
//! the real binary, a controller process on loopback with ports from the
//! OS, killed by its pid when the test ends however it ends.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::process::{Controller, Gateway};
use support::{causeway, s, tmp};

fn repo_config(name: &str) -> String {
    format!("{}/config/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("controller.yaml");
    fs::write(
        &path,
        "trust_domain: east.acme.example\ndata_dir: data\napi: {listen: 127.0.0.1:0}\n\
         metrics: {listen: 127.0.0.1:0}\nsvid_ttl: 10m\n",
    )
    .unwrap();
    path
}

#[test]
fn a_bad_config_names_file_and_field() {
    let dir = tmp();
    let path = dir.path().join("controller.yaml");
    fs::write(
        &path,
        "trust_domain: east.acme.example\ndata_dir: d\napi: {listen: 127.0.0.1:0}\njoin_token_ttl: later\n",
    )
    .unwrap();
    causeway(&["controller", "--config", s(&path)])
        .failure()
        .stderr_has(&["controller.yaml: join_token_ttl: \"later\""]);
}

#[test]
fn apply_peers_tokens_bundle_and_restart() {
    let dir = tmp();
    let config = write_config(dir.path());
    let c = Controller::start(&config, dir.path().join("controller.log"));
    let sock = c.socket();
    assert_eq!(
        support::mode(Path::new(&sock)) & 0o777,
        0o600,
        "admin socket is private"
    );

    // Refused: the peering exports a service that is not there yet; the
    // error names the file and the field, and nothing is stored.
    let west = repo_config("peering-west.yaml");
    causeway(&["apply", "-f", &west, "--controller", &sock])
        .failure()
        .stderr_has(&[
            "refused: 1 problem",
            "peering-west.yaml",
            "spec.exports[0].service",
        ]);

    // A local refusal (bad file) never reaches the controller.
    let bad = dir.path().join("bad.yaml");
    fs::write(
        &bad,
        "apiVersion: causeway.dev/v1alpha1\nkind: Service\nname: x\nspec: {ports: []}\n",
    )
    .unwrap();
    causeway(&["apply", "-f", s(&bad), "--controller", &sock])
        .failure()
        .stderr_has(&["bad.yaml", "spec.ports"]);

    let inventory = repo_config("service-inventory.yaml");
    let dry = causeway(&[
        "apply",
        "-f",
        &inventory,
        "-f",
        &west,
        "--dry-run",
        "--config",
        s(&config),
    ])
    .success();
    assert!(dry.stdout.contains("+ Peering/west  created"), "{dry:?}");
    assert!(dry.stdout.contains("nothing stored"), "{dry:?}");
    let list = causeway(&["peer", "list", "--json", "--controller", &sock]).success();
    assert_eq!(list.stdout.trim(), "[]");

    let applied = causeway(&[
        "apply",
        "-f",
        &inventory,
        "-f",
        &west,
        "--controller",
        &sock,
    ])
    .success();
    assert!(applied.stdout.contains("2 created"), "{applied:?}");
    let list = causeway(&["peer", "list", "--json", "--controller", &sock]).success();
    let peers: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(peers[0]["name"], "west");
    assert_eq!(peers[0]["trust_domain"], "west.globex.example");
    let show = causeway(&["peer", "show", "west", "--controller", &sock]).success();
    assert!(
        show.stdout.contains("trust domain:  west.globex.example"),
        "{show:?}"
    );
    causeway(&["peer", "show", "north", "--controller", &sock])
        .failure()
        .stderr_has(&["no peering named \"north\""]);

    let token = causeway(&[
        "token",
        "create",
        "--gateway",
        "east-1",
        "--ttl",
        "5m",
        "--controller",
        &sock,
    ])
    .success();
    let pin = c.ready["root_pin"].as_str().unwrap().to_owned();
    assert!(token.stdout.trim().starts_with("cw1.") && token.stdout.trim().ends_with(&pin));
    causeway(&[
        "token",
        "create",
        "--gateway",
        "Bad Name",
        "--controller",
        &sock,
    ])
    .failure()
    .stderr_has(&["gateway name"]);

    let bundle = causeway(&["bundle", "export", "--controller", &sock]).success();
    let doc: serde_json::Value = serde_json::from_str(&bundle.stdout).unwrap();
    assert_eq!(doc["spiffe_sequence"], 1);
    let gws = causeway(&["gateways", "--json", "--controller", &sock]).success();
    assert_eq!(gws.stdout.trim(), "[]");

    // A restart keeps the root and the resources.
    drop(c);
    let c = Controller::start(&config, dir.path().join("controller2.log"));
    assert_eq!(c.ready["root_pin"].as_str().unwrap(), pin);
    let again = causeway(&[
        "apply",
        "-f",
        &inventory,
        "-f",
        &west,
        "--dry-run",
        "--controller",
        &c.socket(),
    ])
    .success();
    assert!(
        again.stdout.contains("0 created, 0 updated, 2 unchanged"),
        "{again:?}"
    );
}

#[test]
fn commands_without_a_controller_say_so() {
    causeway(&["peer", "list"])
        .failure()
        .stderr_has(&["--controller SOCKET or --config FILE"]);
    causeway(&["peer", "list", "--controller", "/nonexistent/admin.sock"])
        .failure()
        .stderr_has(&["cannot reach the controller at /nonexistent/admin.sock"]);
}

/// `causeway rotate` against a real controller process with nothing to
/// wait for (no gateway, no peer): start follows the rotation to its end
/// and exits 0; status shows it in the history with every step; the bundle
/// holds the new root alone, two sequences on; abort and resume with
/// nothing under way say so and exit 1; a second controller's root from
/// files is taken as the new root, and a root of another shape refused.
#[test]
fn rotate_start_wait_status_and_refusals() {
    let dir = tmp();
    let config = write_config(dir.path());
    let c = Controller::start(&config, dir.path().join("controller.log"));
    let sock = c.socket();
    let before = causeway(&["bundle", "export", "--controller", &sock]).success();

    let run = causeway(&["rotate", "start", "--wait", "--controller", &sock]).success();
    assert!(run.stdout.contains("rotation "), "{run:?}");
    assert!(run.stdout.contains("completed"), "{run:?}");

    let status = causeway(&["rotate", "status", "--json", "--controller", &sock]).success();
    let doc: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(doc["current"].is_null(), "{status:?}");
    let done = &doc["history"][0];
    assert_eq!(done["outcome"], "completed", "{status:?}");
    assert_eq!(done["steps"].as_array().unwrap().len(), 7, "{status:?}");
    assert_eq!(
        done["sequence_after"].as_u64().unwrap(),
        done["sequence_before"].as_u64().unwrap() + 2
    );
    let after = causeway(&["bundle", "export", "--controller", &sock]).success();
    let roots = |doc: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(doc).unwrap();
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["x5c"][0].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(roots(&after.stdout).len(), 1);
    assert_ne!(roots(&after.stdout), roots(&before.stdout));

    causeway(&["rotate", "abort", "--controller", &sock])
        .failure()
        .stderr_has(&["no rotation is under way"]);
    causeway(&["rotate", "resume", "--controller", &sock])
        .failure()
        .stderr_has(&["no rotation is under way"]);

    // A new root from files (an upstream CA's): taken as it is.
    let ca_dir = dir.path().join("upstream");
    causeway(&[
        "ca",
        "init",
        "--trust-domain",
        "east.acme.example",
        "--dir",
        s(&ca_dir),
    ])
    .success();
    let cert = ca_dir.join("root.pem");
    let key = ca_dir.join("root.key");
    let run = causeway(&[
        "rotate",
        "start",
        "--root-cert",
        s(&cert),
        "--root-key",
        s(&key),
        "--wait",
        "--controller",
        &sock,
    ])
    .success();
    assert!(run.stdout.contains("completed"), "{run:?}");
    let exported = causeway(&["bundle", "export", "--controller", &sock]).success();
    let pem = fs::read_to_string(&cert).unwrap();
    let b64: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(roots(&exported.stdout), [b64]);
    // A certificate without its key is refused before anything starts.
    causeway(&[
        "rotate",
        "start",
        "--root-cert",
        s(&cert),
        "--controller",
        &sock,
    ])
    .failure();
}

/// Whether `causeway gateways --json` lists `name`, connected or not.
fn listed(sock: &str, name: &str) -> Option<bool> {
    let gws = causeway(&["gateways", "--json", "--controller", sock]).success();
    let list: serde_json::Value = serde_json::from_str(&gws.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == name)
        .map(|g| g["connected"] == true)
}

/// `causeway gateways forget` with a real gateway process: an unknown name
/// and a connected gateway are refused (exit 1, the reason on stderr); once
/// the gateway process is gone it is forgotten (exit 0), no longer listed,
/// and a second forget says it already was.
#[test]
fn gateways_forget_refusals_and_a_gone_gateway() {
    let dir = tmp();
    let config = write_config(dir.path());
    let c = Controller::start(&config, dir.path().join("controller.log"));
    let sock = c.socket();
    causeway(&["gateways", "forget", "east-9", "--controller", &sock])
        .failure()
        .stderr_has(&["no gateway named \"east-9\""]);

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
    let gw_config = dir.path().join("gateway.yaml");
    fs::write(
        &gw_config,
        format!(
            "trust_domain: east.acme.example\ncontroller:\n  address: {}\n  \
             token_file: east-1.token\n  data_dir: gw-data\n  name: east-1\n\
             admin: {{listen: 127.0.0.1:0}}\nlisteners:\n  - name: web\n    \
             listen: 127.0.0.1:0\n    protocol: http\n    \
             caller: {{identity: spiffe://east.acme.example/ns/shop/sa/frontend}}\n",
            c.api()
        ),
    )
    .unwrap();
    let gw = Gateway::start(&gw_config, dir.path().join("gateway.log"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while listed(&sock, "east-1") != Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway never connected:\n{}",
            gw.log_text()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    causeway(&["gateways", "forget", "east-1", "--controller", &sock])
        .failure()
        .stderr_has(&[
            "east-1 is connected (stream on replica ",
            "); stop it first",
        ]);

    // Its VM is deleted.
    drop(gw);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while listed(&sock, "east-1") != Some(false) {
        assert!(std::time::Instant::now() < deadline, "still connected");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let run = causeway(&["gateways", "forget", "east-1", "--config", s(&config)]).success();
    assert!(
        run.stdout
            .contains("forgot gateway east-1 (spiffe://east.acme.example/causeway/gateway/east-1)"),
        "{run:?}"
    );
    assert!(run.stdout.contains("refused from now on: SVID "), "{run:?}");
    assert_eq!(listed(&sock, "east-1"), None);
    let gws = causeway(&["gateways", "--controller", &sock]).success();
    assert_eq!(gws.stdout.trim(), "no gateways");
    causeway(&[
        "gateways",
        "forget",
        "east-1",
        "--json",
        "--controller",
        &sock,
    ])
    .failure()
    .stderr_has(&["east-1 was already forgotten at "]);
}
