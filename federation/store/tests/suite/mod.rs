//! The store test suite: every test is a generic async function over a
//! [`Backend`], and `store_suite!` instantiates all of them for one backend.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use causeway_store::{
    Compare, Election, KeepAlive, LeaseLost, LostReason, MAX_VALUE_BYTES, Store, StoreError, Txn,
    Watch, WatchEvent,
};

/// Each test's bound, start of its backend included.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an expected event may take (a lease of 1 s ends within ~2 s).
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running store the suite can use and restart.
pub(crate) trait Backend: Sized {
    /// Whether a lease (and its keys) outlives a restart of the store.
    const LEASES_SURVIVE_RESTART: bool;

    async fn start() -> Self;

    fn store(&self) -> Arc<dyn Store>;

    /// Stops the store and starts it again on the same data, dropping the
    /// old handle first.
    async fn restart(&mut self);
}

/// Instantiates every suite test for a backend type.
#[macro_export]
macro_rules! store_suite {
    ($backend:ty) => {
        $crate::store_suite!(@tests $backend;
            get_txn_and_list,
            cas_conflicts,
            multi_key_txn_is_atomic,
            invalid_txns_are_refused,
            list_then_watch_has_no_gap,
            watch_from_compacted_revision_fails,
            lease_expiry_deletes_keys_and_watchers_see_it,
            keep_alive_holds_a_lease_and_revoke_ends_it,
            election_hands_over_on_resign,
            election_hands_over_on_lease_expiry,
            restart_keeps_data,
            concurrent_cas_writers_lose_no_update,
            big_values,
            many_keys,
        );
    };
    (@tests $backend:ty; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let run = async {
                    let mut backend = <$backend as suite::Backend>::start().await;
                    suite::$name(&mut backend).await;
                };
                tokio::time::timeout(suite::TEST_TIMEOUT, run)
                    .await
                    .expect("test timed out");
            }
        )*
    };
}

async fn next_event(watch: &mut Watch) -> WatchEvent {
    tokio::time::timeout(EVENT_TIMEOUT, watch.next())
        .await
        .expect("no watch event in time")
        .expect("watch ended")
        .expect("watch failed")
}

async fn put(store: &dyn Store, key: &str, value: &[u8]) -> i64 {
    store
        .txn(Txn::new().put(key, value))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap()
}

pub(crate) async fn get_txn_and_list<B: Backend>(b: &mut B) {
    let store = b.store();
    let empty = store.get("peers/west").await.unwrap();
    assert!(empty.kv.is_none());
    assert!(empty.revision >= 1);

    let rev = put(&*store, "peers/west", b"w1").await;
    assert!(rev > empty.revision);
    let read = store.get("peers/west").await.unwrap();
    let kv = read.kv.unwrap();
    assert_eq!(kv.value, b"w1");
    assert_eq!((kv.create_revision, kv.mod_revision), (rev, rev));
    assert_eq!(read.revision, rev);

    let rev2 = put(&*store, "peers/west", b"w2").await;
    let kv = store.get("peers/west").await.unwrap().kv.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (rev, rev2));

    put(&*store, "peers/east", b"e").await;
    put(&*store, "peersx", b"not under peers/").await;
    put(&*store, "services/a", b"a").await;
    let list = store.list("peers/").await.unwrap();
    let keys: Vec<_> = list.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["peers/east", "peers/west"]);
    let all = store.list("").await.unwrap();
    assert_eq!(all.kvs.len(), 4);
    assert_eq!(all.revision, store.get("x").await.unwrap().revision);

    // Deleting changes the revision; deleting nothing does not.
    let del = store.txn(Txn::new().delete("peers/east")).await.unwrap();
    assert!(del.applied && del.revision > all.revision);
    let nothing = store.txn(Txn::new().delete("peers/east")).await.unwrap();
    assert!(nothing.applied);
    assert_eq!(nothing.revision, del.revision);
    assert!(store.get("peers/east").await.unwrap().kv.is_none());
}

