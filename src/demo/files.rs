//! The demo's config files: config/demo/, built into the binary so that the
//! demo runs from any directory, and the one change the demo makes to them.
//!
//! Every address in them is `127.0.0.1:PORT`, a fixed port that says which
//! part reaches which. The demo writes each file into its temp dir just
//! before the part that reads it starts, with each such address replaced:
//! by port 0 where that part listens, and by the address another part was
//! given by the system where the file names that part. An address that is
//! neither is an error: a file naming something the demo did not start.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// One organization's files.
#[derive(Debug)]
pub(crate) struct SideFiles {
    /// The directory, in config/demo/ and in the temp dir.
    pub(crate) dir: &'static str,
    pub(crate) controller: &'static str,
    pub(crate) gateway: &'static str,
    /// Resource files (name, text), in the order `apply -f` gets them.
    pub(crate) resources: &'static [(&'static str, &'static str)],
}

pub(crate) const EAST: SideFiles = SideFiles {
    dir: "east",
    controller: include_str!("../../config/demo/east/controller.yaml"),
    gateway: include_str!("../../config/demo/east/gateway.yaml"),
    resources: &[
        (
            "service-inventory.yaml",
            include_str!("../../config/demo/east/service-inventory.yaml"),
        ),
        (
            "peering-west.yaml",
            include_str!("../../config/demo/east/peering-west.yaml"),
        ),
    ],
};

pub(crate) const WEST: SideFiles = SideFiles {
    dir: "west",
    controller: include_str!("../../config/demo/west/controller.yaml"),
    gateway: include_str!("../../config/demo/west/gateway.yaml"),
    resources: &[
        (
            "service-payments.yaml",
            include_str!("../../config/demo/west/service-payments.yaml"),
        ),
        (
            "service-ledger.yaml",
            include_str!("../../config/demo/west/service-ledger.yaml"),
        ),
        (
            "peering-east.yaml",
            include_str!("../../config/demo/west/peering-east.yaml"),
        ),
    ],
};

const LOOPBACK: &str = "127.0.0.1:";

/// What each fixed address of the files became.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    bound: BTreeMap<SocketAddr, SocketAddr>,
}

impl Addresses {
    /// The part listening on `fixed` in the files was given `actual`.
    pub(crate) fn bound(&mut self, fixed: SocketAddr, actual: SocketAddr) {
        self.bound.insert(fixed, actual);
    }

    /// Writes `text` as `dir/name`, each address replaced: by port 0 when
    /// it is in `listens` (where the part reading the file will listen),
    /// by the bound address when another part listens there. Returns the
    /// path.
    pub(crate) fn write(
        &self,
        dir: &Path,
        name: &str,
        text: &str,
        listens: &[SocketAddr],
    ) -> anyhow::Result<PathBuf> {
        let text = self
            .rewrite(text, listens)
            .with_context(|| format!("config/demo/{}/{name}", side_name(dir)))?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    fn rewrite(&self, text: &str, listens: &[SocketAddr]) -> anyhow::Result<String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find(LOOPBACK) {
            out.push_str(&rest[..at]);
            let after = &rest[at + LOOPBACK.len()..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let token = &rest[at..at + LOOPBACK.len() + digits];
            let fixed: SocketAddr = token
                .parse()
                .with_context(|| format!("{token:?} is not an address"))?;
            if listens.contains(&fixed) {
                out.push_str("127.0.0.1:0");
            } else if let Some(actual) = self.bound.get(&fixed) {
                out.push_str(&actual.to_string());
            } else {
                bail!("{fixed}: no part of the demo listens there");
            }
            rest = &after[digits..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn side_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The addresses a gateway file listens on, by role: `admin`,
/// `peer_listener` and each listener's name; with each listener's
/// protocol and caller identity.
#[derive(Debug, Default)]
pub(crate) struct GatewayListens {
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) peer_listener: Option<SocketAddr>,
    /// name → (address, protocol, caller identity or "mtls").
    pub(crate) listeners: BTreeMap<String, (SocketAddr, String, String)>,
}

impl GatewayListens {
    /// Reads them from a controller-run gateway's file.
    pub(crate) fn of(name: &str, text: &str) -> anyhow::Result<Self> {
        let raw: causeway_gateway::config::raw::RawConfig =
            serde_saphyr::from_str(text).with_context(|| format!("{name}: not a gateway file"))?;
        let addr = |field: &str, s: &str| -> anyhow::Result<SocketAddr> {
            s.parse()
                .with_context(|| format!("{name}: {field}: {s:?} is not an address"))
        };
        let mut out = Self::default();
        if let Some(a) = &raw.admin {
            out.admin = Some(addr("admin.listen", &a.listen)?);
        }
        if let Some(p) = &raw.peer_listener {
            out.peer_listener = Some(addr("peer_listener.listen", &p.listen)?);
        }
        for l in &raw.listeners {
            let caller = match &l.caller.identity {
                Some(id) => id.clone(),
                None => "mtls".to_owned(),
            };
            out.listeners.insert(
                l.name.clone(),
                (addr("listeners", &l.listen)?, l.protocol.clone(), caller),
            );
        }
        Ok(out)
    }

    pub(crate) fn all(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self.admin.into_iter().chain(self.peer_listener).collect();
        all.extend(self.listeners.values().map(|(a, _, _)| *a));
        all
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn listens_become_port_zero_and_others_their_bound_address() {
        let mut m = Addresses::default();
        m.bound(a("127.0.0.1:1501"), a("127.0.0.1:40001"));
        let text = "api: 127.0.0.1:15012\nurl: https://127.0.0.1:1501/\nx: 127.0.0.1:1501\n";
        let out = m.rewrite(text, &[a("127.0.0.1:15012")]).unwrap();
        assert_eq!(
            out,
            "api: 127.0.0.1:0\nurl: https://127.0.0.1:40001/\nx: 127.0.0.1:40001\n"
        );
    }

    #[test]
    fn an_address_nobody_listens_on_is_an_error() {
        let m = Addresses::default();
        let e = m.rewrite("a: 127.0.0.1:9", &[]).unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
    }

    #[test]
    fn the_gateway_files_name_their_listeners() {
        let east = GatewayListens::of("east", EAST.gateway).unwrap();
        assert_eq!(
            east.listeners.keys().collect::<Vec<_>>(),
            ["batch", "frontend", "ledger"]
        );
        assert_eq!(east.all().len(), 5);
        let west = GatewayListens::of("west", WEST.gateway).unwrap();
        assert!(west.listeners.contains_key("payments"));
    }
}
