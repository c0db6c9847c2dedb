//! The resources the benchmark applies: `services` Services and `peers`
//! Peerings that pass admission and compile into a snapshot of a realistic
//! shape. Each peering has its own trust domain with a real root made by
//! the trust core's CA (ECDSA P-256) as its first bundle, two gateways,
//! exports with caller restrictions, imports and an identity map; each
//! Service has one or two ports, three endpoints, a local rule and, when it
//! is exported, a rule for the peer's mapped principal.
//!
//! Documents are written as JSON (which is YAML), then parsed and checked
//! by `causeway_resources` and sent in the store form, as `causeway apply`
//! sends files.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use causeway_proto::controller::v1 as pb;
use causeway_resources::API_VERSION;
use causeway_trust::ca::Authority;
use causeway_trust::{TrustBundle, TrustDomain};
use serde_json::{Value, json};

/// The trust domain of the controller under test.
pub(crate) const LOCAL_TD: &str = "east.bench.example";
/// The Service every round changes.
pub(crate) const CHANGED: usize = 0;

/// Resources per apply call: one apply is one store transaction, and etcd
/// refuses a transaction of more than 128 operations (`--max-txn-ops`).
const PER_APPLY: usize = 100;
/// Services exported to each peering, at most.
const EXPORTS_PER_PEER: usize = 20;
/// Services of each peer imported, each under a local name.
const IMPORTS_PER_PEER: usize = 5;

/// How many of each, and what that gives.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub(crate) services: usize,
    pub(crate) peers: usize,
}

impl Shape {
    /// Services exported to each peering: the services spread over the
    /// peerings, up to [`EXPORTS_PER_PEER`] each, at least one.
    fn exports_per_peer(self) -> usize {
        (self.services / self.peers.max(1)).clamp(1, EXPORTS_PER_PEER)
    }

    /// The services peering `p` exports.
    fn exports_of(self, p: usize) -> impl Iterator<Item = usize> {
        let k = self.exports_per_peer();
        (0..k).map(move |j| (p * k + j) % self.services.max(1))
    }

    /// The peerings service `i` is exported to.
    fn exported_to(self, i: usize) -> Vec<usize> {
        (0..self.peers)
            .filter(|&p| self.exports_of(p).any(|s| s == i))
            .collect()
    }
}

pub(crate) fn service_name(i: usize) -> String {
    format!("svc-{i:04}")
}

fn peer_td(p: usize) -> String {
    format!("peer-{p:03}.bench.example")
}

fn doc(kind: &str, name: &str, spec: Value) -> Value {
    json!({ "apiVersion": API_VERSION, "kind": kind, "name": name, "spec": spec })
}

/// Service `i`; `generation` moves its first endpoint (0: the initial one).
fn service(i: usize, exported_to: &[usize], generation: u64) -> Value {
    let (hi, lo) = ((i / 250) % 250, i % 250);
    let mut endpoints: Vec<String> = (1..=3).map(|k| format!("10.{hi}.{lo}.{k}:8080")).collect();
    if generation > 0 {
        let g = generation;
        endpoints[0] = format!("10.250.{}.{}:8080", (g >> 8) & 255, g & 255);
    }
    let mut ports = vec![json!({ "port": 8080, "protocol": "http" })];
    if i.is_multiple_of(4) {
        ports.push(json!({
            "port": 9090,
            "protocol": "http2",
            "endpoints": [format!("10.{hi}.{lo}.10:9090")],
        }));
    }
    let mut authorization = vec![json!({
        "allow": [{ "pattern": format!("spiffe://{LOCAL_TD}/ns/team-{}/**", i % 20) }],
    })];
    for p in exported_to {
        authorization.push(json!({
            "ports": [8080],
            "allow": [{ "principal": format!("peer-{p:03}-client") }],
        }));
    }
    doc(
        "Service",
        &service_name(i),
        json!({ "ports": ports, "endpoints": endpoints, "authorization": authorization }),
    )
}

