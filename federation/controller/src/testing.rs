//! Test support (feature `testing`): controller configs for a temporary
//! directory on either store, and a minimal gateway-side client that joins
//! with a token, renews and opens the config stream, as a gateway would.

#![allow(clippy::expect_used, reason = "test support fails loudly on misuse")]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use causeway_proto::controller::v1 as pb;
use causeway_trust::tls::SvidSource;
use causeway_trust::{Svid, TrustBundle, TrustDomain};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

pub use causeway_store::testing::EtcdServer;

use crate::client;
use crate::config::{CaSource, ControllerConfig, StoreConfig};
use crate::gateways::gateway_id;
use crate::tokens::Token;

/// A config on port 0 everywhere, its data in `dir`.
pub fn config(
    dir: &Path,
    trust_domain: &str,
    store: StoreConfig,
    svid_ttl: Duration,
) -> ControllerConfig {
    ControllerConfig {
        trust_domain: TrustDomain::new(trust_domain).expect("trust domain"),
        data_dir: dir.to_owned(),
        store,
        api_listen: "127.0.0.1:0".parse().expect("address"),
        admin_socket: dir.join("admin.sock"),
        metrics_listen: Some("127.0.0.1:0".parse().expect("address")),
        federation_listen: Some("127.0.0.1:0".parse().expect("address")),
        svid_ttl,
        join_token_ttl: Duration::from_secs(600),
        ca: CaSource::Store {
            root_ttl: Duration::from_secs(86400),
        },
    }
}

/// A gateway's credentials as the controller issued them.
#[derive(Debug, Clone)]
pub struct Joined {
    pub svid: SvidSource,
    pub own_bundle: TrustBundle,
    pub response: pb::SvidResponse,
}

/// Joins as gateway `name` with `token`, asking for `csr_name`'s ID (the
/// same name, unless a test asks for another one).
pub async fn join(
    api: SocketAddr,
    token: &str,
    csr_name: &str,
    td: &str,
) -> Result<Joined, Status> {
    let pin = Token::parse(token).map(|t| t.pin).unwrap_or_default();
    let td = TrustDomain::new(td).expect("trust domain");
    let tls = client::join_tls(&pin, &td).map_err(|e| Status::internal(e.to_string()))?;
    let mut c = client::gateway(api, tls)
        .await
        .map_err(|e| Status::unavailable(format!("{e:?}")))?;
    let id = gateway_id(&td, csr_name).expect("gateway id");
    let (csr, key) = causeway_trust::ca::new_csr(&id).expect("csr");
    let response = c
        .join(pb::JoinRequest {
            token: token.to_owned(),
            csr_der: csr,
        })
        .await?
        .into_inner();
    credentials(response, key)
}

/// Renews with the current SVID.
pub async fn renew(api: SocketAddr, current: &Joined) -> Result<Joined, Status> {
    let mut c = gateway_client(api, current).await?;
    let (csr, key) = causeway_trust::ca::new_csr(current.svid.svid().spiffe_id()).expect("csr");
    let response = c
        .renew(pb::RenewRequest { csr_der: csr })
        .await?
        .into_inner();
    credentials(response, key)
}

/// A gateway API client over mutual TLS with `current`'s SVID.
pub async fn gateway_client(
    api: SocketAddr,
    current: &Joined,
) -> Result<pb::gateway_api_client::GatewayApiClient<tonic::transport::Channel>, Status> {
    let tls =
        client::svid_tls(&current.svid, current.own_bundle.clone()).map_err(Status::internal)?;
    client::gateway(api, tls)
        .await
        .map_err(|e| Status::unavailable(format!("{e:?}")))
}

