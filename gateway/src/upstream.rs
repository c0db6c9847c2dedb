//! Local endpoints of a service: round robin over them, with a connect
//! timeout, moving on to the next endpoint when one does not answer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::config::{Destination, GatewayConfig};

/// Why no endpoint of a service could be reached.
#[derive(Debug, thiserror::Error)]
#[error("no endpoint of {service}:{port} answered ({attempts} tried; last: {last})")]
pub struct Unavailable {
    pub service: String,
    pub port: u16,
    pub attempts: usize,
    pub last: String,
}

/// The endpoints of one local service, taken in turn.
#[derive(Debug)]
pub struct RoundRobin {
    endpoints: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new(endpoints: Vec<SocketAddr>) -> Self {
        Self {
            endpoints,
            next: AtomicUsize::new(0),
        }
    }

    /// Connects to the next endpoint in turn; on failure or timeout tries
    /// the others once each.
    pub async fn connect(
        &self,
        dest: &Destination,
        timeout: Duration,
    ) -> Result<TcpStream, Unavailable> {
        let n = self.endpoints.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = String::from("no endpoints");
        for i in 0..n {
            let addr = self.endpoints[(start + i) % n];
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: no answer within {timeout:?}"),
            }
        }
        Err(Unavailable {
            service: dest.service.to_string(),
            port: dest.port,
            attempts: n,
            last,
        })
    }
}

/// Every local service's endpoints, from a config.
#[derive(Debug, Default)]
pub struct LocalUpstreams {
    by_destination: BTreeMap<Destination, RoundRobin>,
}

impl LocalUpstreams {
    pub fn from_config(config: &GatewayConfig) -> Self {
        Self {
            by_destination: config
                .services
                .iter()
                .map(|(d, s)| (d.clone(), RoundRobin::new(s.endpoints.clone())))
                .collect(),
        }
    }

    pub fn get(&self, dest: &Destination) -> Option<&RoundRobin> {
        self.by_destination.get(dest)
    }
}
