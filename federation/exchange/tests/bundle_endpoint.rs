#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
//! The SPIFFE bundle endpoint and its client, over real TLS on loopback:
//! what a peer (or a SPIRE server) reads from us, and what we accept from
//! a peer.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use causeway_exchange::fetch::FetchError;
use causeway_exchange::refresh::RefreshEvent;
use causeway_exchange::{BundleEndpoint, PublishedBundle, RefreshPolicy, Refresher, fetch_bundle};
use causeway_trust::testing::TestDomain;
use causeway_trust::tls::SvidSource;
use causeway_trust::{BundleSet, SpiffeId, TrustBundle};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const ENDPOINT_PATH: &str = "/causeway/bundle-endpoint";
const TIMEOUT: Duration = Duration::from_secs(5);

fn anchors(bundle: &TrustBundle) -> BundleSet {
    let mut set = BundleSet::new();
    set.insert(bundle.clone()).unwrap();
    set
}

async fn serve(domain: &TestDomain, published: &PublishedBundle) -> (BundleEndpoint, SvidSource) {
    causeway_trust::tls::install_default_provider();
    let svid = SvidSource::new(domain.svid(ENDPOINT_PATH)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = BundleEndpoint::serve(listener, &svid, published.clone()).unwrap();
    (endpoint, svid)
}

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/interop/spiffe-bundles")
}

#[tokio::test]
async fn a_peer_reads_our_bundle_document_as_spiffe_implementations_write_it() {
    let west = TestDomain::new("west.test");
    let bundle = west
        .bundle()
        .with_sequence(3)
        .with_refresh_hint(Duration::from_secs(30));
    let published = PublishedBundle::new(&bundle);
    let (endpoint, _svid) = serve(&west, &published).await;

    // What our fetcher (a peer controller) gets: the same roots and
    // sequence, authenticated with the bundle it held (sequence 1).
    let held = west.bundle();
    let got = fetch_bundle(
        &endpoint.url(),
        &west.id(ENDPOINT_PATH),
        &anchors(&held),
        &held,
        TIMEOUT,
    )
    .await
    .unwrap();
    assert_eq!(got.digest(), bundle.digest());
    assert_eq!(got.sequence(), Some(3));
    assert_eq!(got.refresh_hint(), Some(Duration::from_secs(30)));

    // The document itself, member by member, against what go-spiffe's own
    // documents carry (../shared/interop/spiffe-bundles).
    let doc: serde_json::Value = serde_json::from_slice(&published.document()).unwrap();
    assert_eq!(doc["spiffe_sequence"], 3);
    assert_eq!(doc["spiffe_refresh_hint"], 30);
    let ours: Vec<&serde_json::Value> = doc["keys"].as_array().unwrap().iter().collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["use"], "x509-svid");
    assert_eq!(ours[0]["x5c"].as_array().unwrap().len(), 1);
    let members = |k: &serde_json::Value| -> BTreeSet<String> {
        k.as_object().unwrap().keys().cloned().collect()
    };
    let theirs: serde_json::Value = serde_json::from_slice(
        &std::fs::read(interop_dir().join("spiffebundle_valid_1.json")).unwrap(),
    )
    .unwrap();
    let their_x509 = theirs["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["use"] == "x509-svid")
        .unwrap();
    assert_eq!(members(ours[0]), members(their_x509));
    for top in doc.as_object().unwrap().keys() {
        assert!(
            ["keys", "spiffe_sequence", "spiffe_refresh_hint"].contains(&top.as_str()),
            "unexpected member {top}"
        );
    }
    // And our parser reads back what we published.
    let reparsed =
        TrustBundle::from_json(west.trust_domain.clone(), &published.document()).unwrap();
    assert_eq!(reparsed.digest(), bundle.digest());
}

#[tokio::test]
async fn an_endpoint_with_another_id_or_another_root_is_refused() {
    let west = TestDomain::new("west.test");
    let published = PublishedBundle::new(&west.bundle());
    let (endpoint, _svid) = serve(&west, &published).await;
    let held = west.bundle();

    // The right root, the wrong SPIFFE ID expected.
    let other_id = west.id("/causeway/someone-else");
    let e = fetch_bundle(&endpoint.url(), &other_id, &anchors(&held), &held, TIMEOUT)
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::Refused { .. }), "{e}");
    assert_eq!(e.reason(), "tls_refused");

    // An impostor: same trust domain name, another root.
    let impostor = TestDomain::new("west.test");
    let theirs = impostor.bundle();
    let e = fetch_bundle(
        &endpoint.url(),
        &west.id(ENDPOINT_PATH),
        &anchors(&theirs),
        &theirs,
        TIMEOUT,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, FetchError::Refused { .. }), "{e}");
}

