#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! What is the embedded store's own: its directory lock, its file on disk
//! (torn tails, corruption, compaction) and a writer killed with SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use causeway_store::embedded::LOCK_FILE;
use causeway_store::{EmbeddedStore, Store, StoreError, Txn};

const FILE: &str = "causeway.store";

async fn put(store: &EmbeddedStore, key: &str, value: &[u8]) -> i64 {
    store
        .txn(Txn::new().put(key, value))
        .await
        .unwrap()
        .applied_or_conflict()
        .unwrap()
}

/// Opens `dir` once the previous handle's background task has let go.
async fn reopen(dir: &Path) -> Result<EmbeddedStore, StoreError> {
    for _ in 0..100 {
        match EmbeddedStore::open(dir).await {
            Err(StoreError::Locked { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return other,
        }
    }
    EmbeddedStore::open(dir).await
}

#[tokio::test]
async fn a_second_opener_of_the_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    assert!(dir.path().join(LOCK_FILE).exists());
    match EmbeddedStore::open(dir.path()).await {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    put(&store, "k", b"v").await;
    drop(store);
    let again = reopen(dir.path()).await.unwrap();
    assert_eq!(again.get("k").await.unwrap().kv.unwrap().value, b"v");
}

#[tokio::test]
async fn a_torn_tail_is_dropped_and_writing_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    put(&store, "a", b"1").await;
    let last = put(&store, "b", &[9u8; 10_000]).await;
    drop(store);

    let path = dir.path().join(FILE);
    let whole = std::fs::read(&path).unwrap();
    // A record cut short: the first half of a copy of the last record.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&whole[whole.len() - 5_000..whole.len() - 2_500])
        .unwrap();
    drop(file);

    let store = reopen(dir.path()).await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), whole, "the torn tail is cut");
    let read = store.get("b").await.unwrap();
    assert_eq!(read.revision, last);
    assert_eq!(read.kv.unwrap().value, vec![9u8; 10_000]);
    let next = put(&store, "c", b"3").await;
    assert_eq!(next, last + 1);
    drop(store);

    // Zeros after the last record (a file extended but never written).
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&[0u8; 4096]).unwrap();
    drop(file);
    let store = reopen(dir.path()).await.unwrap();
    assert_eq!(store.list("").await.unwrap().kvs.len(), 3);
}

#[tokio::test]
async fn a_corrupt_file_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    put(&store, "a", b"first-value").await;
    put(&store, "b", b"MIDDLE-VALUE").await;
    put(&store, "c", b"last-value").await;
    drop(store);

    let path = dir.path().join(FILE);
    let good = std::fs::read(&path).unwrap();
    let at = good.windows(12).position(|w| w == b"MIDDLE-VALUE").unwrap();
    let mut bad = good.clone();
    bad[at] ^= 0x20;
    std::fs::write(&path, &bad).unwrap();
    match reopen(dir.path()).await {
        Err(e @ StoreError::Corrupt { .. }) => {
            let text = e.to_string();
            assert!(text.contains(FILE) && text.contains("checksum"), "{text}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bad,
        "a corrupt file is left as it is"
    );

    std::fs::write(&path, b"this is not a store file at all").unwrap();
    assert!(matches!(
        reopen(dir.path()).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn the_file_is_compacted_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let big = vec![5u8; 1024 * 1024];
    let mut last = 0;
    for i in 0..12u8 {
        let mut value = big.clone();
        value[0] = i;
        last = put(&store, "bundle", &value).await;
    }
    put(&store, "small", b"s").await;
    let size = std::fs::metadata(dir.path().join(FILE)).unwrap().len();
    assert!(
        size < 7 * 1024 * 1024,
        "12 MiB written, file is {size} bytes"
    );
    drop(store);

    let store = reopen(dir.path()).await.unwrap();
    let kv = store.get("bundle").await.unwrap().kv.unwrap();
    assert_eq!((kv.value[0], kv.value.len()), (11, big.len()));
    assert_eq!(kv.mod_revision, last);
    assert_eq!(store.get("small").await.unwrap().revision, last + 1);
}

/// The writer of `a_killed_writer_loses_no_acknowledged_write`, run in a
/// child process (this same test binary) that the test kills.
#[test]
#[ignore = "run in a child process by a_killed_writer_loses_no_acknowledged_write"]
fn killed_writer_child() {
    let Ok(dir) = std::env::var("CAUSEWAY_STORE_CRASH_DIR") else {
        return;
    };
    let round = std::env::var("CAUSEWAY_STORE_CRASH_ROUND").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = EmbeddedStore::open(&dir).await.unwrap();
        let mut out = std::io::stdout().lock();
        for i in 0u32.. {
            let value = value_of(&round, i);
            put(&store, &format!("{round}/{i:06}"), &value).await;
            writeln!(out, "acked {i}").unwrap();
            out.flush().unwrap();
        }
    });
}

fn value_of(round: &str, i: u32) -> Vec<u8> {
    // Sizes vary so that a kill lands in records of different lengths.
    let len = 100 + (i as usize * 997) % 20_000;
    format!("{round}:{i}:").into_bytes().repeat(len / 8)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for (round, kill_after) in [("r0", 40u32), ("r1", 150), ("r2", 7)] {
        let mut child = Command::new(&exe)
            .args(["killed_writer_child", "--exact", "--ignored", "--nocapture"])
            .env("CAUSEWAY_STORE_CRASH_DIR", dir.path())
            .env("CAUSEWAY_STORE_CRASH_ROUND", round)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The reader is kept open until the kill: a closed pipe would end
        // the writer with an error instead.
        let reading = tokio::task::spawn_blocking(move || {
            let mut acked = None;
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref() {
                let Some(i) = line
                    .unwrap()
                    .strip_prefix("acked ")
                    .map(|n| n.parse::<u32>().unwrap())
                else {
                    continue;
                };
                acked = Some(i);
                if i >= kill_after {
                    break;
                }
            }
            (acked, lines)
        });
        let (acked, lines) = tokio::time::timeout(Duration::from_secs(30), reading)
            .await
            .expect("the writer acknowledged too slowly")
            .unwrap();
        let acked = acked.expect("the writer acknowledged nothing");
        // SIGKILL by its pid, while it is writing the next transactions.
        child.kill().unwrap();
        child.wait().unwrap();
        drop(lines);

        let store = reopen(dir.path()).await.expect("reopen after SIGKILL");
        let list = store.list(&format!("{round}/")).await.unwrap();
        assert!(
            list.kvs.len() as u32 > acked,
            "round {round}: {} keys, {acked} acknowledged",
            list.kvs.len()
        );
        for (i, kv) in list.kvs.iter().enumerate() {
            assert_eq!(kv.key, format!("{round}/{i:06}"));
            assert_eq!(kv.value, value_of(round, i as u32), "{}", kv.key);
        }
        drop(store);
    }
}
