#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! Root rotation in process: two controllers peered both ways, each with a
//! gateway that follows its config stream the way a real one does (ACK,
//! report what it holds, renew when the snapshot names another issuing
//! root). East rotates; the state machine must refuse while a party is
//! behind, pause (never go on) when a wait times out, resume, abort back to
//! the old root, and complete, each time with west and the gateways
//! holding what they must.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use causeway_controller::Running;
use causeway_controller::testing::{self, ConfigStream, Joined};
use causeway_proto::controller::v1 as pb;
use causeway_trust::{TrustBundle, TrustDomain};
use tempfile::TempDir;
use tokio::task::JoinHandle;

mod common;

use common::*;

/// A gateway as the controller sees one: it ACKs every version, reports
/// holding its bundles, and renews when the snapshot's `svid_root` is not
/// the root its SVID chains to. While `frozen`, it takes nothing in.
struct Gateway {
    frozen: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn gateway(c: &Running, td: &str, name: &str) -> Gateway {
    let joined = join_with_token(c, td, name).await;
    let stream = ConfigStream::open(c.api, &joined, name).await.unwrap();
    let frozen = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(follow(c.api, td.to_owned(), joined, stream, frozen.clone()));
    Gateway { frozen, task }
}

async fn follow(
    api: SocketAddr,
    td: String,
    mut joined: Joined,
    mut stream: ConfigStream,
    frozen: Arc<AtomicBool>,
) {
    let mut last: Option<pb::ConfigSnapshot> = None;
    let mut pending: Option<pb::ConfigSnapshot> = None;
    loop {
        let snap = tokio::select! {
            s = stream.next() => s.ok(),
            () = tokio::time::sleep(Duration::from_millis(200)) => None,
        };
        if snap.is_some() {
            pending = snap;
        }
        if frozen.load(Ordering::Relaxed) {
            continue;
        }
        if let Some(s) = pending.take() {
            stream.ack(s.version, "").await;
            last = Some(s);
        }
        let Some(s) = &last else { continue };
        if !s.svid_root.is_empty() && testing::svid_root(&joined, &s.bundles) != s.svid_root {
            // The controller's certificate chains to the root it issues
            // from: trust what the snapshot holds for our own domain.
            if let Some(own) = s.bundles.iter().find(|b| b.trust_domain == td) {
                joined.own_bundle =
                    TrustBundle::from_json(TrustDomain::new(&td).unwrap(), own.document.as_bytes())
                        .unwrap();
            }
            if let Ok(renewed) = testing::renew(api, &joined).await {
                joined = renewed;
            }
        }
        stream.report_holdings(&joined, &s.bundles).await;
    }
}

async fn start_rotation(
    c: &Running,
    timeout_secs: u64,
) -> Result<pb::RotationResponse, tonic::Status> {
    admin(c)
        .await
        .start_rotation(pb::StartRotationRequest {
            started_by: "test@rotation".into(),
            step_timeout_secs: timeout_secs,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn status(c: &Running) -> pb::RotationResponse {
    admin(c)
        .await
        .rotation_status(pb::RotationStatusRequest { history: 10 })
        .await
        .unwrap()
        .into_inner()
}

/// The published bundle: sequence and roots (as pins).
async fn published(c: &Running) -> (u64, Vec<String>) {
    let doc = admin(c)
        .await
        .export_bundle(pb::ExportBundleRequest {})
        .await
        .unwrap()
        .into_inner()
        .document;
    let b = TrustBundle::from_json(TrustDomain::new(EAST).unwrap(), doc.as_bytes()).unwrap();
    let pins = b
        .x509_authorities()
        .iter()
        .map(|r| causeway_trust::hash::sha256_hex(r))
        .collect();
    (b.sequence().unwrap_or(0), pins)
}

async fn finished(c: &Running, within: Duration) -> pb::Rotation {
    assert!(
        eventually(within, async || status(c).await.current.is_none()).await,
        "the rotation did not finish: {:?}",
        status(c).await.current
    );
    status(c).await.history.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_refuses_pauses_resumes_aborts_and_completes() {
    let Pair { east, west, _dirs } = peered_pair().await;
    let east_gw = gateway(&east, EAST, "east-1").await;
    let west_gw = gateway(&west, WEST, "west-1").await;
    assert!(
        eventually(Duration::from_secs(15), async || verify(&east)
            .await
            .in_sync
            && verify(&west).await.in_sync)
        .await,
        "{:?}",
        verify(&east).await
    );
    let (seq0, roots0) = published(&east).await;
    assert_eq!(roots0.len(), 1);
    let old_root = roots0[0].clone();

    // 1. A party behind: the start is refused with the report, nothing
    //    changes, and the refusal is in the history.
    // West's gateway goes away: nobody can vouch for what it holds.
    drop(west_gw);
    assert!(
        eventually(Duration::from_secs(15), async || !verify(&east)
            .await
            .in_sync)
        .await,
        "west's gateway gone must show at east"
    );
    let refused = start_rotation(&east, 60).await.unwrap();
    let report = refused.refused.expect("refused with the report");
    assert!(!report.in_sync);
    assert!(
        report
            .parties
            .iter()
            .any(|p| !p.in_sync && p.kind == "peer_gateway" && p.name == "west-1"),
        "{report:?}"
    );
    assert_eq!(published(&east).await, (seq0, roots0.clone()));
    assert!(status(&east).await.current.is_none());
    assert_eq!(status(&east).await.history[0].outcome, "refused");

    // West's gateway comes back (joins again under its name).
    let west_gw = gateway(&west, WEST, "west-1").await;
    until_in_sync(&east, Duration::from_secs(15)).await;

    // 2. A wait that times out pauses, naming who is behind, and never
    //    goes on; resume goes on once the party is back.
    west_gw.frozen.store(true, Ordering::Relaxed);
    let started = start_rotation(&east, 2).await.unwrap();
    let current = started.current.expect("started");
    assert_eq!(current.step, "publish_both");
    let new_root = current.to_root.clone();
    assert!(
        eventually(Duration::from_secs(15), async || status(&east)
            .await
            .current
            .is_some_and(|r| !r.paused.is_empty()))
        .await,
        "{:?}",
        status(&east).await
    );
    let paused = status(&east).await.current.unwrap();
    assert_eq!(paused.step, "await_both");
    assert!(paused.paused.contains("west-1"), "{}", paused.paused);
    // Both roots are published, the old one still issues.
    let (seq1, roots1) = published(&east).await;
    assert_eq!(seq1, seq0 + 1);
    assert!(roots1.contains(&old_root) && roots1.contains(&new_root));
    assert_eq!(east.ca.current().pin, old_root);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(status(&east).await.current.unwrap().step, "await_both");

    // 3. Abort while paused: back to the old root only.
    west_gw.frozen.store(false, Ordering::Relaxed);
    let aborted = admin(&east)
        .await
        .abort_rotation(pb::AbortRotationRequest {
            aborted_by: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .current
        .unwrap();
    assert_eq!(aborted.target, "old");
    let done = finished(&east, Duration::from_secs(30)).await;
    assert_eq!(done.outcome, "aborted");
    let (seq2, roots2) = published(&east).await;
    assert_eq!((seq2, roots2), (seq0 + 2, vec![old_root.clone()]));
    assert_eq!(east.ca.current().pin, old_root);
    until_in_sync(&east, Duration::from_secs(15)).await;

    // 4. A full rotation: paused while west's gateway lags, resumed once
    //    it is back; completes, every step recorded with its time.
    west_gw.frozen.store(true, Ordering::Relaxed);
    let started = start_rotation(&east, 2).await.unwrap();
    let new_root = started.current.unwrap().to_root;
    assert!(
        eventually(Duration::from_secs(15), async || status(&east)
            .await
            .current
            .is_some_and(|r| !r.paused.is_empty()))
        .await
    );
    west_gw.frozen.store(false, Ordering::Relaxed);
    let resumed = admin(&east)
        .await
        .resume_rotation(pb::ResumeRotationRequest {
            resumed_by: "test".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .current
        .unwrap();
    assert!(resumed.paused.is_empty());
    let done = finished(&east, Duration::from_secs(60)).await;
    assert_eq!(done.outcome, "completed", "{done:?}");
    let steps: Vec<&str> = done.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "verify",
            "publish_both",
            "await_both",
            "await_both",
            "issue",
            "await_svids",
            "publish_final",
            "await_final"
        ]
    );
    assert!(
        done.steps
            .iter()
            .all(|s| s.finished_unix_ms >= s.started_unix_ms)
    );
    assert_eq!(done.started_by, "test@rotation");
    let (seq3, roots3) = published(&east).await;
    assert_eq!((seq3, &roots3), (seq2 + 2, &vec![new_root.clone()]));
    assert_eq!(done.sequence_after, seq3);
    assert_eq!(east.ca.current().pin, new_root);
    // Everyone holds the new-only bundle, the gateway's SVID chains to the
    // new root, and west's controller still talks to east (its SVID was
    // reissued from the new root).
    assert!(
        eventually(Duration::from_secs(15), async || verify(&east)
            .await
            .in_sync
            && verify(&west).await.in_sync)
        .await,
        "{:?} / {:?}",
        verify(&east).await,
        verify(&west).await
    );
    drop(east_gw);
    drop(west_gw);
    east.shutdown().await;
    west.shutdown().await;
}

/// Two replicas on one etcd: a rotation started at the replica that does
/// not lead is driven by the leader, and both replicas end issuing from the
/// new root (the gateway renews at the one that does not lead). Then the
/// leader stops in the middle of a second rotation's wait: the other
/// replica takes it up at the same step and completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_survives_its_leader_and_switches_every_replica() {
    let dir = TempDir::new().unwrap();
    let etcd = testing::EtcdServer::start(&dir.path().join("etcd"));
    let store = causeway_controller::StoreConfig::Etcd {
        endpoints: vec![etcd.endpoint.clone()],
        prefix: None,
    };
    let config = |name: &str| {
        testing::config(
            &dir.path().join(name),
            EAST,
            store.clone(),
            Duration::from_secs(3600),
        )
    };
    causeway_trust::tls::install_default_provider();
    let a = causeway_controller::start(config("a"), Default::default())
        .await
        .unwrap();
    let b = causeway_controller::start(config("b"), Default::default())
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || a
            .metrics_handle
            .leader
            .get()
            + b.metrics_handle.leader.get()
            == 1)
        .await
    );
    let (leader, other) = if a.metrics_handle.leader.get() == 1 {
        (a, b)
    } else {
        (b, a)
    };
    let gw = gateway(&other, EAST, "east-1").await;
    assert!(
        eventually(Duration::from_secs(10), async || verify(&other)
            .await
            .in_sync)
        .await
    );

    // Both replicas up: both end issuing from the new root, and each one's
    // own SVID chains to it (the rotation waits for their records).
    let started = start_rotation(&other, 60).await.unwrap();
    let first_root = started.current.unwrap().to_root;
    assert_eq!(
        finished(&other, Duration::from_secs(60)).await.outcome,
        "completed"
    );
    assert_eq!(leader.ca.current().pin, first_root);
    assert_eq!(other.ca.current().pin, first_root);

    gw.frozen.store(true, Ordering::Relaxed);
    let started = start_rotation(&other, 60).await.unwrap();
    let new_root = started.current.unwrap().to_root;
    assert!(
        eventually(Duration::from_secs(10), async || status(&other)
            .await
            .current
            .is_some_and(|r| r.step == "await_both" && !r.behind.is_empty()))
        .await,
        "{:?}",
        status(&other).await
    );
    leader.shutdown().await;
    gw.frozen.store(false, Ordering::Relaxed);
    let done = finished(&other, Duration::from_secs(60)).await;
    assert_eq!(done.outcome, "completed", "{done:?}");
    assert_eq!(other.metrics_handle.leader.get(), 1);
    assert_eq!(other.ca.current().pin, new_root);
    let (_, roots) = published(&other).await;
    assert_eq!(roots, [new_root]);
    assert!(
        eventually(Duration::from_secs(10), async || verify(&other)
            .await
            .in_sync)
        .await
    );
    drop(gw);
    other.shutdown().await;
    etcd.kill();
}

/// A gateway that is gone for good (stopped while a rotation waits for it)
/// pauses the rotation; once it is forgotten, resume completes it with the
/// gateway that is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_paused_on_a_gone_gateway_completes_after_forget_and_resume() {
    let dir = TempDir::new().unwrap();
    let east = start(dir.path(), EAST).await;
    let gone = gateway(&east, EAST, "east-1").await;
    let stays = gateway(&east, EAST, "east-2").await;
    until_in_sync(&east, Duration::from_secs(15)).await;
    gone.frozen.store(true, Ordering::Relaxed);
    start_rotation(&east, 1)
        .await
        .unwrap()
        .current
        .expect("started");
    assert!(
        eventually(Duration::from_secs(15), async || status(&east)
            .await
            .current
            .is_some_and(|r| r.paused.contains("east-1")))
        .await,
        "{:?}",
        status(&east).await
    );
    // Its VM is deleted: the stream ends, and resume alone does not help
    // (its SVID has not expired: it must be accounted for).
    drop(gone);
    let connected = async || {
        gateways(&east)
            .await
            .iter()
            .any(|g| g.name == "east-1" && g.connected)
    };
    assert!(eventually(Duration::from_secs(10), async || !connected().await).await);
    let resume = async || {
        admin(&east)
            .await
            .resume_rotation(pb::ResumeRotationRequest {
                resumed_by: "test".into(),
            })
            .await
            .unwrap()
    };
    resume().await;
    assert!(
        eventually(Duration::from_secs(15), async || status(&east)
            .await
            .current
            .is_some_and(|r| r.paused.contains("east-1: not connected")))
        .await,
        "{:?}",
        status(&east).await
    );
    let forgot = eventually(Duration::from_secs(10), async || {
        admin(&east)
            .await
            .forget_gateway(pb::ForgetGatewayRequest {
                name: "east-1".into(),
                forgotten_by: "test".into(),
            })
            .await
            .is_ok_and(|r| !r.into_inner().rotation_paused.is_empty())
    })
    .await;
    assert!(forgot, "{:?}", status(&east).await);
    resume().await;
    let done = finished(&east, Duration::from_secs(30)).await;
    assert_eq!(done.outcome, "completed", "{done:?}");
    until_in_sync(&east, Duration::from_secs(10)).await;
    drop(stays);
    east.shutdown().await;
}
