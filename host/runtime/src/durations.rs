//! Run durations as a Prometheus histogram whose observations are atomic
//! adds to the observing thread's own cache line.
//!
//! `prometheus-client`'s `Histogram` takes a write lock per observation,
//! and every run makes one: on two threads that lock is a contended cache
//! line per run. Here each observation is three relaxed `fetch_add`s (its
//! bucket, the count, the sum in nanoseconds) into the thread's stripe
//! (`striped.rs`), so two threads never add to the same line; a scrape
//! sums the stripes without stopping the runs, so it may see an
//! observation in the count and not yet in the sum, which Prometheus
//! tolerates (it is what any lock-free client does).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::striped::{STRIPES, stripe};

/// One thread's stripe: a slot per bucket, then the count and the sum.
const SLOTS: usize = 16;
const COUNT: usize = SLOTS - 2;
const SUM_NS: usize = SLOTS - 1;
/// Most bucket bounds a histogram may have (the `+Inf` bucket besides).
const MAX_BOUNDS: usize = COUNT - 1;

type Stripe = CachePadded<[AtomicU64; SLOTS]>;

/// A histogram of durations; clones share it.
#[derive(Clone, Debug)]
pub(crate) struct Durations(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds in nanoseconds, ascending.
    bounds_ns: Vec<u64>,
    /// The same in seconds, as the exposition writes them.
    bounds_s: Vec<f64>,
    /// Per thread: observations per bucket (not cumulative; the one after
    /// the last bound is `+Inf`), the count and the sum in nanoseconds.
    stripes: [Stripe; STRIPES],
}

impl Inner {
    fn total(&self, slot: usize) -> u64 {
        self.stripes.iter().fold(0u64, |s, st| {
            s.wrapping_add(st[slot].load(Ordering::Relaxed))
        })
    }
}

impl Durations {
    /// Buckets `start`, `start * factor`, … (`length` of them) seconds, as
    /// `prometheus_client::metrics::histogram::exponential_buckets`.
    pub(crate) fn exponential(start: f64, factor: f64, length: u16) -> Self {
        assert!(
            usize::from(length) <= MAX_BOUNDS,
            "at most {MAX_BOUNDS} buckets"
        );
        let bounds_s: Vec<f64> = (0..i32::from(length))
            .map(|i| start * factor.powi(i))
            .collect();
        let bounds_ns = bounds_s.iter().map(|s| (s * 1e9) as u64).collect();
        Durations(Arc::new(Inner {
            bounds_ns,
            bounds_s,
            stripes: Default::default(),
        }))
    }

    pub(crate) fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let inner = &*self.0;
        let bucket = inner
            .bounds_ns
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(inner.bounds_ns.len());
        let mine = &inner.stripes[stripe()];
        mine[bucket].fetch_add(1, Ordering::Relaxed);
        mine[COUNT].fetch_add(1, Ordering::Relaxed);
        mine[SUM_NS].fetch_add(ns, Ordering::Relaxed);
    }
}

impl TypedMetric for Durations {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Durations {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &*self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds_s
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip((0..=inner.bounds_s.len()).map(|b| inner.total(b)))
            .collect();
        let sum = inner.total(SUM_NS) as f64 / 1e9;
        let count = inner.total(COUNT);
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
    use prometheus_client::registry::Registry;

    use super::*;

    fn exposition(register: impl FnOnce(&mut Registry)) -> String {
        let mut registry = Registry::default();
        register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    /// The exposition is the one `prometheus-client`'s own histogram gives
    /// for the same observations (bucket edges included), but for the
    /// sum's last digits (ours adds whole nanoseconds).
    #[test]
    fn encodes_as_the_locked_histogram_does() {
        let ours = Durations::exponential(0.000_01, 4.0, 12);
        let theirs = Histogram::new(exponential_buckets(0.000_01, 4.0, 12));
        for us in [0, 1, 10, 11, 40, 41, 1_000, 250_000, 90_000_000] {
            ours.observe(Duration::from_micros(us));
            theirs.observe(us as f64 / 1e6);
        }
        let a = exposition(|r| r.register("d", "Run durations", ours.clone()));
        let b = exposition(|r| r.register("d", "Run durations", theirs.clone()));
        let without_sum = |t: &str| {
            t.lines()
                .filter(|l| !l.starts_with("d_sum"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(without_sum(&a), without_sum(&b));
        assert!(a.contains("d_count 9"), "{a}");
        let sum = |t: &str| -> f64 {
            let line = t.lines().find(|l| l.starts_with("d_sum")).unwrap();
            line.rsplit(' ').next().unwrap().parse().unwrap()
        };
        assert!((sum(&a) - sum(&b)).abs() < 1e-9, "{a}\n{b}");
    }

    /// Observations from several threads land in their own stripes and
    /// are all counted, each in its bucket.
    #[test]
    fn observations_from_many_threads_are_all_counted() {
        let d = Durations::exponential(0.000_01, 4.0, 12);
        let threads: Vec<_> = (0..12)
            .map(|_| {
                let d = d.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        d.observe(Duration::from_micros(5));
                        d.observe(Duration::from_secs(100));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = exposition(|r| r.register("d", "Run durations", d.clone()));
        assert!(text.contains("d_count 2400"), "{text}");
        assert!(text.contains("d_bucket{le=\"0.00001\"} 1200"), "{text}");
        assert!(text.contains("d_bucket{le=\"41.94304\"} 1200\n"), "{text}");
        assert!(text.contains("d_bucket{le=\"+Inf\"} 2400\n"), "{text}");
    }
}