#[tokio::test]
async fn an_older_document_a_bad_url_and_a_closed_port_are_errors() {
    let west = TestDomain::new("west.test");
    let published = PublishedBundle::new(&west.bundle().with_sequence(1));
    let (endpoint, _svid) = serve(&west, &published).await;
    let held = west.bundle().with_sequence(5);
    let id = west.id(ENDPOINT_PATH);

    let e = fetch_bundle(&endpoint.url(), &id, &anchors(&held), &held, TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::Older {
                got: 1,
                held: 5,
                ..
            }
        ),
        "{e}"
    );

    let url = endpoint.url().replace("https", "http");
    let e = fetch_bundle(&url, &id, &anchors(&held), &held, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "bad_url", "{e}");

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/", closed.local_addr().unwrap());
    drop(closed);
    let e = fetch_bundle(&url, &id, &anchors(&held), &held, TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "connect", "{e}");
}

#[tokio::test]
async fn garbage_and_plain_http_do_not_disturb_the_endpoint() {
    let west = TestDomain::new("west.test");
    let published = PublishedBundle::new(&west.bundle());
    let (endpoint, _svid) = serve(&west, &published).await;
    for junk in [
        &b"\x00\x01garbage\xff"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let mut s = tokio::net::TcpStream::connect(endpoint.local_addr())
            .await
            .unwrap();
        s.write_all(junk).await.unwrap();
        drop(s);
    }
    let held = west.bundle();
    fetch_bundle(
        &endpoint.url(),
        &west.id(ENDPOINT_PATH),
        &anchors(&held),
        &held,
        TIMEOUT,
    )
    .await
    .unwrap();
}

/// A peer's root rotation reaches us through the endpoint alone: the old
/// root authenticates the bundle with both roots, which authenticates the
/// endpoint once it presents an SVID of the new root, which serves the new
/// root alone. No step trusts anything not already held.
#[tokio::test]
async fn a_refresher_follows_a_peer_root_rotation_step_by_step() {
    let old = TestDomain::new("west.test");
    let new = TestDomain::new("west.test");
    let td = old.trust_domain.clone();
    let roots = |ds: &[&TestDomain]| ds.iter().flat_map(|d| d.ca.roots().to_vec()).collect();
    let published =
        PublishedBundle::new(&TrustBundle::new(td.clone(), roots(&[&old])).with_sequence(1));
    let (endpoint, svid) = serve(&old, &published).await;

    let events = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = events.clone();
    let policy = RefreshPolicy {
        min_interval: Duration::from_millis(50),
        default_interval: Duration::from_secs(60),
        first_retry: Duration::from_millis(50),
        ..RefreshPolicy::default()
    };
    let refresher = Refresher::spawn(
        endpoint.url(),
        SpiffeId::new(&format!("spiffe://west.test{ENDPOINT_PATH}")).unwrap(),
        TrustBundle::new(td.clone(), roots(&[&old])).with_sequence(1),
        None,
        policy,
        move |e| {
            seen.lock().unwrap().push(match e {
                RefreshEvent::Updated(b) => format!("updated {:?}", b.sequence()),
                RefreshEvent::Unchanged => "unchanged".to_owned(),
                RefreshEvent::Failed(e) => format!("failed {}", e.reason()),
            });
        },
    );
    let mut rx = refresher.subscribe();
    let wait_for = |rx: &mut tokio::sync::watch::Receiver<TrustBundle>, seq: u64| {
        let mut rx = rx.clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                rx.wait_for(|b| b.sequence() == Some(seq)),
            )
            .await
            .expect("the refresher did not reach the sequence in time")
            .unwrap()
            .clone()
        }
    };

    // Step 2 of a rotation: both roots, next sequence.
    published.publish(&TrustBundle::new(td.clone(), roots(&[&old, &new])).with_sequence(2));
    refresher.refresh_now();
    let both = wait_for(&mut rx, 2).await;
    assert_eq!(both.x509_authorities().len(), 2);

    // Step 4-5: the endpoint's SVID now comes from the new root and the
    // bundle holds the new root alone.
    svid.replace(new.svid(ENDPOINT_PATH)).unwrap();
    published.publish(&TrustBundle::new(td.clone(), roots(&[&new])).with_sequence(3));
    refresher.refresh_now();
    let last = wait_for(&mut rx, 3).await;
    assert_eq!(last.x509_authorities(), new.ca.roots());
    assert_eq!(refresher.current().sequence(), Some(3));
    let log = events.lock().unwrap().clone();
    assert!(log.contains(&"updated Some(2)".to_owned()), "{log:?}");
    assert!(log.contains(&"updated Some(3)".to_owned()), "{log:?}");
}

