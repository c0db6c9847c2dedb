//! A gRPC upstream and a gRPC transport for the end-to-end tests, around
//! the `causeway.testing.v1.Echo` service (causeway-proto's `testing`
//! feature): one method of each call kind.
//!
//! The upstream serves tonic's generated `EchoServer` on hyper's HTTP/2
//! server directly, not through `tonic::transport::Server`: that server
//! would end a call itself when its `grpc-timeout` runs out, which would
//! hide whether the gateways end it. Here only a reset from the gateway in
//! front ends a call early.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use causeway_proto::testing::v1::echo_server::{Echo, EchoServer};
use causeway_proto::testing::v1::{EchoReply, EchoRequest, Failure};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::codegen::Service;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::{Code, Status, Streaming};

type ReplyStream = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send>>;

/// What the upstream saw of a `ClientStream` call, as it happened.
#[derive(Debug)]
pub(crate) enum Event {
    /// The first request message arrived.
    ClientStreamBegan,
    /// The request stream ended: `Ok` when the caller finished it, `Err`
    /// with the status tonic gave when it was reset or broken.
    ClientStreamEnded {
        at: Instant,
        how: Result<(), Status>,
    },
}

/// The running upstream.
#[derive(Debug)]
pub(crate) struct EchoUpstream {
    pub(crate) addr: SocketAddr,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
}

/// Starts the Echo service on h2c (prior knowledge) on a port of its own.
pub(crate) async fn echo_upstream() -> EchoUpstream {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, events) = mpsc::unbounded_channel();
    let service = EchoServer::new(EchoService { events: tx });
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let service = service.clone();
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let mut service = service.clone();
                service.call(req)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    EchoUpstream { addr, events }
}

#[derive(Debug)]
struct EchoService {
    events: mpsc::UnboundedSender<Event>,
}

fn xfcc<T>(req: &tonic::Request<T>) -> String {
    req.metadata()
        .get("x-forwarded-client-cert")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// The status a [`Failure`] asks for, its metadata in the trailers.
fn status(f: &Failure) -> Status {
    let mut md = MetadataMap::new();
    for (k, v) in &f.metadata {
        md.insert(
            MetadataKey::from_bytes(k.as_bytes()).unwrap(),
            MetadataValue::try_from(v.as_str()).unwrap(),
        );
    }
    Status::with_metadata(Code::from_i32(f.code), f.message.clone(), md)
}

#[tonic::async_trait]
impl Echo for EchoService {
    async fn unary(
        &self,
        req: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        let xfcc = xfcc(&req);
        let req = req.into_inner();
        if let Some(f) = &req.fail {
            return Err(status(f));
        }
        Ok(tonic::Response::new(EchoReply {
            message: req.message,
            index: 0,
            xfcc,
        }))
    }

    type ServerStreamStream = ReplyStream;

    async fn server_stream(
        &self,
        req: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<ReplyStream>, Status> {
        let xfcc = xfcc(&req);
        let req = req.into_inner();
        let failure = req.fail.as_ref().map(status);
        let replies = (0..req.count)
            .map(move |index| {
                Ok(EchoReply {
                    message: format!("{} {index}", req.message),
                    index,
                    xfcc: xfcc.clone(),
                })
            })
            .chain(failure.map(Err));
        Ok(tonic::Response::new(Box::pin(tokio_stream::iter(replies))))
    }

    async fn client_stream(
        &self,
        req: tonic::Request<Streaming<EchoRequest>>,
    ) -> Result<tonic::Response<EchoReply>, Status> {
        let xfcc = xfcc(&req);
        let mut stream = req.into_inner();
        let mut messages = Vec::new();
        let how = loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    if messages.is_empty() {
                        let _ = self.events.send(Event::ClientStreamBegan);
                    }
                    messages.push(m.message);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let _ = self.events.send(Event::ClientStreamEnded {
            at: Instant::now(),
            how: how.clone(),
        });
        how?;
        Ok(tonic::Response::new(EchoReply {
            index: u32::try_from(messages.len()).unwrap(),
            message: messages.join(","),
            xfcc,
        }))
    }

    type BidiStream = ReplyStream;

    async fn bidi(
        &self,
        req: tonic::Request<Streaming<EchoRequest>>,
    ) -> Result<tonic::Response<ReplyStream>, Status> {
        let xfcc = xfcc(&req);
        let mut index = 0;
        let replies = req.into_inner().map(move |m| {
            let reply = EchoReply {
                message: m?.message,
                index,
                xfcc: xfcc.clone(),
            };
            index += 1;
            Ok(reply)
        });
        Ok(tonic::Response::new(Box::pin(replies)))
    }
}

/// Metadata as a map of text values, for comparing in assertions.
pub(crate) fn metadata_text(md: &MetadataMap) -> BTreeMap<String, String> {
    md.clone()
        .into_headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or("<binary>").to_owned(),
            )
        })
        .collect()
}

/// A gRPC transport for tonic's generated clients: one h2c connection
/// (prior knowledge) to `addr`, and nothing else. Unlike tonic's `Channel`,
/// it keeps no timer of its own for `grpc-timeout`, so that what ends a
/// call with a deadline is what is on the other side of the connection.
#[derive(Debug, Clone)]
pub(crate) struct H2Transport(SendRequest<tonic::body::Body>);

impl H2Transport {
    pub(crate) async fn connect(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (tx, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        Self(tx)
    }
}

impl Service<Request<tonic::body::Body>> for H2Transport {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(req))
    }
}
