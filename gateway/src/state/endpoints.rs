//! Local endpoints of a service: round robin over the healthy ones, with a
//! connect timeout, moving on to the next endpoint when one does not
//! answer. An endpoint that refused or timed out a connection is passed
//! over for [`DOWN_FOR`] (passive health checking); when every endpoint is
//! down, all are tried anyway.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::Authority;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Destination, GatewayConfig};

/// How long an endpoint that failed a connection is passed over.
pub const DOWN_FOR: Duration = Duration::from_secs(5);

/// Why no endpoint of a service could be reached.
#[derive(Debug, thiserror::Error)]
#[error("no endpoint of {service}:{port} answered ({attempts} tried; last: {last})")]
pub struct Unavailable {
    pub service: String,
    pub port: u16,
    pub attempts: usize,
    pub last: String,
}

/// One endpoint of a local service.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, made once: every HTTP call to it needs one.
    pub authority: Authority,
    /// Milliseconds after `RoundRobin::epoch` until which it is passed over.
    down_until_ms: AtomicU64,
}

impl Endpoint {
    fn new(addr: SocketAddr, down_until_ms: u64) -> Self {
        // A socket address always makes an authority; the fallback is
        // never used.
        let authority = Authority::try_from(addr.to_string().as_str())
            .unwrap_or_else(|_| Authority::from_static("127.0.0.1"));
        Self {
            addr,
            authority,
            down_until_ms: AtomicU64::new(down_until_ms),
        }
    }
}

/// The endpoints of one local service, taken in turn.
#[derive(Debug)]
pub struct RoundRobin {
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    epoch: Instant,
}

impl RoundRobin {
    pub fn new(endpoints: Vec<SocketAddr>) -> Self {
        Self {
            endpoints: endpoints
                .into_iter()
                .map(|addr| Endpoint::new(addr, 0))
                .collect(),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    /// The endpoints of a changed service: those it had before keep
    /// their passive health; the turn starts over.
    pub fn carry(endpoints: Vec<SocketAddr>, prev: &RoundRobin) -> Self {
        let endpoints = endpoints
            .into_iter()
            .map(|addr| {
                let down = prev
                    .endpoints
                    .iter()
                    .find(|e| e.addr == addr)
                    .map_or(0, |e| e.down_until_ms.load(Ordering::Relaxed));
                Endpoint::new(addr, down)
            })
            .collect();
        Self {
            endpoints,
            next: AtomicUsize::new(0),
            epoch: prev.epoch,
        }
    }

    /// The endpoints, in config order.
    pub fn addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.endpoints.iter().map(|e| e.addr)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Every endpoint once, starting at the next in turn: the healthy ones
    /// first, then those marked down. Allocates nothing.
    pub fn in_turn(&self) -> InTurn<'_> {
        InTurn {
            rr: self,
            start: self.next.fetch_add(1, Ordering::Relaxed),
            now: self.now_ms(),
            i: 0,
            healthy: true,
        }
    }

    /// How many endpoints it has.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// Passes `addr` over for [`DOWN_FOR`].
    pub fn mark_down(&self, addr: SocketAddr) {
        let until = self.now_ms().saturating_add(DOWN_FOR.as_millis() as u64);
        if let Some(e) = self.endpoints.iter().find(|e| e.addr == addr) {
            e.down_until_ms.store(until, Ordering::Relaxed);
        }
    }

    /// Connects to the next healthy endpoint in turn; on failure or timeout
    /// marks it down and tries the others once each.
    pub async fn connect(
        &self,
        dest: &Destination,
        timeout: Duration,
    ) -> Result<TcpStream, Unavailable> {
        let mut last = String::from("no endpoints");
        let mut attempts = 0;
        for e in self.in_turn() {
            let addr = &e.addr;
            attempts += 1;
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: no answer within {timeout:?}"),
            }
            self.mark_down(*addr);
        }
        Err(Unavailable {
            service: dest.service.to_string(),
            port: dest.port,
            attempts,
            last,
        })
    }
}

/// The endpoints of a service in the order a call tries them.
#[derive(Debug)]
pub struct InTurn<'a> {
    rr: &'a RoundRobin,
    start: usize,
    now: u64,
    i: usize,
    /// First the healthy ones, then a second pass over those marked down.
    healthy: bool,
}

impl<'a> Iterator for InTurn<'a> {
    type Item = &'a Endpoint;

    fn next(&mut self) -> Option<&'a Endpoint> {
        let n = self.rr.endpoints.len();
        loop {
            if self.i == n {
                if !self.healthy || n == 0 {
                    return None;
                }
                self.healthy = false;
                self.i = 0;
            }
            let e = &self.rr.endpoints[(self.start + self.i) % n];
            self.i += 1;
            let up = e.down_until_ms.load(Ordering::Relaxed) <= self.now;
            if up == self.healthy {
                return Some(e);
            }
        }
    }
}

/// Every local service's endpoints, from a config.
#[derive(Debug, Default)]
pub struct LocalUpstreams {
    by_destination: BTreeMap<Destination, Arc<RoundRobin>>,
}

impl LocalUpstreams {
    pub fn from_config(config: &GatewayConfig) -> Self {
        Self {
            by_destination: config
                .services
                .iter()
                .map(|(d, s)| (d.clone(), Arc::new(RoundRobin::new(s.endpoints.clone()))))
                .collect(),
        }
    }

    /// The endpoints of a new config, taking over what `prev` knew: a
    /// service whose endpoints are unchanged keeps its round robin and
    /// passive health whole; a changed one keeps the health of the
    /// endpoints it still has.
    pub fn next(config: &GatewayConfig, prev: &LocalUpstreams) -> Self {
        let by_destination = config
            .services
            .iter()
            .map(|(d, s)| {
                let rr = match prev.by_destination.get(d) {
                    Some(rr) if rr.addrs().eq(s.endpoints.iter().copied()) => rr.clone(),
                    Some(rr) => Arc::new(RoundRobin::carry(s.endpoints.clone(), rr)),
                    None => Arc::new(RoundRobin::new(s.endpoints.clone())),
                };
                (d.clone(), rr)
            })
            .collect();
        Self { by_destination }
    }

    pub fn get(&self, dest: &Destination) -> Option<&RoundRobin> {
        self.by_destination.get(dest).map(|rr| &**rr)
    }
}