/// Peering `p`, with `bundle` (a SPIFFE bundle document) as its first bundle.
fn peering(shape: Shape, p: usize, bundle: Value) -> Value {
    let td = peer_td(p);
    let octet = p % 250 + 1;
    let port = 15443 + p / 250;
    let exports: Vec<Value> = shape
        .exports_of(p)
        .map(|i| {
            json!({
                "service": service_name(i),
                "ports": [8080],
                "callers": [{ "pattern": format!("spiffe://{td}/ns/app/**") }],
            })
        })
        .collect();
    let imports: Vec<Value> = (0..IMPORTS_PER_PEER)
        .map(|j| {
            json!({
                "service": format!("api-{j}"),
                "ports": [8080],
                "localName": format!("api-{j}.peer-{p:03}"),
            })
        })
        .collect();
    doc(
        "Peering",
        &format!("peer-{p:03}"),
        json!({
            "trustDomain": td,
            "bundleEndpoint": {
                "url": format!("https://bundle.{td}:8443/bundle"),
                "spiffeId": format!("spiffe://{td}/causeway/controller"),
            },
            "firstBundle": { "inline": bundle },
            "gateways": [
                { "address": format!("198.51.100.{octet}:{port}"), "id": format!("spiffe://{td}/causeway/gateway/gw-a") },
                { "address": format!("203.0.113.{octet}:{port}"), "id": format!("spiffe://{td}/causeway/gateway/gw-b") },
            ],
            "exports": exports,
            "imports": imports,
            "identityMap": [
                { "from": format!("spiffe://{td}/ns/app/sa/client"), "principal": format!("peer-{p:03}-client") },
                { "from": format!("spiffe://{td}/ns/ops/**"), "principal": format!("peer-{p:03}-ops") },
                { "from": format!("spiffe://{td}/ns/batch/sa/*"), "principal": format!("peer-{p:03}-batch") },
                { "from": format!("spiffe://{td}/ns/audit/**"), "principal": "auditors", "shared": true },
            ],
        }),
    )
}

/// Every Service and Peering, as files of at most [`PER_APPLY`] documents,
/// Services first, each to apply in its own call.
pub(crate) fn initial(shape: Shape) -> anyhow::Result<Vec<pb::ResourceFile>> {
    let services: Vec<Value> = (0..shape.services)
        .map(|i| service(i, &shape.exported_to(i), 0))
        .collect();
    let mut peerings = Vec::with_capacity(shape.peers);
    for p in 0..shape.peers {
        let td = TrustDomain::new(&peer_td(p))?;
        let root = Authority::new_root(&td, Duration::from_secs(365 * 86400))
            .with_context(|| format!("a root for {td}"))?;
        let bundle = TrustBundle::new(td, vec![root.cert().clone()]).with_sequence(1);
        let bundle: Value =
            serde_json::from_str(&bundle.to_json()).context("the bundle document as JSON")?;
        peerings.push(peering(shape, p, bundle));
    }
    let mut files = Vec::new();
    for (kind, docs) in [("services", &services), ("peerings", &peerings)] {
        for (n, chunk) in docs.chunks(PER_APPLY).enumerate() {
            files.push(file(&format!("{kind}-{n:03}.yaml"), chunk)?);
        }
    }
    Ok(files)
}

/// The changed Service of round `generation` (1, 2, ...).
pub(crate) fn change(shape: Shape, generation: u64) -> anyhow::Result<pb::ResourceFile> {
    let s = service(CHANGED, &shape.exported_to(CHANGED), generation);
    file(&format!("{}.yaml", service_name(CHANGED)), &[s])
}

/// Parses and checks the documents as `causeway apply` does with a file,
/// and returns them in the store form it sends.
fn file(name: &str, docs: &[Value]) -> anyhow::Result<pb::ResourceFile> {
    let text = docs
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n");
    let entries = causeway_resources::parse_str(name, &text, Path::new("."))
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("the generated {name}"))?;
    let mut out = Vec::with_capacity(entries.len());
    for e in &entries {
        out.push(
            e.resource
                .to_yaml()
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("the generated {name} in the store form"))?,
        );
    }
    Ok(pb::ResourceFile {
        name: name.to_owned(),
        content: out.join("---\n"),
    })
}
