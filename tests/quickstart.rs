#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The README's quickstart, run as it is written: the shell block after the
//! `<!-- quickstart` marker, with bash, against the real binary, from a
//! copy of config/demo/. Two changes only, both to honour the test rules:
//! every fixed loopback port (in the files and in the block) becomes a
//! port the system just handed out, and before the block's last line
//! (which stops everything) each gateway's and controller's `/metrics` is
//! saved, so that the README's metrics table is checked against what the
//! processes serve. Every process the block starts is in one process
//! group, killed by the test whatever happens.

use std::collections::BTreeMap;
use std::fs;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shell block that follows the marker.
fn quickstart_block(readme: &str) -> String {
    let at = readme
        .find("<!-- quickstart")
        .expect("README.md has no `<!-- quickstart` marker");
    let rest = &readme[at..];
    let open = rest
        .find("```sh\n")
        .expect("no ```sh block after the marker")
        + 6;
    let len = rest[open..].find("```").expect("the block is not closed");
    rest[open..open + len].to_owned()
}

/// How the files and the block name a loopback port: `127.0.0.1:PORT`,
/// and bash's `/dev/tcp/127.0.0.1/PORT`.
const HOSTS: [&str; 2] = ["127.0.0.1:", "/dev/tcp/127.0.0.1/"];

/// Every distinct loopback port named in `text`.
fn loopback_ports(text: &str, into: &mut Vec<u16>) {
    for host in HOSTS {
        let mut rest = text;
        while let Some(i) = rest.find(host) {
            rest = &rest[i + host.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(p) = digits.parse::<u16>()
                && p != 0
                && !into.contains(&p)
            {
                into.push(p);
            }
        }
    }
}

/// A port from the system for each fixed one, free for TCP and UDP alike
/// (the peer listener is QUIC); all are held until every one is chosen.
fn fresh_ports(fixed: &[u16]) -> BTreeMap<u16, u16> {
    let mut held = Vec::new();
    let mut map = BTreeMap::new();
    for &p in fixed {
        loop {
            let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = tcp.local_addr().unwrap().port();
            if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
                held.push((tcp, udp));
                map.insert(p, port);
                break;
            }
        }
    }
    map
}

fn with_ports(text: &str, map: &BTreeMap<u16, u16>) -> String {
    let mut text = text.to_owned();
    for host in HOSTS {
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(i) = rest.find(host) {
            out.push_str(&rest[..i + host.len()]);
            rest = &rest[i + host.len()..];
            let n = rest.chars().take_while(char::is_ascii_digit).count();
            let port: u16 = rest[..n].parse().unwrap_or(0);
            match map.get(&port) {
                Some(new) => out.push_str(&new.to_string()),
                None => out.push_str(&rest[..n]),
            }
            rest = &rest[n..];
        }
        out.push_str(rest);
        text = out;
    }
    text
}

/// The bash running the block, its process group killed on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.0.wait();
    }
}

fn listen_of(file: &Path, key: &str) -> String {
    let doc: serde_json::Value =
        serde_saphyr::from_str(&fs::read_to_string(file).unwrap()).unwrap();
    doc[key]["listen"].as_str().unwrap().to_owned()
}

