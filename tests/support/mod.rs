//! Shared helpers for the end-to-end tests: run the real `causeway` binary
//! and `openssl`, and capture what a user would see.

#![allow(dead_code, reason = "each test binary uses part of the support module")]

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use tempfile::TempDir;

pub(crate) mod bulk;
pub(crate) mod client;
pub(crate) mod echo;
pub(crate) mod load;
pub(crate) mod pair;
pub(crate) mod process;
pub(crate) mod upstreams;

/// The trust domain most tests issue in, and a workload in it.
pub(crate) const EAST: &str = "east.acme.example";
pub(crate) const FRONTEND: &str = "spiffe://east.acme.example/ns/shop/sa/frontend";

/// A fresh temporary directory, removed when dropped.
pub(crate) fn tmp() -> TempDir {
    tempfile::tempdir().unwrap()
}

/// `PREFIX.EXT`: the file `ca issue --out PREFIX` writes with that extension.
pub(crate) fn with_ext(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// The outcome of one command: exit status and decoded output.
pub(crate) struct Run {
    pub(crate) cmdline: String,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// Asserts the command succeeded.
    #[track_caller]
    pub(crate) fn success(self) -> Self {
        assert!(self.status.success(), "expected success: {self:?}");
        self
    }

    /// Asserts the command failed with a non-zero exit (not a signal) and
    /// printed a diagnostic.
    #[track_caller]
    pub(crate) fn failure(self) -> Self {
        assert!(
            matches!(self.status.code(), Some(c) if c != 0),
            "expected a non-zero exit: {self:?}"
        );
        assert!(
            !self.stderr.trim().is_empty(),
            "expected a message on stderr: {self:?}"
        );
        self
    }

    /// Asserts stderr contains every fragment.
    #[track_caller]
    pub(crate) fn stderr_has(self, fragments: &[&str]) -> Self {
        for f in fragments {
            assert!(
                self.stderr.contains(f),
                "stderr should contain {f:?}: {self:?}"
            );
        }
        self
    }
}

fn run(program: &str, args: &[&str]) -> Run {
    let mut cmd = Command::new(program);
    cmd.args(args).env_remove("CAUSEWAY_LOG");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    Run {
        cmdline: format!("{program} {}", args.join(" ")),
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the `causeway` binary under test.
pub(crate) fn causeway(args: &[&str]) -> Run {
    run(env!("CARGO_BIN_EXE_causeway"), args)
}

/// Runs the system `openssl`.
pub(crate) fn openssl(args: &[&str]) -> Run {
    run("/usr/bin/openssl", args)
}

/// A path as a `&str` (temporary directories have UTF-8 names).
pub(crate) fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `causeway bundle export --dir DIR --format FORMAT`, which must succeed,
/// written to `to`.
pub(crate) fn export(dir: &Path, format: &str, to: &Path) {
    let run = causeway(&["bundle", "export", "--dir", s(dir), "--format", format]).success();
    fs::write(to, run.stdout).unwrap();
}

/// `causeway ca init --trust-domain TD --dir DIR EXTRA...`, which must succeed.
pub(crate) fn ca_init(dir: &Path, trust_domain: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "ca",
        "init",
        "--trust-domain",
        trust_domain,
        "--dir",
        s(dir),
    ];
    args.extend_from_slice(extra);
    causeway(&args).success()
}

/// `causeway ca issue --dir DIR --spiffe-id ID --out OUT EXTRA...`, which must
/// succeed.
pub(crate) fn ca_issue(dir: &Path, spiffe_id: &str, out: &Path, extra: &[&str]) -> Run {
    let mut args = vec![
        "ca",
        "issue",
        "--dir",
        s(dir),
        "--spiffe-id",
        spiffe_id,
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    causeway(&args).success()
}

/// Unix permission bits of a file.
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Number of PEM certificates in a file.
pub(crate) fn count_certificates(path: &Path) -> usize {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.matches("-----BEGIN CERTIFICATE-----").count()
}

/// The value after `label` on the first line of `text` that starts with it
/// (leading spaces ignored).
#[track_caller]
pub(crate) fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .map(str::trim_start)
        .find_map(|l| l.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"))
}