fn credentials(
    response: pb::SvidResponse,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<Joined, Status> {
    let chain = response
        .chain_der
        .iter()
        .map(|d| d.clone().into())
        .collect();
    let svid = Svid::new(chain, key).map_err(|e| Status::internal(e.to_string()))?;
    let own = response
        .own_bundle
        .clone()
        .ok_or_else(|| Status::internal("no bundle"))?;
    let td = TrustDomain::new(&own.trust_domain).map_err(|e| Status::internal(e.to_string()))?;
    let own_bundle = TrustBundle::from_json(td, own.document.as_bytes())
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(Joined {
        svid: SvidSource::new(svid).map_err(|e| Status::internal(e.to_string()))?,
        own_bundle,
        response,
    })
}

/// An open config stream: send messages, receive snapshots.
#[derive(Debug)]
pub struct ConfigStream {
    pub tx: mpsc::Sender<pb::GatewayMessage>,
    pub rx: Streaming<pb::ConfigSnapshot>,
}

impl ConfigStream {
    /// Opens the stream and says Hello as `name`.
    pub async fn open(api: SocketAddr, joined: &Joined, name: &str) -> Result<Self, Status> {
        let mut c = gateway_client(api, joined).await?;
        let (tx, rx) = mpsc::channel(8);
        tx.send(pb::GatewayMessage {
            message: Some(pb::gateway_message::Message::Hello(pb::Hello {
                gateway: name.to_owned(),
                version: 0,
                holdings: Some(pb::Holdings {
                    bundles: vec![pb::HeldBundle {
                        trust_domain: joined.own_bundle.trust_domain().to_string(),
                        sequence: joined.own_bundle.sequence().unwrap_or(0),
                        digest: crate::ca::bundle_digest(&joined.own_bundle),
                    }],
                    svid_serial: joined.svid.svid().info().serial.clone(),
                    svid_issuer: String::new(),
                    svid_root: String::new(),
                    svid_expires_unix: joined.response.expires_unix,
                }),
            })),
        })
        .await
        .map_err(|_| Status::internal("stream closed"))?;
        let rx = c.stream_config(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Self { tx, rx })
    }

    /// The next snapshot, within 10 s.
    pub async fn next(&mut self) -> Result<pb::ConfigSnapshot, Status> {
        match tokio::time::timeout(Duration::from_secs(10), self.rx.message()).await {
            Ok(Ok(Some(s))) => Ok(s),
            Ok(Ok(None)) => Err(Status::cancelled("stream ended")),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Status::deadline_exceeded("no snapshot within 10 s")),
        }
    }

    /// Reports holding `bundles` (as a gateway does after applying a
    /// version that changed them) and `joined`'s SVID.
    pub async fn report_holdings(&self, joined: &Joined, bundles: &[pb::Bundle]) {
        let _ = self
            .tx
            .send(pb::GatewayMessage {
                message: Some(pb::gateway_message::Message::Holdings(pb::Holdings {
                    bundles: bundles
                        .iter()
                        .map(|b| pb::HeldBundle {
                            trust_domain: b.trust_domain.clone(),
                            sequence: b.sequence,
                            digest: b.digest.clone(),
                        })
                        .collect(),
                    svid_serial: joined.svid.svid().info().serial.clone(),
                    svid_issuer: String::new(),
                    svid_root: svid_root(joined, bundles),
                    svid_expires_unix: joined.response.expires_unix,
                })),
            })
            .await;
    }

    /// ACKs (empty `error`) or NACKs a version.
    pub async fn ack(&self, version: u64, error: &str) {
        let _ = self
            .tx
            .send(pb::GatewayMessage {
                message: Some(pb::gateway_message::Message::Ack(pb::Ack {
                    version,
                    error: error.to_owned(),
                })),
            })
            .await;
    }
}

/// SHA-256 (hex) of the root of the own bundle among `bundles` that
/// `joined`'s SVID chains to, as a gateway reports it.
pub fn svid_root(joined: &Joined, bundles: &[pb::Bundle]) -> String {
    let svid = joined.svid.svid();
    let td = svid.spiffe_id().trust_domain();
    bundles
        .iter()
        .find(|b| b.trust_domain == td.as_str())
        .and_then(|b| TrustBundle::from_json(td.clone(), b.document.as_bytes()).ok())
        .and_then(|b| {
            causeway_trust::verify::issuing_root(svid.chain(), &b)
                .map(|r| causeway_trust::hash::sha256_hex(r))
        })
        .unwrap_or_default()
}

/// The text of `GET /metrics` at `addr` (a controller's metrics listener).
pub async fn scrape(addr: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut text = String::new();
    if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await
        && s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
            .await
            .is_ok()
    {
        let _ = s.read_to_string(&mut text).await;
    }
    text
}

/// The value of one sample (`name{labels}` as exposed) in `text`; 0 when
/// absent.
pub fn sample(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}
