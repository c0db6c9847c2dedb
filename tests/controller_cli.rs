//! End-to-end tests of `causeway controller` and the commands that talk to
//! it (`apply`, `peer`, `token`, `bundle export --controller`, `gateways`):
//! the real binary, a controller process on loopback with ports from the
//! OS, killed by its pid when the test ends however it ends.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::process::Controller;
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
