//! The two quinn endpoints: TLS 1.3 (ring) with a self-signed certificate
//! for `localhost`, on 127.0.0.1 with a port from the OS, one transport
//! configuration for both.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Where both endpoints bind: loopback, any port.
pub(crate) const BIND: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
pub(crate) const SERVER_NAME: &str = "localhost";

/// The certificate and key the server presents.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    pub(crate) fn self_signed() -> anyhow::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])
            .context("self-signed certificate")?;
        Ok(Self {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        })
    }
}

/// Same limits on both sides: enough streams that 32 (or more) callers
/// never wait for stream credit, uni streams for HTTP/3's control and
/// QPACK streams, keep-alives so a connection idle while the other
/// variants run stays up.
fn transport() -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(1024));
    t.max_concurrent_uni_streams(VarInt::from_u32(16));
    t.keep_alive_interval(Some(Duration::from_secs(5)));
    t.max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(60_000))));
    Arc::new(t)
}

/// The server endpoint, offering every ALPN in `alpns`. Call inside the
/// server's runtime.
pub(crate) fn server(identity: &Identity, alpns: &[&[u8]]) -> anyhow::Result<quinn::Endpoint> {
    let mut tls = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_no_client_auth()
        .with_single_cert(
            vec![identity.cert.clone()],
            PrivateKeyDer::Pkcs8(identity.key.clone_key()),
        )
        .context("server TLS config")?;
    tls.alpn_protocols = alpns.iter().map(|a| a.to_vec()).collect();
    let crypto = QuicServerConfig::try_from(tls).context("QUIC server TLS")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    quinn::Endpoint::server(config, BIND).context("server endpoint")
}

/// The client endpoint. Call inside the client's runtime.
pub(crate) fn client() -> anyhow::Result<quinn::Endpoint> {
    quinn::Endpoint::client(BIND).context("client endpoint")
}

/// A client configuration trusting `cert` and asking for `alpn`.
pub(crate) fn client_config(
    cert: &CertificateDer<'static>,
    alpn: &[u8],
) -> anyhow::Result<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.clone())
        .context("trusting the server cert")?;
    let mut tls = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    let crypto = QuicClientConfig::try_from(tls).context("QUIC client TLS")?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// The ALPN the client of a connection asked for.
pub(crate) fn alpn_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}
