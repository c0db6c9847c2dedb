//! Every CPU kept out of idle while latency is measured (unless
//! `--idle-cpus`).
//!
//! On a virtual machine an idle vCPU halts, and waking it again (an
//! interrupt through the hypervisor) can cost tens of microseconds. A round
//! trip over one connection leaves the CPUs idle between hops, so that cost
//! lands on every hop and can outweigh the work being measured: on this
//! project's 2-vCPU machines the direct round trip measured 80 to 300 µs at
//! p50 with the machine otherwise idle, and 20 to 40 µs with it kept busy. Spinning threads
//! at the lowest priority (nice 19) keep the vCPUs running; the scheduler
//! runs any woken task in their place at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// Spinning threads, one per CPU, stopped and joined when dropped.
#[derive(Debug)]
pub(crate) struct BusyCpus {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl BusyCpus {
    pub(crate) fn start() -> Self {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .filter_map(|i| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("bench-busy-{i}"))
                    .spawn(move || {
                        // Linux: the nice value of this thread only. If it
                        // cannot be lowered, spinning would take CPU from the
                        // path under test: do not spin at all.
                        if rustix::process::nice(19).is_err() {
                            return;
                        }
                        // No `spin_loop` hint: PAUSE in a loop can make a
                        // hypervisor deschedule the vCPU, the very thing to avoid.
                        while !stop.load(Ordering::Relaxed) {}
                    })
                    .ok()
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for BusyCpus {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
