//! A peer's TCP stream that passed the checks: connect a local endpoint of
//! the destination and copy both ways until both sides close.

use causeway_trust::TrustDomain;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::Destination;
use crate::metrics::Direction;
use crate::proxy::inbound::accept::{Inbound, StreamError, fail};
use crate::state::Snapshot;
use crate::state::endpoints::Unavailable;
use crate::transport::quic::codes;

impl Inbound {
    pub(super) async fn tcp_call(
        &self,
        snap: &Snapshot,
        dest: &Destination,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        peer_td: &TrustDomain,
        started: Instant,
    ) -> Result<(), StreamError> {
        let _tracked = self.drain.track();
        let _open = self.metrics.stream_guard(Direction::Inbound);
        let service = dest.service.as_str();
        let upstream = match snap.upstreams.get(dest) {
            Some(rr) => rr.connect(dest, snap.config.limits.connect_timeout).await,
            None => Err(Unavailable {
                service: dest.service.to_string(),
                port: dest.port,
                attempts: 0,
                last: "no endpoints".into(),
            }),
        };
        let mut upstream: TcpStream = match upstream {
            Ok(s) => s,
            Err(e) => {
                fail(&mut send, &mut recv, codes::UNAVAILABLE);
                self.count(peer_td, service, "unavailable", started);
                return Err(e.into());
            }
        };
        let mut stream = tokio::io::join(recv, send);
        let r = tokio::io::copy_bidirectional(&mut stream, &mut upstream).await;
        match r {
            Ok((down, up)) => {
                self.metrics.bytes(Direction::Inbound, service, down, up);
                self.count(peer_td, service, "ok", started);
                Ok(())
            }
            Err(e) => {
                self.count(peer_td, service, "reset", started);
                Err(StreamError::Copy(e))
            }
        }
    }
}
