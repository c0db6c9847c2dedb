//! What a new config changes against the one in effect, and whether a
//! running gateway can take it without a restart.
//!
//! Live: local services and their endpoints, imports, peers, authorization
//! rules, the identity map, every limit, and the bundle files of other
//! trust domains (a new peer comes with its domain's bundle). Not live,
//! because sockets, certificates or the gateway's own identity hang on
//! them: the trust domain, the gateway's ID, the SVID files, the own trust
//! domain's bundle file, the admin address, the peer listener address and
//! the local listeners.

use std::collections::BTreeMap;
use std::fmt;

use super::{GatewayConfig, Problem};

/// Names of what was added, removed and changed in one part of a config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

impl Diff {
    fn of<K: Ord, V: PartialEq>(
        old: &BTreeMap<K, V>,
        new: &BTreeMap<K, V>,
        name: impl Fn(&K) -> String,
    ) -> Self {
        let mut d = Self::default();
        for (k, v) in new {
            match old.get(k) {
                None => d.added.push(name(k)),
                Some(o) if o != v => d.changed.push(name(k)),
                Some(_) => {}
            }
        }
        d.removed = old
            .keys()
            .filter(|k| !new.contains_key(k))
            .map(name)
            .collect();
        d
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = [
            ("+", &self.added),
            ("-", &self.removed),
            ("~", &self.changed),
        ];
        let mut first = true;
        for (sign, names) in parts {
            for n in names {
                if !first {
                    f.write_str(" ")?;
                }
                first = false;
                write!(f, "{sign}{n}")?;
            }
        }
        Ok(())
    }
}

/// What a live-applicable config changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Bundle files of other trust domains, by trust domain.
    pub bundles: Diff,
    pub services: Diff,
    pub imports: Diff,
    pub peers: Diff,
    pub rules: bool,
    pub identity_map: bool,
    /// Names of the limits that changed.
    pub limits: Vec<&'static str>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.bundles.is_empty()
            && self.services.is_empty()
            && self.imports.is_empty()
            && self.peers.is_empty()
            && !self.rules
            && !self.identity_map
            && self.limits.is_empty()
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let mut parts = Vec::new();
        for (what, d) in [
            ("bundles", &self.bundles),
            ("services", &self.services),
            ("imports", &self.imports),
            ("peers", &self.peers),
        ] {
            if !d.is_empty() {
                parts.push(format!("{what}: {d}"));
            }
        }
        if self.rules {
            parts.push("authorization: changed".into());
        }
        if self.identity_map {
            parts.push("identity_map: changed".into());
        }
        if !self.limits.is_empty() {
            parts.push(format!("limits: {}", self.limits.join(", ")));
        }
        f.write_str(&parts.join("; "))
    }
}

/// What `new` changes against `old`, or every field that cannot change in
/// a running gateway (each named; restart the gateway to change them).
pub fn live_changes(old: &GatewayConfig, new: &GatewayConfig) -> Result<Changes, Vec<Problem>> {
    let mut fixed = Vec::new();
    let mut refuse = |field: String, old: &dyn fmt::Debug, new: &dyn fmt::Debug| {
        fixed.push(Problem {
            field,
            reason: format!("cannot change in a running gateway ({old:?} -> {new:?}); restart it"),
        });
    };
    if old.trust_domain != new.trust_domain {
        refuse(
            "trust_domain".into(),
            &old.trust_domain.as_str(),
            &new.trust_domain.as_str(),
        );
    }
    if old.id != new.id {
        refuse("id".into(), &old.id.as_str(), &new.id.as_str());
    }
    let (oc, nc) = (&old.credentials, &new.credentials);
    if oc.svid_cert != nc.svid_cert {
        refuse("svid.cert".into(), &oc.svid_cert, &nc.svid_cert);
    }
    if oc.svid_key != nc.svid_key {
        refuse("svid.key".into(), &oc.svid_key, &nc.svid_key);
    }
    let own = |c: &GatewayConfig| c.credentials.bundles.get(&c.trust_domain).cloned();
    if own(old) != own(new) {
        refuse(
            format!("bundles[{}]", new.trust_domain),
            &own(old),
            &own(new),
        );
    }
    if old.admin != new.admin {
        refuse("admin.listen".into(), &old.admin, &new.admin);
    }
    if old.peer_listener != new.peer_listener {
        refuse(
            "peer_listener.listen".into(),
            &old.peer_listener,
            &new.peer_listener,
        );
    }
    if old.listeners.len() != new.listeners.len() {
        let names = |c: &GatewayConfig| {
            c.listeners
                .iter()
                .map(|l| l.name.clone())
                .collect::<Vec<_>>()
        };
        refuse("listeners".into(), &names(old), &names(new));
    } else {
        for (i, (o, n)) in old.listeners.iter().zip(&new.listeners).enumerate() {
            if o != n {
                refuse(format!("listeners[{i}]"), o, n);
            }
        }
    }
    if !fixed.is_empty() {
        return Err(fixed);
    }
    let (ol, nl) = (&old.limits, &new.limits);
    let limits = [
        (
            "max_header_bytes",
            ol.max_header_bytes != nl.max_header_bytes,
        ),
        (
            "max_streams_per_connection",
            ol.max_streams_per_connection != nl.max_streams_per_connection,
        ),
        (
            "max_streams_per_peer",
            ol.max_streams_per_peer != nl.max_streams_per_peer,
        ),
        ("connect_timeout", ol.connect_timeout != nl.connect_timeout),
        ("request_timeout", ol.request_timeout != nl.request_timeout),
        ("idle_timeout", ol.idle_timeout != nl.idle_timeout),
        (
            "handshake_timeout",
            ol.handshake_timeout != nl.handshake_timeout,
        ),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect();
    let dest = |d: &super::Destination| format!("{}:{}", d.service, d.port);
    Ok(Changes {
        bundles: Diff::of(&oc.bundles, &nc.bundles, ToString::to_string),
        services: Diff::of(&old.services, &new.services, dest),
        imports: Diff::of(&old.imports, &new.imports, dest),
        peers: Diff::of(&old.peers, &new.peers, String::clone),
        rules: old.rules != new.rules,
        identity_map: old.identity_map != new.identity_map,
        limits,
    })
}