pub(crate) async fn cas_conflicts<B: Backend>(b: &mut B) {
    let store = b.store();
    let create = || {
        Txn::new()
            .when(Compare::Absent("config/version".into()))
            .put("config/version", "1")
    };
    let first = store.txn(create()).await.unwrap();
    assert!(first.applied);
    let second = store.txn(create()).await.unwrap();
    assert!(!second.applied, "a second create of the same key must fail");
    assert!(matches!(
        second.applied_or_conflict(),
        Err(StoreError::Conflict)
    ));

    // Two writers read revision r; the first update wins, the second sees
    // a conflict and nothing of it is applied.
    let r = store
        .get("config/version")
        .await
        .unwrap()
        .kv
        .unwrap()
        .mod_revision;
    let update = |v: &str| {
        Txn::new()
            .when(Compare::ModRevision("config/version".into(), r))
            .put("config/version", v)
    };
    assert!(store.txn(update("2")).await.unwrap().applied);
    assert!(!store.txn(update("3")).await.unwrap().applied);
    let kv = store.get("config/version").await.unwrap().kv.unwrap();
    assert_eq!(kv.value, b"2");

    // Value compares.
    let by_value = |expect: &str, v: &str| {
        Txn::new()
            .when(Compare::Value("config/version".into(), expect.into()))
            .put("config/version", v)
    };
    assert!(!store.txn(by_value("1", "x")).await.unwrap().applied);
    assert!(store.txn(by_value("2", "4")).await.unwrap().applied);
    // A missing key has mod revision 0; a value compare on it never holds.
    let missing = Txn::new()
        .when(Compare::ModRevision("nope".into(), 1))
        .put("z", "z");
    assert!(!store.txn(missing).await.unwrap().applied);
    let create = Txn::new()
        .when(Compare::ModRevision("new".into(), 0))
        .put("new", "n");
    assert!(store.txn(create.clone()).await.unwrap().applied);
    assert!(!store.txn(create).await.unwrap().applied);
    let missing = Txn::new()
        .when(Compare::Value("nope".into(), Vec::new()))
        .put("z", "z");
    assert!(!store.txn(missing).await.unwrap().applied);
    assert!(store.get("z").await.unwrap().kv.is_none());
}

pub(crate) async fn multi_key_txn_is_atomic<B: Backend>(b: &mut B) {
    let store = b.store();
    put(&*store, "rotation/state", b"publish-both").await;
    put(&*store, "bundles/old", b"old").await;
    let guard = store
        .get("rotation/state")
        .await
        .unwrap()
        .kv
        .unwrap()
        .mod_revision;

    let step = |expect: i64| {
        Txn::new()
            .when(Compare::ModRevision("rotation/state".into(), expect))
            .when(Compare::Absent("bundles/new".into()))
            .put("rotation/state", "switch-issuance")
            .put("bundles/new", "new")
            .put("issuer/current", "new")
            .delete("bundles/old")
    };
    // A failing compare: nothing of the four changes.
    let before = store.list("").await.unwrap();
    assert!(!store.txn(step(guard - 1)).await.unwrap().applied);
    assert_eq!(store.list("").await.unwrap().kvs, before.kvs);

    let mut watch = store.watch("", before.revision + 1).await.unwrap();
    let applied = store.txn(step(guard)).await.unwrap();
    assert!(applied.applied);
    let after = store.list("").await.unwrap();
    let keys: BTreeMap<_, _> = after
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), (kv.value.as_slice(), kv.mod_revision)))
        .collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys["bundles/new"], (&b"new"[..], applied.revision));
    assert_eq!(keys["issuer/current"], (&b"new"[..], applied.revision));
    assert_eq!(
        keys["rotation/state"],
        (&b"switch-issuance"[..], applied.revision)
    );
    // Watchers see the four changes at one revision.
    for _ in 0..4 {
        assert_eq!(next_event(&mut watch).await.revision(), applied.revision);
    }
}

