//! `causeway demo`: what Causeway does today, on loopback, in a temp dir.
//!
//! Two organizations (east.acme.example, west.globex.example) each get a CA
//! from `ca init`; they exchange bundles as `bundle export` prints them; an
//! east workload and a west gateway handshake with mTLS over loopback. Then
//! the refusals: an expired SVID, an impostor CA that calls itself east, a
//! trust domain nobody federated with, an identity the gateway does not
//! expect. Exit status 0 only when every outcome is the expected one.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::say;

use anyhow::Context;
use causeway_trust::files::{CaDir, InitOptions};
use causeway_trust::tls::{SvidSource, client_config, server_config};
use causeway_trust::{
    BundleSet, Expected, SharedBundles, SpiffeId, SpiffeVerifier, Svid, TrustBundle, TrustDomain,
    Validity, VerifyError,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const ALPN: &[&[u8]] = &[b"causeway-demo"];

struct Case {
    what: &'static str,
    svid: Svid,
    /// None: accepted; Some(reason): refused with that metric label.
    want: Option<&'static str>,
}

pub(crate) fn run() -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(demo())
}

async fn demo() -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = tempfile::tempdir().context("temp dir")?;
    let east_td = TrustDomain::new("east.acme.example")?;
    let west_td = TrustDomain::new("west.globex.example")?;

    say!("== 1. each organization creates its CA (causeway ca init)");
    let east = CaDir::init(&dir.path().join("east"), &east_td, &InitOptions::default())?;
    let west = CaDir::init(
        &dir.path().join("west"),
        &west_td,
        &InitOptions {
            intermediate: true,
            ..InitOptions::default()
        },
    )?;
    for ca in [&east, &west] {
        say!(
            "   {:<22} signer {:?}, bundle {}",
            ca.config().trust_domain.as_str(),
            ca.config().signer,
            ca.bundle().digest()
        );
    }

    say!("== 2. they exchange bundles out of band (causeway bundle export)");
    let east_doc = east.bundle().to_json();
    let west_doc = west.bundle().to_json();
    let east_seen_by_west = TrustBundle::from_json(east_td.clone(), east_doc.as_bytes())?;
    let west_seen_by_east = TrustBundle::from_json(west_td.clone(), west_doc.as_bytes())?;
    say!(
        "   west holds east's bundle: digest matches = {}",
        east_seen_by_west.digest() == east.bundle().digest()
    );
    say!(
        "   east holds west's bundle: digest matches = {}",
        west_seen_by_east.digest() == west.bundle().digest()
    );

    say!("== 3. west's gateway listens on loopback with mTLS; east workloads call it");
    let hour = Duration::from_secs(3600);
    let gateway_svid = west.ca().issue_with_new_key(
        &west_td.workload_id("/gateway")?,
        Validity::starting_now(hour),
    )?;
    let west_bundles = SharedBundles::new(BundleSet::from_bundles([
        west.bundle().clone(),
        east_seen_by_west,
    ])?);
    let frontend = east_td.workload_id("/ns/shop/sa/frontend")?;
    let gateway_verifier = Arc::new(SpiffeVerifier::new(
        west_bundles,
        Expected::OneOf {
            ids: vec![frontend.clone()],
            trust_domains: Vec::new(),
        },
    ));
    let server = Arc::new(server_config(
        &SvidSource::new(gateway_svid)?,
        gateway_verifier,
        ALPN,
    )?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    say!("   gateway spiffe://west.globex.example/gateway on {addr}, accepts only {frontend}");

    let impostor_dir = dir.path().join("impostor");
    let impostor = CaDir::init(&impostor_dir, &east_td, &InitOptions::default())?;
    let stranger_td = TrustDomain::new("stranger.example")?;
    let stranger = CaDir::init(
        &dir.path().join("stranger"),
        &stranger_td,
        &InitOptions::default(),
    )?;
    let cases = vec![
        Case {
            what: "east frontend, valid SVID",
            svid: east
                .ca()
                .issue_with_new_key(&frontend, Validity::starting_now(hour))?,
            want: None,
        },
        Case {
            what: "east frontend, SVID expired an hour ago",
            svid: east
                .ca()
                .issue_with_new_key(&frontend, Validity::backdated(hour, 2 * hour))?,
            want: Some("expired"),
        },
        Case {
            what: "impostor CA claiming east's trust domain",
            svid: impostor
                .ca()
                .issue_with_new_key(&frontend, Validity::starting_now(hour))?,
            want: Some("untrusted_chain"),
        },
        Case {
            what: "a trust domain west never federated with",
            svid: stranger.ca().issue_with_new_key(
                &stranger_td.workload_id("/ns/shop/sa/frontend")?,
                Validity::starting_now(hour),
            )?,
            want: Some("unknown_trust_domain"),
        },
        Case {
            what: "east batch job, not an expected caller",
            svid: east.ca().issue_with_new_key(
                &east_td.workload_id("/ns/batch/sa/report")?,
                Validity::starting_now(hour),
            )?,
            want: Some("unexpected_id"),
        },
    ];
    let east_trust = SharedBundles::new(BundleSet::from_bundles([
        east.bundle().clone(),
        west_seen_by_east,
    ])?);

    let mut as_expected = 0;
    for case in &cases {
        let client_verifier = Arc::new(SpiffeVerifier::new(
            east_trust.clone(),
            Expected::ids([west_td.workload_id("/gateway")?]),
        ));
        let client = Arc::new(client_config(
            &SvidSource::new(case.svid.clone())?,
            client_verifier,
            ALPN,
        )?);
        let outcome = probe(&listener, server.clone(), client).await;
        let ok = match (&outcome, case.want) {
            (Ok(_), None) => true,
            (Err(Some(e)), Some(want)) => e.reason() == want,
            _ => false,
        };
        if ok {
            as_expected += 1;
        }
        let mark = if ok { "ok  " } else { "FAIL" };
        match outcome {
            Ok(id) => say!("   {mark} {:<42} accepted as {id}", case.what),
            Err(Some(e)) => say!("   {mark} {:<42} refused [{}]: {e}", case.what, e.reason()),
            Err(None) => say!("   {mark} {:<42} failed without a typed reason", case.what),
        }
    }
    drop(impostor_dir);

    say!("== summary");
    say!(
        "   {as_expected}/{} outcomes as expected in {:.2}s (temp dir removed)",
        cases.len(),
        started.elapsed().as_secs_f64()
    );
    say!("   next: `causeway gateway --config FILE` carries TCP between trust domains over QUIC;");
    say!(
        "   the full demo (controllers, traffic both ways, a root rotation) comes with the controller"
    );
    Ok(if as_expected == cases.len() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One handshake and round trip; the server's view decides: the caller's ID,
/// or the server's typed refusal.
async fn probe(
    listener: &TcpListener,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<SpiffeId, Option<VerifyError>> {
    let addr = listener.local_addr().map_err(|_| None)?;
    let client_side = async move {
        let tcp = TcpStream::connect(addr).await?;
        let name =
            ServerName::try_from("gateway.causeway.invalid").map_err(std::io::Error::other)?;
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        tls.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(())
    };
    let server_side = async {
        let (tcp, _) = listener.accept().await.map_err(|_| None)?;
        let mut tls = TlsAcceptor::from(server)
            .accept(tcp)
            .await
            .map_err(|e| VerifyError::from_io(&e).cloned())?;
        let id =
            causeway_trust::verify::peer_id(tls.get_ref().1.peer_certificates()).ok_or(None)?;
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|_| None)?;
        tls.write_all(b"pong").await.map_err(|_| None)?;
        tls.flush().await.map_err(|_| None)?;
        Ok(id)
    };
    let (_client_result, server_result) = tokio::join!(client_side, server_side);
    server_result
}