/// A bundle that drops the root of the endpoint's own certificate (a peer
/// that published its old root alone after its SVID moved to the new one)
/// is refused: holding it would refuse every later fetch, and the peer's
/// correct next bundle could never reach us. The held bundle stays, and
/// the correct bundle is taken once served.
#[tokio::test]
async fn a_bundle_that_would_refuse_its_own_endpoint_is_not_taken() {
    let old = TestDomain::new("west.test");
    let new = TestDomain::new("west.test");
    let td = old.trust_domain.clone();
    let roots = |ds: &[&TestDomain]| ds.iter().flat_map(|d| d.ca.roots().to_vec()).collect();
    let both = TrustBundle::new(td.clone(), roots(&[&old, &new])).with_sequence(2);
    let published = PublishedBundle::new(&both);
    let (endpoint, svid) = serve(&old, &published).await;
    svid.replace(new.svid(ENDPOINT_PATH)).unwrap();
    let id = SpiffeId::new(&format!("spiffe://west.test{ENDPOINT_PATH}")).unwrap();

    published.publish(&TrustBundle::new(td.clone(), roots(&[&old])).with_sequence(3));
    let e = fetch_bundle(&endpoint.url(), &id, &anchors(&both), &both, TIMEOUT)
        .await
        .expect_err("the old root alone does not verify the endpoint");
    assert_eq!(e.reason(), "cuts_off_endpoint", "{e}");
    let text = e.to_string();
    assert!(
        text.contains("sequence 3") && text.contains("the bundle held stays"),
        "{text}"
    );

    let refresher = Refresher::spawn(
        endpoint.url(),
        id.clone(),
        both.clone(),
        None,
        RefreshPolicy {
            min_interval: Duration::from_millis(20),
            first_retry: Duration::from_millis(20),
            ..RefreshPolicy::default()
        },
        |_| {},
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(refresher.current().sequence(), Some(2));

    published.publish(&TrustBundle::new(td.clone(), roots(&[&new])).with_sequence(4));
    refresher.refresh_now();
    let mut rx = refresher.subscribe();
    let last = tokio::time::timeout(
        Duration::from_secs(10),
        rx.wait_for(|b| b.sequence() == Some(4)),
    )
    .await
    .expect("the correct bundle is taken")
    .unwrap()
    .clone();
    assert_eq!(last.x509_authorities(), new.ca.roots());
}

/// An impostor endpoint (another root under the peer's name) never changes
/// the bundle held; the refresher keeps retrying and reports why.
#[tokio::test]
async fn a_refresher_keeps_the_bundle_held_when_the_endpoint_is_an_impostor() {
    let real = TestDomain::new("west.test");
    let impostor = TestDomain::new("west.test");
    let published = PublishedBundle::new(&impostor.bundle().with_sequence(9));
    let (endpoint, _svid) = serve(&impostor, &published).await;
    let failures = Arc::new(Mutex::new(0_u32));
    let count = failures.clone();
    let held = real.bundle();
    let refresher = Refresher::spawn(
        endpoint.url(),
        real.id(ENDPOINT_PATH),
        held.clone(),
        None,
        RefreshPolicy {
            min_interval: Duration::from_millis(20),
            first_retry: Duration::from_millis(20),
            ..RefreshPolicy::default()
        },
        move |e| {
            if let RefreshEvent::Failed(FetchError::Refused { .. }) = e {
                *count.lock().unwrap() += 1;
            }
        },
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while *failures.lock().unwrap() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("three refused fetches");
    assert_eq!(refresher.current().digest(), held.digest());
}