pub(crate) async fn invalid_txns_are_refused<B: Backend>(b: &mut B) {
    let store = b.store();
    let twice = Txn::new().put("a", "1").delete("a");
    assert!(matches!(
        store.txn(twice).await,
        Err(StoreError::InvalidTxn(_))
    ));
    let empty_key = Txn::new().put("", "1");
    assert!(matches!(
        store.txn(empty_key).await,
        Err(StoreError::InvalidTxn(_))
    ));
    let huge = Txn::new().put("a", vec![0u8; MAX_VALUE_BYTES + 1]);
    assert!(matches!(
        store.txn(huge).await,
        Err(StoreError::TooLarge { .. })
    ));
    // etcd's default --max-txn-ops: refused alike by both backends, with
    // nothing written; the limit itself is accepted.
    let mut many = Txn::new();
    for i in 0..=causeway_store::MAX_TXN_OPS {
        many = many.put(format!("many/{i}"), "1");
    }
    assert!(matches!(
        store.txn(many).await,
        Err(StoreError::TooManyOps {
            count: 129,
            max: 128,
            ..
        })
    ));
    assert!(store.list("many/").await.unwrap().kvs.is_empty());
    let mut compares = Txn::new().put("c", "1");
    for i in 0..=causeway_store::MAX_TXN_OPS {
        compares = compares.when(causeway_store::Compare::Absent(format!("x/{i}")));
    }
    assert!(matches!(
        store.txn(compares).await,
        Err(StoreError::TooManyOps {
            what: "compares",
            ..
        })
    ));
    let mut at_limit = Txn::new();
    for i in 0..causeway_store::MAX_TXN_OPS {
        at_limit = at_limit.put(format!("many/{i}"), "1");
    }
    assert!(store.txn(at_limit).await.unwrap().applied);
    assert_eq!(
        store.list("many/").await.unwrap().kvs.len(),
        causeway_store::MAX_TXN_OPS
    );
    let unknown_lease = Txn::new().put_with_lease("a", "1", causeway_store::LeaseId(0x7777_7777));
    assert!(matches!(
        store.txn(unknown_lease).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(store.get("a").await.unwrap().kv.is_none());
}

pub(crate) async fn list_then_watch_has_no_gap<B: Backend>(b: &mut B) {
    let store = b.store();
    const N: usize = 300;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..N {
                put(&*store, &format!("svc/{i:04}"), format!("v{i}").as_bytes()).await;
            }
        })
    };
    // List while the writer runs, then watch from just after the list.
    while store.list("svc/").await.unwrap().kvs.len() < N / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let list = store.list("svc/").await.unwrap();
    let mut watch = store.watch("svc/", list.revision + 1).await.unwrap();
    let mut seen: BTreeMap<String, i64> = list
        .kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    assert!(seen.values().all(|rev| *rev <= list.revision));
    let mut last = list.revision;
    while seen.len() < N {
        let event = next_event(&mut watch).await;
        assert!(
            event.revision() > last,
            "events in revision order, none twice"
        );
        last = event.revision();
        let WatchEvent::Put(kv) = event else {
            panic!("unexpected delete");
        };
        assert!(seen.insert(kv.key, kv.mod_revision).is_none(), "seen twice");
    }
    writer.await.unwrap();
    assert_eq!(seen.len(), N);
}

pub(crate) async fn watch_from_compacted_revision_fails<B: Backend>(b: &mut B) {
    let store = b.store();
    let first = put(&*store, "k", b"1").await;
    put(&*store, "k", b"2").await;
    let last = put(&*store, "k", b"3").await;
    store.compact(last).await.unwrap();
    let mut watch = store.watch("", first).await.unwrap();
    let item = tokio::time::timeout(EVENT_TIMEOUT, watch.next())
        .await
        .expect("no answer in time")
        .expect("the watch must say why it ends");
    match item {
        Err(StoreError::Compacted { compacted, .. }) => assert!(compacted > first),
        other => panic!("expected Compacted, got {other:?}"),
    }
    // From the compaction point on, watching works.
    let mut watch = store.watch("", last).await.unwrap();
    assert_eq!(next_event(&mut watch).await.revision(), last);
}

