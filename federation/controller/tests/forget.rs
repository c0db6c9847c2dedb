#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! `ForgetGateway` in process: a gateway that stopped (no stream) keeps
//! `bundles verify` out of sync until it is forgotten; then its SVIDs (the
//! last one and an older one) are refused by Renew, with the reason
//! counted, and by the config stream; a Join with a new token for the name
//! adds it again. Forgetting a connected gateway, an unknown name or a bad
//! name is refused.

use std::time::Duration;

use causeway_controller::Running;
use causeway_controller::testing::{self, ConfigStream, Joined};
use causeway_proto::controller::v1 as pb;
use tempfile::TempDir;
use tonic::Code;

mod common;

use common::*;

async fn join(c: &Running, name: &str) -> Joined {
    join_with_token(c, EAST, name).await
}

async fn forget(c: &Running, name: &str) -> Result<pb::ForgetGatewayResponse, tonic::Status> {
    admin(c)
        .await
        .forget_gateway(pb::ForgetGatewayRequest {
            name: name.into(),
            forgotten_by: "test@forget".into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn names(c: &Running) -> Vec<String> {
    gateways(c).await.into_iter().map(|g| g.name).collect()
}

async fn refused_forgotten(c: &Running) -> f64 {
    testing::sample(
        &testing::scrape(c.metrics.unwrap()).await,
        "causeway_controller_svids_refused_total{kind=\"renew\",reason=\"forgotten\"}",
    )
}

fn serial(j: &Joined) -> String {
    j.svid.svid().info().serial.clone()
}

#[tokio::test]
async fn a_forgotten_gateway_stops_counting_and_its_old_svids_stay_refused_after_a_new_join() {
    let dir = TempDir::new().unwrap();
    let c = start(dir.path(), EAST).await;
    let scrape = testing::scrape(c.metrics.unwrap()).await;
    assert!(
        scrape.contains(
            "causeway_controller_svids_refused_total{kind=\"renew\",reason=\"forgotten\"} 0"
        ),
        "the series exists from the start"
    );
    // Joined, renewed once (it still holds the first SVID too), stopped:
    // nobody vouches for it. (The first SVID from an earlier second than
    // the forget: unnamed SVIDs are refused when issued before it.)
    let first = join(&c, "east-1").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let last = testing::renew(c.api, &first).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || !verify(&c).await.in_sync).await,
        "{:?}",
        verify(&c).await
    );
    let r = verify(&c).await;
    assert!(
        r.parties
            .iter()
            .any(|p| p.name == "east-1" && !p.in_sync && p.problem == "not connected"),
        "{r:?}"
    );

    let forgot = forget(&c, "east-1").await.unwrap();
    assert_eq!(forgot.name, "east-1");
    assert_eq!(
        forgot.spiffe_id,
        format!("spiffe://{EAST}/causeway/gateway/east-1")
    );
    assert_eq!(forgot.svid_serials, [serial(&last)]);
    assert!(forgot.rotation_paused.is_empty());
    let r = verify(&c).await;
    assert!(r.in_sync && r.parties.is_empty(), "{r:?}");
    assert!(names(&c).await.is_empty());
    let tombstone = c.store().get("forgotten/east-1").await.unwrap().kv;
    assert!(tombstone.is_some());

    // Its last SVID and the older one: Renew refused, counted; the config
    // stream refused.
    for held in [&last, &first] {
        let e = testing::renew(c.api, held).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert!(
            e.message().contains("east-1 was forgotten") && e.message().contains("test@forget"),
            "{e:?}"
        );
    }
    assert_eq!(refused_forgotten(&c).await, 2.0);
    let e = ConfigStream::open(c.api, &last, "east-1")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("forgotten"), "{e:?}");
    assert!(
        names(&c).await.is_empty(),
        "a refused gateway does not come back"
    );
    let e = forget(&c, "east-1").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("already forgotten"), "{e:?}");

    // Added again on purpose: a new token joins; the new SVID renews and
    // streams, while the old machine's SVIDs stay refused (the tombstone
    // stays until they have expired).
    let again = join(&c, "east-1").await;
    assert!(
        c.store()
            .get("forgotten/east-1")
            .await
            .unwrap()
            .kv
            .is_some()
    );
    for held in [&last, &first] {
        let e = testing::renew(c.api, held).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    }
    assert_eq!(refused_forgotten(&c).await, 4.0);
    let renewed = testing::renew(c.api, &again).await.unwrap();
    let mut stream = ConfigStream::open(c.api, &renewed, "east-1").await.unwrap();
    stream.next().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), async || verify(&c).await.in_sync
            && names(&c).await == ["east-1"])
        .await,
        "{:?}",
        verify(&c).await
    );
    assert_eq!(refused_forgotten(&c).await, 4.0);
    // Forgotten again: the new tombstone covers the re-joined SVIDs too.
    drop(stream);
    assert!(
        eventually(Duration::from_secs(10), async || forget(&c, "east-1")
            .await
            .is_ok())
        .await
    );
    let e = testing::renew(c.api, &renewed).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    c.shutdown().await;
}

#[tokio::test]
async fn forgetting_a_connected_unknown_or_misnamed_gateway_is_refused() {
    let dir = TempDir::new().unwrap();
    let c = start(dir.path(), EAST).await;
    let joined = join(&c, "east-2").await;
    let mut stream = ConfigStream::open(c.api, &joined, "east-2").await.unwrap();
    stream.next().await.unwrap();
    until_in_sync(&c, Duration::from_secs(10)).await;
    let e = forget(&c, "east-2").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .starts_with("east-2 is connected (stream on replica ")
            && e.message().ends_with("); stop it first"),
        "{e:?}"
    );
    // Nothing changed: it renews and is still listed.
    testing::renew(c.api, &joined).await.unwrap();
    assert_eq!(names(&c).await, ["east-2"]);

    let e = forget(&c, "east-9").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("no gateway named \"east-9\""), "{e:?}");
    let e = forget(&c, "Bad Name").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Once its stream ends, it can be forgotten.
    drop(stream);
    assert!(
        eventually(Duration::from_secs(10), async || forget(&c, "east-2")
            .await
            .is_ok())
        .await
    );
    assert!(names(&c).await.is_empty());
    c.shutdown().await;
}
