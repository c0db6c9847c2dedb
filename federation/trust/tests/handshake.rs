//! Real rustls handshakes over loopback TCP between trust domains with
//! separate CAs: what is accepted, and the typed reason for each refusal.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::sync::Arc;

use std::time::Duration;

use causeway_trust::ca::DEFAULT_ROOT_TTL;
use causeway_trust::testing::TestDomain;
use causeway_trust::tls::{SvidSource, client_config, server_config};
use causeway_trust::{
    Authority, BundleSet, Ca, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Svid, TrustBundle,
    Validity, VerifyError,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const ALPN: &[&[u8]] = &[b"causeway-test"];

/// One side of a handshake: its SVID, the bundles it holds, whom it expects.
struct Side {
    svid: Svid,
    bundles: Vec<TrustBundle>,
    expected: Expected,
}

/// What each side saw: the peer's SPIFFE ID, or the refusal.
#[derive(Debug)]
struct Outcome {
    server_saw: Result<SpiffeId, Refusal>,
    client_saw: Result<SpiffeId, Refusal>,
}

#[derive(Debug)]
enum Refusal {
    /// Refused by our own verifier, with its typed reason.
    Verify(VerifyError),
    /// Failed for another reason (the peer's alert, I/O).
    Other(String),
}

impl Refusal {
    fn from_io(e: std::io::Error) -> Self {
        match VerifyError::from_io(&e) {
            Some(v) => Self::Verify(v.clone()),
            None => Self::Other(e.to_string()),
        }
    }
    fn verify(&self) -> &VerifyError {
        match self {
            Self::Verify(v) => v,
            Self::Other(o) => panic!("expected a typed refusal, got {o}"),
        }
    }
}

fn verifier(side: &Side) -> Arc<SpiffeVerifier> {
    let set = BundleSet::from_bundles(side.bundles.clone()).unwrap();
    Arc::new(SpiffeVerifier::new(
        SharedBundles::new(set),
        side.expected.clone(),
    ))
}

async fn handshake(server: &Side, client: &Side) -> Outcome {
    let s_cfg = server_config(
        &SvidSource::new(server.svid.clone()).unwrap(),
        verifier(server),
        ALPN,
    )
    .unwrap();
    let c_cfg = client_config(
        &SvidSource::new(client.svid.clone()).unwrap(),
        verifier(client),
        ALPN,
    )
    .unwrap();
    handshake_with(Arc::new(s_cfg), Arc::new(c_cfg)).await
}

async fn handshake_with(
    s_cfg: Arc<rustls::ServerConfig>,
    c_cfg: Arc<rustls::ClientConfig>,
) -> Outcome {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match TlsAcceptor::from(s_cfg).accept(tcp).await {
            Ok(mut tls) => {
                let id = causeway_trust::verify::peer_id(tls.get_ref().1.peer_certificates());
                // Echo one byte so that the client learns of success.
                let mut b = [0u8; 1];
                if tls.read_exact(&mut b).await.is_ok() {
                    let _ = tls.write_all(&b).await;
                    let _ = tls.flush().await;
                }
                Ok(id.expect("accepted peer has an ID"))
            }
            Err(e) => Err(Refusal::from_io(e)),
        }
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("gateway.causeway.invalid").unwrap();
    let client_saw = match TlsConnector::from(c_cfg).connect(name, tcp).await {
        Ok(mut tls) => {
            let id = causeway_trust::verify::peer_id(tls.get_ref().1.peer_certificates());
            // In TLS 1.3 the server checks the client's certificate after the
            // client has finished; a round trip shows whether it accepted.
            let mut b = [0u8; 1];
            let rt = async {
                tls.write_all(b"x").await?;
                tls.flush().await?;
                tls.read_exact(&mut b).await
            };
            match rt.await {
                Ok(_) => Ok(id.expect("accepted peer has an ID")),
                Err(e) => Err(Refusal::from_io(e)),
            }
        }
        Err(e) => Err(Refusal::from_io(e)),
    };
    let server_saw = server.await.unwrap();
    Outcome {
        server_saw,
        client_saw,
    }
}

struct World {
    east: TestDomain,
    west: TestDomain,
}

fn world() -> World {
    World {
        east: TestDomain::new("east.acme.example"),
        west: TestDomain::with_intermediate("west.globex.example"),
    }
}

fn east_client(w: &World, svid: Svid, expected: Expected) -> Side {
    Side {
        svid,
        bundles: vec![w.east.bundle(), w.west.bundle()],
        expected,
    }
}

fn west_server(w: &World, bundles: Vec<TrustBundle>, expected: Expected) -> Side {
    Side {
        svid: w.west.svid("/gateway"),
        bundles,
        expected,
    }
}

#[tokio::test]
async fn accepted_when_each_holds_the_others_bundle() {
    let w = world();
    let client = east_client(
        &w,
        w.east.svid("/ns/shop/sa/frontend"),
        Expected::ids([w.west.id("/gateway")]),
    );
    let server = west_server(
        &w,
        vec![w.west.bundle(), w.east.bundle()],
        Expected::trust_domains([w.east.trust_domain.clone()]),
    );
    let out = handshake(&server, &client).await;
    assert_eq!(out.server_saw.unwrap(), w.east.id("/ns/shop/sa/frontend"));
    assert_eq!(out.client_saw.unwrap(), w.west.id("/gateway"));
}

#[tokio::test]
async fn unknown_trust_domain_is_refused() {
    let w = world();
    let client = east_client(&w, w.east.svid("/frontend"), Expected::AnyKnownDomain);
    // The server holds only its own bundle.
    let server = west_server(&w, vec![w.west.bundle()], Expected::AnyKnownDomain);
    let out = handshake(&server, &client).await;
    let refusal = out.server_saw.unwrap_err();
    match refusal.verify() {
        VerifyError::UnknownTrustDomain { trust_domain, id } => {
            assert_eq!(*trust_domain, w.east.trust_domain);
            assert_eq!(*id, w.east.id("/frontend"));
        }
        other => panic!("wrong refusal: {other}"),
    }
    assert_eq!(refusal.verify().reason(), "unknown_trust_domain");
    assert!(
        out.client_saw.is_err(),
        "client must not see a working connection"
    );
}

#[tokio::test]
async fn expired_certificate_is_refused_with_serial_and_expiry() {
    let w = world();
    let expired = w.east.expired_svid("/frontend");
    let serial = expired.info().serial.clone();
    let not_after = expired.info().not_after;
    let client = east_client(&w, expired, Expected::AnyKnownDomain);
    let server = west_server(
        &w,
        vec![w.west.bundle(), w.east.bundle()],
        Expected::AnyKnownDomain,
    );
    let out = handshake(&server, &client).await;
    let refusal = out.server_saw.unwrap_err();
    match refusal.verify() {
        VerifyError::Expired {
            serial: s,
            not_after: na,
            ..
        } => {
            assert_eq!(*s, serial);
            assert_eq!(*na, not_after);
        }
        other => panic!("wrong refusal: {other}"),
    }
    let msg = refusal.verify().to_string();
    assert!(msg.contains(&serial), "log line names the serial: {msg}");
    assert_eq!(refusal.verify().reason(), "expired");
}

#[tokio::test]
async fn certificate_from_a_root_not_in_the_bundle_is_refused() {
    let w = world();
    // An impostor CA that calls itself east.acme.example.
    let impostor = TestDomain::new("east.acme.example");
    let client = east_client(&w, impostor.svid("/frontend"), Expected::AnyKnownDomain);
    let server = west_server(
        &w,
        vec![w.west.bundle(), w.east.bundle()],
        Expected::AnyKnownDomain,
    );
    let out = handshake(&server, &client).await;
    let refusal = out.server_saw.unwrap_err();
    assert!(
        matches!(refusal.verify(), VerifyError::UntrustedChain { trust_domain, .. } if *trust_domain == w.east.trust_domain),
        "{refusal:?}"
    );
    assert_eq!(refusal.verify().reason(), "untrusted_chain");
}

#[tokio::test]
async fn a_domain_cannot_speak_for_another() {
    // A rogue west root signs a certificate claiming an east identity. The
    // server holds west's real bundle (that rogue root) and east's: the
    // claim is checked against east's bundle, the one its ID names, and fails.
    let w = world();
    let rogue_root = Authority::new_root(&w.west.trust_domain, DEFAULT_ROOT_TTL).unwrap();
    let west_bundle =
        TrustBundle::new(w.west.trust_domain.clone(), vec![rogue_root.cert().clone()]);
    let rogue = Ca::with_root(w.east.trust_domain.clone(), rogue_root);
    let forged = rogue
        .issue_with_new_key(
            &w.east.id("/frontend"),
            Validity::starting_now(Duration::from_secs(600)),
        )
        .unwrap();
    let client = east_client(&w, forged, Expected::AnyKnownDomain);
    let server = west_server(
        &w,
        vec![west_bundle, w.east.bundle()],
        Expected::AnyKnownDomain,
    );
    let out = handshake(&server, &client).await;
    let refusal = out.server_saw.unwrap_err();
    assert!(
        matches!(refusal.verify(), VerifyError::UntrustedChain { trust_domain, .. } if *trust_domain == w.east.trust_domain),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn unexpected_spiffe_id_is_refused_on_both_sides() {
    let w = world();
    // Server side: only spiffe://east.acme.example/payments may call.
    let client = east_client(&w, w.east.svid("/frontend"), Expected::AnyKnownDomain);
    let server = west_server(
        &w,
        vec![w.west.bundle(), w.east.bundle()],
        Expected::ids([w.east.id("/payments")]),
    );
    let out = handshake(&server, &client).await;
    let refusal = out.server_saw.unwrap_err();
    assert!(
        matches!(refusal.verify(), VerifyError::UnexpectedId { id, .. } if *id == w.east.id("/frontend")),
        "{refusal:?}"
    );
    assert_eq!(refusal.verify().reason(), "unexpected_id");

    // Client side: the client dials west's gateway but another west identity answers.
    let client = east_client(
        &w,
        w.east.svid("/frontend"),
        Expected::ids([w.west.id("/gateway-2")]),
    );
    let server = west_server(
        &w,
        vec![w.west.bundle(), w.east.bundle()],
        Expected::AnyKnownDomain,
    );
    let out = handshake(&server, &client).await;
    let refusal = out.client_saw.unwrap_err();
    assert!(
        matches!(refusal.verify(), VerifyError::UnexpectedId { id, .. } if *id == w.west.id("/gateway")),
        "{refusal:?}"
    );
    assert!(out.server_saw.is_err());
}

#[tokio::test]
async fn bundle_with_two_roots_accepts_leaves_from_either() {
    let w = world();
    // east during a rotation: old root and new root in one bundle.
    let new_east = TestDomain::new("east.acme.example");
    let mut both = w.east.bundle();
    both.add_x509_authority(new_east.ca.roots()[0].clone());
    assert_eq!(both.x509_authorities().len(), 2);
    for svid in [w.east.svid("/old"), new_east.svid("/new")] {
        let id = svid.spiffe_id().clone();
        let client = east_client(&w, svid, Expected::AnyKnownDomain);
        let server = west_server(
            &w,
            vec![w.west.bundle(), both.clone()],
            Expected::AnyKnownDomain,
        );
        let out = handshake(&server, &client).await;
        assert_eq!(out.server_saw.unwrap(), id);
    }
    // And with only the old root, the new leaf is refused.
    let client = east_client(&w, new_east.svid("/new"), Expected::AnyKnownDomain);
    let server = west_server(
        &w,
        vec![w.west.bundle(), w.east.bundle()],
        Expected::AnyKnownDomain,
    );
    let out = handshake(&server, &client).await;
    assert_eq!(
        out.server_saw.unwrap_err().verify().reason(),
        "untrusted_chain"
    );
}

#[tokio::test]
async fn new_bundles_and_svids_apply_to_the_next_handshake_without_rebuilding() {
    let w = world();
    let shared = SharedBundles::new(BundleSet::from_bundles([w.west.bundle()]).unwrap());
    let s_verifier = Arc::new(SpiffeVerifier::new(
        shared.clone(),
        Expected::AnyKnownDomain,
    ));
    let s_svid = SvidSource::new(w.west.svid("/gateway")).unwrap();
    let s_cfg = Arc::new(server_config(&s_svid, s_verifier, ALPN).unwrap());
    let c_svid = SvidSource::new(w.east.svid("/frontend")).unwrap();
    let c_cfg = Arc::new(
        client_config(
            &c_svid,
            verifier(&east_client(
                &w,
                w.east.svid("/unused"),
                Expected::AnyKnownDomain,
            )),
            ALPN,
        )
        .unwrap(),
    );

    let out = handshake_with(s_cfg.clone(), c_cfg.clone()).await;
    assert_eq!(
        out.server_saw.unwrap_err().verify().reason(),
        "unknown_trust_domain"
    );

    shared.store(BundleSet::from_bundles([w.west.bundle(), w.east.bundle()]).unwrap());
    let out = handshake_with(s_cfg.clone(), c_cfg.clone()).await;
    assert_eq!(out.server_saw.unwrap(), w.east.id("/frontend"));

    // A renewed client SVID is presented on the next handshake.
    c_svid.replace(w.east.svid("/frontend-renewed")).unwrap();
    let out = handshake_with(s_cfg, c_cfg).await;
    assert_eq!(out.server_saw.unwrap(), w.east.id("/frontend-renewed"));
}
