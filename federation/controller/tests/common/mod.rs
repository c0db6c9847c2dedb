//! Helpers shared by the in-process federation and rotation tests: two
//! controllers on the embedded store, peered both ways by peering files.

#![allow(dead_code, reason = "each test file uses a part")]

use std::path::Path;
use std::time::{Duration, Instant};

use causeway_controller::testing;
use causeway_controller::{RefreshPolicy, Running, StartOptions, StoreConfig, client};
use causeway_proto::controller::v1 as pb;

pub(crate) const EAST: &str = "east.acme.example";
pub(crate) const WEST: &str = "west.globex.example";

pub(crate) async fn start(dir: &Path, td: &str) -> Running {
    causeway_trust::tls::install_default_provider();
    let options = StartOptions {
        // Polls far apart: whatever arrives sooner came by announcement.
        refresh: RefreshPolicy {
            default_interval: Duration::from_secs(600),
            min_interval: Duration::from_secs(600),
            ..RefreshPolicy::default()
        },
        ..StartOptions::default()
    };
    let config = testing::config(dir, td, StoreConfig::Embedded, Duration::from_secs(3600));
    causeway_controller::start(config, options)
        .await
        .expect("controller starts")
}

/// East and west, each in its own data directory (kept while the pair
/// lives), peered both ways.
pub(crate) struct Pair {
    pub(crate) east: Running,
    pub(crate) west: Running,
    pub(crate) _dirs: (tempfile::TempDir, tempfile::TempDir),
}

pub(crate) async fn peered_pair() -> Pair {
    let east_dir = tempfile::TempDir::new().unwrap();
    let west_dir = tempfile::TempDir::new().unwrap();
    let east = start(east_dir.path(), EAST).await;
    let west = start(west_dir.path(), WEST).await;
    peer_with(east_dir.path(), &east, EAST, WEST, &west).await;
    peer_with(west_dir.path(), &west, WEST, EAST, &east).await;
    Pair {
        east,
        west,
        _dirs: (east_dir, west_dir),
    }
}

pub(crate) async fn admin(
    c: &Running,
) -> pb::admin_api_client::AdminApiClient<tonic::transport::Channel> {
    client::admin(&c.admin_socket).await.unwrap()
}

/// The gateways `causeway gateways list` shows.
pub(crate) async fn gateways(c: &Running) -> Vec<pb::GatewayStatus> {
    admin(c)
        .await
        .list_gateways(pb::ListGatewaysRequest {})
        .await
        .unwrap()
        .into_inner()
        .gateways
}

pub(crate) async fn export(c: &Running) -> String {
    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    admin
        .export_bundle(pb::ExportBundleRequest {})
        .await
        .unwrap()
        .into_inner()
        .document
}

/// A Service `local` and a peering with `peer`, whose endpoint is `peer_c`'s
/// public port, exporting `local` to it.
pub(crate) async fn peer_with(dir: &Path, c: &Running, me: &str, peer: &str, peer_c: &Running) {
    let bundle_file = dir.join(format!("{peer}.bundle.json"));
    std::fs::write(&bundle_file, export(peer_c).await).unwrap();
    let name = peer.split('.').next().unwrap();
    let text = format!(
        "apiVersion: causeway.dev/v1alpha1\nkind: Service\nname: local\nspec:\n  ports:\n    \
         - port: 8080\n      protocol: http\n  endpoints: [127.0.0.1:9]\n---\n\
         apiVersion: causeway.dev/v1alpha1\nkind: Peering\nname: {name}\nspec:\n  \
         trustDomain: {peer}\n  bundleEndpoint:\n    url: https://{addr}/\n    \
         spiffeId: spiffe://{peer}/causeway/controller\n  firstBundle:\n    file: {file}\n  \
         gateways:\n    - address: 127.0.0.1:15443\n      id: spiffe://{peer}/causeway/gateway/gw-1\n  \
         exports:\n    - service: local\n      ports: [8080]\n",
        addr = peer_c.federation.unwrap(),
        file = bundle_file.file_name().unwrap().to_str().unwrap(),
    );
    let path = dir.join(format!("peering-{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    let entries = causeway_resources::load_file(&path).unwrap();
    let content = entries
        .iter()
        .map(|e| e.resource.to_yaml().unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    let r = admin
        .apply(pb::ApplyRequest {
            files: vec![pb::ResourceFile {
                name: format!("{me}: {}", path.display()),
                content,
            }],
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.applied, "{r:?}");
}

pub(crate) async fn show(c: &Running, name: &str) -> pb::PeerSummary {
    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    admin
        .show_peer(pb::ShowPeerRequest { name: name.into() })
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap()
}

pub(crate) async fn verify(c: &Running) -> pb::VerifyBundlesResponse {
    let mut admin = client::admin(&c.admin_socket).await.unwrap();
    admin
        .verify_bundles(pb::VerifyBundlesRequest::default())
        .await
        .unwrap()
        .into_inner()
}

pub(crate) fn kinds(r: &pb::VerifyBundlesResponse) -> Vec<(&str, &str)> {
    r.parties
        .iter()
        .map(|p| (p.kind.as_str(), p.name.as_str()))
        .collect()
}

/// Polls `f` every 100 ms until it holds or `within` passes.
pub(crate) async fn eventually<F: AsyncFn() -> bool>(within: Duration, f: F) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A gateway of `td` joined at `c` with a fresh one-time token.
pub(crate) async fn join_with_token(c: &Running, td: &str, name: &str) -> testing::Joined {
    let token = client::admin(&c.admin_socket)
        .await
        .unwrap()
        .create_token(pb::CreateTokenRequest {
            gateway: name.into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    testing::join(c.api, &token, name, td).await.unwrap()
}

/// Waits until `bundles verify` at `c` is in sync, or fails with its report.
pub(crate) async fn until_in_sync(c: &Running, within: Duration) {
    assert!(
        eventually(within, async || verify(c).await.in_sync).await,
        "{:?}",
        verify(c).await
    );
}
