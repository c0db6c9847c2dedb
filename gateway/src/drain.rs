//! Graceful drain: every open call holds a [`Tracked`] token; at shutdown
//! the gateway stops taking new calls, tells open connections to finish
//! ([`Drain::signal`]), and waits until no token is left or the grace
//! period ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, watch};

#[derive(Debug)]
struct Inner {
    active: AtomicUsize,
    idle: Notify,
    draining: watch::Sender<bool>,
}

/// Shared by every task of a gateway; cheap to clone.
#[derive(Debug, Clone)]
pub struct Drain(Arc<Inner>);

impl Default for Drain {
    fn default() -> Self {
        Self(Arc::new(Inner {
            active: AtomicUsize::new(0),
            idle: Notify::new(),
            draining: watch::Sender::new(false),
        }))
    }
}

/// One open call; the drain waits for it until it is dropped.
#[derive(Debug)]
pub struct Tracked(Arc<Inner>);

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Drain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one open call until the token is dropped.
    pub fn track(&self) -> Tracked {
        self.0.active.fetch_add(1, Ordering::AcqRel);
        Tracked(self.0.clone())
    }

    /// Calls open now.
    pub fn active(&self) -> usize {
        self.0.active.load(Ordering::Acquire)
    }

    pub fn is_draining(&self) -> bool {
        *self.0.draining.borrow()
    }

    /// Changes to `true` when the drain starts.
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.0.draining.subscribe()
    }

    /// Resolves once the drain has started.
    pub async fn started(&self) {
        let mut rx = self.signal();
        let started = rx.wait_for(|d| *d).await.is_ok();
        if !started {
            // The sender lives as long as any clone of this Drain.
            std::future::pending::<()>().await;
        }
    }

    /// Starts the drain: connections are told to finish what they carry.
    pub fn start(&self) {
        self.0.draining.send_replace(true);
    }

    /// Waits until no call is open, or `grace` has passed. Returns the
    /// number of calls still open.
    pub async fn wait(&self, grace: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.0.idle.notified();
            let n = self.active();
            if n == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.active();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_open_calls_and_no_longer_than_grace() {
        let d = Drain::new();
        assert_eq!(d.wait(Duration::from_millis(1)).await, 0);
        let t = d.track();
        let t2 = d.track();
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { d2.wait(Duration::from_secs(10)).await });
        drop(t);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(t2);
        assert_eq!(waiter.await.ok(), Some(0));
        let _held = d.track();
        assert_eq!(d.wait(Duration::from_millis(30)).await, 1);
        let mut s = d.signal();
        d.start();
        assert!(d.is_draining() && *s.borrow_and_update());
    }
}
