#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The store suite against a real etcd server (one per test, on loopback),
//! and what is etcd's own: namespaces, an unreachable etcd.

mod suite;

use std::sync::Arc;
use std::time::Duration;

use causeway_store::testing::EtcdServer;
use causeway_store::{
    Election, EtcdConfig, EtcdStore, LeaseLost, LostReason, Store, StoreError, Txn,
};
use tempfile::TempDir;

struct EtcdBackend {
    // Field order: the store and server go before the directory.
    store: Option<Arc<dyn Store>>,
    server: Option<EtcdServer>,
    dir: TempDir,
}

async fn connect(server: &EtcdServer, trust_domain: &str) -> EtcdStore {
    EtcdStore::connect(&EtcdConfig::new(
        vec![server.endpoint.clone()],
        trust_domain,
    ))
    .await
    .expect("connect to the test etcd")
}

impl suite::Backend for EtcdBackend {
    const LEASES_SURVIVE_RESTART: bool = true;

    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = EtcdServer::start(&dir.path().join("etcd"));
        let store = connect(&server, "east.acme.example").await;
        Self {
            store: Some(Arc::new(store)),
            server: Some(server),
            dir,
        }
    }

    fn store(&self) -> Arc<dyn Store> {
        self.store.clone().expect("store running")
    }

    async fn restart(&mut self) {
        self.store = None;
        if let Some(server) = self.server.take() {
            server.kill();
        }
        let server = EtcdServer::start(&self.dir.path().join("etcd"));
        self.store = Some(Arc::new(connect(&server, "east.acme.example").await));
        self.server = Some(server);
    }
}

store_suite!(EtcdBackend);

#[tokio::test]
async fn trust_domains_share_an_etcd_without_seeing_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let server = EtcdServer::start(dir.path());
    let east = connect(&server, "east.acme.example").await;
    let west = connect(&server, "west.globex.example").await;
    east.txn(Txn::new().put("peers/x", "east's"))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap();
    west.txn(Txn::new().put("peers/x", "west's"))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap();
    let mut watch = west.watch("", 0).await.unwrap();
    east.txn(Txn::new().put("peers/y", "east only"))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap();
    assert_eq!(east.list("").await.unwrap().kvs.len(), 2);
    let west_list = west.list("").await.unwrap();
    assert_eq!(west_list.kvs.len(), 1);
    assert_eq!(west_list.kvs[0].value, b"west's");
    let quiet = tokio::time::timeout(Duration::from_millis(300), watch.next()).await;
    assert!(quiet.is_err(), "west's watch saw east's change: {quiet:?}");
}

#[tokio::test]
async fn an_unreachable_etcd_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let server = EtcdServer::start(dir.path());
    let endpoint = server.endpoint.clone();
    let store = connect(&server, "east.acme.example").await;
    server.kill();

    let mut config = EtcdConfig::new(vec![endpoint], "east.acme.example");
    config.connect_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_millis(500);
    let refused = EtcdStore::connect(&config).await;
    assert!(
        matches!(refused, Err(StoreError::Unavailable(_))),
        "{refused:?}"
    );
    let err = tokio::time::timeout(Duration::from_secs(10), store.get("k"))
        .await
        .expect("a call to a dead etcd must end")
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn a_bad_namespace_is_a_config_error() {
    let config = EtcdConfig {
        namespace: "no-slash".into(),
        ..EtcdConfig::new(vec!["http://127.0.0.1:1".into()], "x")
    };
    assert!(matches!(
        EtcdStore::connect(&config).await,
        Err(StoreError::Config(_))
    ));
}

#[tokio::test]
async fn a_leader_learns_it_lost_when_etcd_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let server = EtcdServer::start(dir.path());
    let store: Arc<dyn Store> = Arc::new(connect(&server, "east.acme.example").await);
    let election = Election::new(store, "controller");
    let leader = election
        .campaign("replica-a", Duration::from_secs(1))
        .await
        .unwrap();
    assert!(!leader.is_lost());
    server.kill();
    // No keep-alive can succeed: after one TTL the lease must be presumed
    // expired, and leader-only work must stop.
    let lost = tokio::time::timeout(Duration::from_secs(10), leader.lost())
        .await
        .expect("the leader never learned");
    assert!(
        matches!(lost, LostReason::Lease(LeaseLost::Unreachable(_))),
        "{lost:?}"
    );
}
