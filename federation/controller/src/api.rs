//! The gateway API (tonic) over the TLS listener: Join, Renew and the config
//! stream, each handed to the module that does it.

use causeway_proto::controller::v1 as pb;
use causeway_proto::controller::v1::gateway_api_server::GatewayApi;
use tonic::{Request, Response, Status, Streaming};

use crate::issuance::Issuer;
use crate::stream::{Outbound, Streams};
use crate::tls::PeerCerts;

#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) issuer: Issuer,
    pub(crate) streams: Streams,
}

#[tonic::async_trait]
impl GatewayApi for Api {
    async fn join(
        &self,
        req: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::SvidResponse>, Status> {
        self.issuer.join(req.into_inner()).await.map(Response::new)
    }

    async fn renew(
        &self,
        req: Request<pb::RenewRequest>,
    ) -> Result<Response<pb::SvidResponse>, Status> {
        let peer = req.extensions().get::<PeerCerts>().cloned();
        self.issuer
            .renew(peer.as_ref(), req.into_inner())
            .await
            .map(Response::new)
    }

    type StreamConfigStream = Outbound;

    async fn stream_config(
        &self,
        req: Request<Streaming<pb::GatewayMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        let peer = req.extensions().get::<PeerCerts>().cloned();
        self.streams
            .open(peer.as_ref(), req.into_inner())
            .await
            .map(Response::new)
    }
}
