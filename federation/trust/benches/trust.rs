//! Issuance and verification rates of the trust core, one core:
//! `cargo bench -p causeway-trust --bench trust`. Criterion reports time per
//! operation and operations per second (throughput of 1 element).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    reason = "benchmark"
)]

use std::hint::black_box;
use std::time::Duration;

use causeway_trust::ca;
use causeway_trust::testing::TestDomain;
use causeway_trust::{BundleSet, Expected, PeerRole, Validity};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rustls_pki_types::UnixTime;

fn issuance(c: &mut Criterion) {
    let mut g = c.benchmark_group("issue");
    g.throughput(Throughput::Elements(1));
    let d = TestDomain::new("east.acme.example");
    let (csr, _key) = ca::new_csr(&d.id("/ns/shop/sa/frontend")).unwrap();
    let validity = Validity::starting_now(Duration::from_secs(3600));
    g.bench_function("svid_from_csr", |b| {
        b.iter(|| d.ca.sign_csr(black_box(&csr), validity, |_| true).unwrap())
    });
    g.finish();
}

fn verification(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    for (name, d) in [
        ("chain_root_leaf", TestDomain::new("east.acme.example")),
        (
            "chain_root_intermediate_leaf",
            TestDomain::with_intermediate("east.acme.example"),
        ),
    ] {
        let svid = d.svid("/frontend");
        // A set as a gateway holds it: its own bundle and a few peers'.
        let peers: Vec<_> = (0..3)
            .map(|i| TestDomain::new(&format!("peer{i}.example")).bundle())
            .collect();
        let set = BundleSet::from_bundles(peers.into_iter().chain([d.bundle()])).unwrap();
        let chain = svid.chain();
        g.bench_function(name, |b| {
            b.iter(|| {
                set.verify(
                    black_box(&chain[0]),
                    black_box(&chain[1..]),
                    UnixTime::now(),
                    PeerRole::Client,
                    &Expected::AnyKnownDomain,
                )
                .unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, issuance, verification);
criterion_main!(benches);