pub(crate) async fn lease_expiry_deletes_keys_and_watchers_see_it<B: Backend>(b: &mut B) {
    let store = b.store();
    let lease = store.grant(Duration::from_secs(1)).await.unwrap();
    assert!(lease.ttl >= Duration::from_secs(1));
    let rev = store
        .txn(Txn::new().put_with_lease("gateways/east-1", "alive", lease.id))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap();
    assert_eq!(
        store
            .get("gateways/east-1")
            .await
            .unwrap()
            .kv
            .unwrap()
            .lease,
        Some(lease.id)
    );
    let mut watch = store.watch("gateways/", rev + 1).await.unwrap();
    // Not kept alive: etcd ends it within its TTL plus its expiry check.
    match next_event(&mut watch).await {
        WatchEvent::Delete { key, revision } => {
            assert_eq!(key, "gateways/east-1");
            assert!(revision > rev);
        }
        other => panic!("expected the lease's delete, got {other:?}"),
    }
    assert!(store.get("gateways/east-1").await.unwrap().kv.is_none());
    assert!(matches!(
        store.keep_alive_once(lease.id).await,
        Err(StoreError::LeaseNotFound(_))
    ));
    assert!(matches!(
        store
            .txn(Txn::new().put_with_lease("gateways/east-1", "x", lease.id))
            .await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

pub(crate) async fn keep_alive_holds_a_lease_and_revoke_ends_it<B: Backend>(b: &mut B) {
    let store = b.store();
    // 2 s rather than etcd's minimum of 1: a keep-alive every 2/3 s must
    // not miss its window on a loaded test machine.
    let lease = store.grant(Duration::from_secs(2)).await.unwrap();
    let keep = KeepAlive::spawn(store.clone(), lease.id, lease.ttl);
    store
        .txn(Txn::new().put_with_lease("gateways/west-1", "alive", lease.id))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap();
    tokio::time::sleep(lease.ttl * 2).await;
    assert!(!keep.is_lost());
    assert!(store.get("gateways/west-1").await.unwrap().kv.is_some());

    let rev = store.get("x").await.unwrap().revision;
    let mut watch = store.watch("gateways/", rev + 1).await.unwrap();
    store.revoke(lease.id).await.unwrap();
    assert!(matches!(
        next_event(&mut watch).await,
        WatchEvent::Delete { .. }
    ));
    assert!(store.get("gateways/west-1").await.unwrap().kv.is_none());
    let lost = tokio::time::timeout(EVENT_TIMEOUT, keep.lost())
        .await
        .unwrap();
    assert_eq!(lost, LeaseLost::Expired);
    assert!(matches!(
        store.revoke(lease.id).await,
        Err(StoreError::LeaseNotFound(_))
    ));
}

pub(crate) async fn election_hands_over_on_resign<B: Backend>(b: &mut B) {
    let store = b.store();
    let election = Election::new(store.clone(), "controller");
    assert_eq!(election.observe().await.unwrap(), None);
    let a = election
        .campaign("replica-a", Duration::from_secs(3))
        .await
        .unwrap();
    let leader = election.observe().await.unwrap().unwrap();
    assert_eq!(
        (leader.value.as_slice(), leader.token),
        (&b"replica-a"[..], a.token())
    );

    let b_task = {
        let election = election.clone();
        tokio::spawn(async move { election.campaign("replica-b", Duration::from_secs(3)).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b_task.is_finished(), "b must wait while a leads");

    // Writes fenced by the leader's token apply.
    let fenced = |fence: Compare, v: &str| Txn::new().when(fence).put("derived/state", v);
    assert!(store.txn(fenced(a.fence(), "by-a")).await.unwrap().applied);

    let a_fence = a.fence();
    let a_token = a.token();
    a.resign().await.unwrap();
    let b = tokio::time::timeout(EVENT_TIMEOUT, b_task)
        .await
        .expect("b not elected in time")
        .unwrap()
        .unwrap();
    assert!(b.token() > a_token, "fencing tokens grow");
    assert_eq!(
        election.observe().await.unwrap().unwrap().value,
        b"replica-b"
    );
    // The old leader's fenced write fails; the new one's applies.
    assert!(!store.txn(fenced(a_fence, "late-a")).await.unwrap().applied);
    assert!(store.txn(fenced(b.fence(), "by-b")).await.unwrap().applied);
    assert_eq!(
        store.get("derived/state").await.unwrap().kv.unwrap().value,
        b"by-b"
    );
    assert!(!b.is_lost());
    b.resign().await.unwrap();
    assert_eq!(election.observe().await.unwrap(), None);
}

pub(crate) async fn election_hands_over_on_lease_expiry<B: Backend>(b: &mut B) {
    let store = b.store();
    let election = Election::new(store.clone(), "controller");
    // a's lease is never kept alive: a process that stopped.
    let lease = store.grant(Duration::from_secs(1)).await.unwrap();
    let a = election
        .campaign_with_lease("replica-a", lease.id)
        .await
        .unwrap();
    let b_task = {
        let election = election.clone();
        tokio::spawn(async move { election.campaign("replica-b", Duration::from_secs(3)).await })
    };
    let lost = tokio::time::timeout(EVENT_TIMEOUT, a.lost())
        .await
        .expect("a never learned it lost");
    assert_eq!(lost, LostReason::KeyDeleted);
    assert!(a.is_lost());
    let b = tokio::time::timeout(EVENT_TIMEOUT, b_task)
        .await
        .expect("b not elected in time")
        .unwrap()
        .unwrap();
    assert!(b.token() > a.token());
    let late = Txn::new().when(a.fence()).put("derived/state", "late-a");
    assert!(!store.txn(late).await.unwrap().applied);

    // b keeps its leadership past its TTL (its keep-alive works).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!b.is_lost());
    assert_eq!(election.observe().await.unwrap().unwrap().token, b.token());
    drop(a);
    b.resign().await.unwrap();
}

pub(crate) async fn restart_keeps_data<B: Backend>(b: &mut B) {
    let store = b.store();
    put(&*store, "peers/west", b"west").await;
    put(&*store, "peers/gone", b"gone").await;
    put(&*store, "bundles/big", &vec![7u8; 512 * 1024]).await;
    store
        .txn(Txn::new().delete("peers/gone"))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap();
    let lease = store.grant(Duration::from_secs(30)).await.unwrap();
    store
        .txn(Txn::new().put_with_lease("gateways/g1", "alive", lease.id))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap();
    let before = store.list("").await.unwrap();
    drop(store);

    b.restart().await;
    let store = b.store();
    let after = store.list("").await.unwrap();
    assert!(after.revision >= before.revision, "revisions never go back");
    let keys: Vec<_> = after.kvs.iter().map(|kv| kv.key.as_str()).collect();
    if B::LEASES_SURVIVE_RESTART {
        assert_eq!(keys, ["bundles/big", "gateways/g1", "peers/west"]);
        assert_eq!(after.kvs, before.kvs);
    } else {
        // The previous process's leases ended with it: their keys are
        // deleted at one new revision.
        assert_eq!(keys, ["bundles/big", "peers/west"]);
        assert!(after.revision > before.revision);
        assert!(matches!(
            store.keep_alive_once(lease.id).await,
            Err(StoreError::LeaseNotFound(_))
        ));
    }
    let west = store.get("peers/west").await.unwrap().kv.unwrap();
    let west_before = before.kvs.iter().find(|kv| kv.key == "peers/west").unwrap();
    assert_eq!(&west, west_before);
    let big = store.get("bundles/big").await.unwrap().kv.unwrap();
    assert_eq!(big.value, vec![7u8; 512 * 1024]);
    let next = put(&*store, "peers/west", b"west-2").await;
    assert!(next > after.revision);
}

pub(crate) async fn concurrent_cas_writers_lose_no_update<B: Backend>(b: &mut B) {
    let store = b.store();
    const TASKS: usize = 6;
    const EACH: usize = 15;
    put(&*store, "counter", b"0").await;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..EACH {
                loop {
                    let kv = store.get("counter").await.unwrap().kv.unwrap();
                    let n: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                    let txn = Txn::new()
                        .when(Compare::ModRevision("counter".into(), kv.mod_revision))
                        .put("counter", (n + 1).to_string());
                    if store.txn(txn).await.unwrap().applied {
                        break;
                    }
                    // Another writer got there first: read again.
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let kv = store.get("counter").await.unwrap().kv.unwrap();
    assert_eq!(kv.value, (TASKS * EACH).to_string().as_bytes());
}

pub(crate) async fn big_values<B: Backend>(b: &mut B) {
    let store = b.store();
    let value: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i % 251) as u8).collect();
    for i in 0..3 {
        put(&*store, &format!("big/{i}"), &value).await;
    }
    let list = store.list("big/").await.unwrap();
    assert_eq!(list.kvs.len(), 3);
    assert!(list.kvs.iter().all(|kv| kv.value == value));
    let rev = store.get("x").await.unwrap().revision;
    let mut watch = store.watch("big/", rev + 1).await.unwrap();
    put(&*store, "big/0", &value[1..]).await;
    match next_event(&mut watch).await {
        WatchEvent::Put(kv) => assert_eq!(kv.value, &value[1..]),
        other => panic!("expected a put, got {other:?}"),
    }
}

pub(crate) async fn many_keys<B: Backend>(b: &mut B) {
    let store = b.store();
    const KEYS: usize = 2000;
    for chunk in 0..KEYS / 100 {
        let mut txn = Txn::new();
        for i in chunk * 100..(chunk + 1) * 100 {
            txn = txn.put(
                format!("endpoints/{i:05}"),
                format!("10.0.{}.{}:8080", i / 256, i % 256),
            );
        }
        store.txn(txn).await.unwrap().applied_or_conflict().unwrap();
    }
    let list = store.list("endpoints/").await.unwrap();
    assert_eq!(list.kvs.len(), KEYS);
    assert!(list.kvs.windows(2).all(|w| w[0].key < w[1].key));
    assert_eq!(list.kvs[1234].value, b"10.0.4.210:8080");
    let sub = store.list("endpoints/015").await.unwrap();
    assert_eq!(sub.kvs.len(), 100);
}