#[test]
fn the_readme_quickstart_runs_as_written() {
    assert!(
        Command::new("curl")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "the quickstart needs curl (.ci/install-deps installs it)"
    );
    let readme = fs::read_to_string(repo().join("README.md")).unwrap();
    let block = quickstart_block(&readme);

    // config/demo/ and the block with ports from the system.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    let demo = repo().join("config/demo");
    let mut texts = Vec::new();
    for side in ["east", "west"] {
        for e in fs::read_dir(demo.join(side)).unwrap() {
            let path = e.unwrap().path();
            texts.push((
                format!("{side}/{}", path.file_name().unwrap().to_str().unwrap()),
                fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    let mut fixed = Vec::new();
    loopback_ports(&block, &mut fixed);
    for (_, t) in &texts {
        loopback_ports(t, &mut fixed);
    }
    assert!(fixed.len() >= 10, "the files name their ports: {fixed:?}");
    let map = fresh_ports(&fixed);
    for (name, text) in &texts {
        let to = root.join("config/demo").join(name);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::write(&to, with_ports(text, &map)).unwrap();
    }
    let files = root.join("config/demo");
    let mut scrape = String::new();
    for (i, (file, key)) in [
        ("east/gateway.yaml", "admin"),
        ("west/gateway.yaml", "admin"),
        ("east/controller.yaml", "metrics"),
        ("west/controller.yaml", "metrics"),
    ]
    .iter()
    .enumerate()
    {
        let addr = listen_of(&files.join(file), key);
        scrape.push_str(&format!(
            "curl -fsS http://{addr}/metrics > \"$METRICS/{i}.txt\"\n"
        ));
    }
    let mut script = with_ports(&block, &map);
    let stop = script
        .rfind("kill $(jobs -p)")
        .expect("the block ends by stopping what it started");
    script.insert_str(stop, &scrape);
    let script_file = tmp.path().join("quickstart.sh");
    fs::write(&script_file, &script).unwrap();
    let metrics_dir = tmp.path().join("metrics");
    let tmpdir = tmp.path().join("tmp");
    fs::create_dir_all(&metrics_dir).unwrap();
    fs::create_dir_all(&tmpdir).unwrap();

    // Run it, the binary first on the PATH.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_causeway"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tmp.path().join("stdout");
    let err = tmp.path().join("stderr");
    let child = Command::new("bash")
        .arg("-e")
        .arg(&script_file)
        .current_dir(&root)
        .env("PATH", path)
        .env("TMPDIR", &tmpdir)
        .env("METRICS", &metrics_dir)
        .env_remove("CAUSEWAY_LOG")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut group = Group(child);
    let deadline = Instant::now() + Duration::from_secs(150);
    let status = loop {
        if let Some(s) = group.0.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = fs::read_to_string(&out).unwrap_or_default();
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    let context = format!(
        "stdout:\n{stdout}\nstderr (last 4000 bytes):\n{}",
        tail(&stderr)
    );
    let status =
        status.unwrap_or_else(|| panic!("the quickstart did not finish in 150 s\n{context}"));
    assert!(
        status.success(),
        "the quickstart failed: {status}\n{context}"
    );

    // What the README says to expect.
    for want in [
        "payments at west.globex.example: GET /hello from spiffe://east.acme.example/ns/shop/sa/frontend (principal east-frontend)",
        "HTTP/1.1 403 Forbidden",
        "x-causeway-refusal: denied",
        "no rule allows spiffe://east.acme.example/ns/batch/sa/report to reach payments:8080",
        "inventory at east.acme.example: GET /stock from spiffe://west.globex.example/ns/payments/sa/api (principal west-payments)",
        "inventory at east.acme.example: GET / from spiffe://east.acme.example/ns/shop/sa/frontend",
        "ledger|hello",
        "in sync: all 4 parties hold the bundles they must",
        "completed",
        "bundle sequence 1 -> 3",
    ] {
        assert!(
            stdout.contains(want),
            "no {want:?} in the output\n{context}"
        );
    }
    // After the rotation west's gateway holds east's bundle at sequence 3.
    let west_verify = &stdout[stdout.rfind("in sync").unwrap()..];
    let east_at_west = west_verify
        .lines()
        .find(|l| l.starts_with("local_gateway") && l.contains("east.acme.example  "))
        .unwrap_or_else(|| panic!("no line for east's bundle at west's gateway\n{context}"));
    let cols: Vec<&str> = east_at_west.split_whitespace().collect();
    assert_eq!(&cols[cols.len() - 3..], ["3", "3", "ok"], "{east_at_west}");

    // Every metric the README's table names is served by a gateway or a
    // controller of the quickstart.
    let served: String = (0..4)
        .map(|i| fs::read_to_string(metrics_dir.join(format!("{i}.txt"))).unwrap())
        .collect();
    let table = &readme[readme.find("## Metrics").unwrap()..];
    let table = &table[..table[3..].find("\n## ").unwrap()];
    let mut named = 0;
    for word in table.split('`') {
        if word.starts_with("causeway_") && !word.contains(' ') {
            named += 1;
            assert!(
                served.contains(&format!("\n{word}"))
                    || served.contains(&format!("\n# HELP {word} ")),
                "README names {word}, which no process of the quickstart serves"
            );
        }
    }
    assert!(named >= 25, "the metrics table names {named} metrics");
}

fn tail(s: &str) -> &str {
    let mut at = s.len().saturating_sub(4000);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}
