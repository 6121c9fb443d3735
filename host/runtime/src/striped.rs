//! Counters that threads add to without sharing a cache line.
//!
//! Every run adds to a handful of metrics (events, runs, `get-secret`
//! calls, audit entries, the run-duration histogram). With one atomic per
//! counter, two threads running events each add to the same cache lines,
//! and every add then waits for the line to come over from the other core
//! (`perf` of `keyhole-bench --loop keyhole 2`: 0.06 µs per event in
//! `Metrics::run` alone, against 0.014 on one thread; what removing it
//! bought was below the machine's noise). Here each counter is a row of
//! [`STRIPES`] cache-line-padded slots; a thread adds to its own slot
//! (chosen once per thread), and a scrape sums them. A sum taken while
//! runs add may miss the adds still in flight, as any lock-free reading
//! does; Prometheus tolerates that.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;
use prometheus_client::metrics::counter::Atomic;

/// Slots per counter: the threads that run events (tokio's workers, the
/// blocking lanes, callers of `emit_blocking`) are few; past this many
/// some share a slot, which is still correct.
pub(crate) const STRIPES: usize = 8;

/// This thread's slot in every striped counter: threads get consecutive
/// slots in the order they first count, so the first [`STRIPES`] never
/// share one.
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Const-initialised: a read is one load, with no lazy-init check.
        static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    STRIPE.with(|s| {
        let mut mine = s.get();
        if mine == usize::MAX {
            mine = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            s.set(mine);
        }
        mine
    })
}

/// A `u64` counter striped over threads; the `Atomic` a Prometheus
/// `Counter` keeps its value in.
#[derive(Debug, Default)]
pub(crate) struct StripedU64([CachePadded<AtomicU64>; STRIPES]);

impl StripedU64 {
    /// Adds `v` to this thread's slot; returns the slot's value before.
    pub(crate) fn add(&self, v: u64) -> u64 {
        self.0[stripe()].fetch_add(v, Ordering::Relaxed)
    }

    pub(crate) fn sum(&self) -> u64 {
        self.0
            .iter()
            .fold(0u64, |s, c| s.wrapping_add(c.load(Ordering::Relaxed)))
    }
}

impl Atomic<u64> for StripedU64 {
    fn inc(&self) -> u64 {
        self.inc_by(1)
    }

    /// Returns this thread's slot before the add, not the total: summing
    /// would read every other thread's line on each add (nothing in
    /// keyhole or `prometheus-client` reads the returned value).
    fn inc_by(&self, v: u64) -> u64 {
        self.add(v)
    }

    fn get(&self) -> u64 {
        self.sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_from_many_threads_all_count() {
        let c = std::sync::Arc::new(StripedU64::default());
        let threads: Vec<_> = (0..2 * STRIPES)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        c.add(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.sum(), 2 * STRIPES as u64 * 1_000);
        assert_eq!(c.get(), c.sum());
    }
}
