//! Timing samples and their summary (median, p99), plus process memory.
//!
//! Kept separate so every case reports the same way: per-event durations are
//! collected into a [`Samples`] and summarized by sorting (no histogram
//! crate: a few hundred thousand `Duration`s sort in milliseconds).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Per-iteration durations of one case.
#[derive(Default, Clone)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Samples(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// Times `f` once and records it.
    pub fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let start = Instant::now();
        let r = f();
        self.0.push(start.elapsed());
        r
    }

    /// Median and 99th percentile, in microseconds.
    pub fn summary(&self) -> Summary {
        let mut v: Vec<f64> = self.0.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        v.sort_by(f64::total_cmp);
        Summary {
            median_us: percentile(&v, 50.0),
            p99_us: percentile(&v, 99.0),
            iterations: v.len(),
        }
    }
}

/// What a case reports.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub median_us: f64,
    pub p99_us: f64,
    pub iterations: usize,
}

impl Summary {
    /// Every figure divided by `k` (per-run figures of a fan-out event).
    pub fn per(self, k: f64) -> Summary {
        Summary {
            median_us: self.median_us / k,
            p99_us: self.p99_us / k,
            iterations: self.iterations,
        }
    }
}

/// Nearest-rank percentile of sorted values; NaN when empty.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A `kB` field of /proc/self/status (e.g. `VmRSS`, `VmHWM`), in MiB.
pub fn proc_status_mb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    })
}

/// Calls per second of `f` with `threads` threads each calling it in a loop
/// for `span`. The first error stops that thread and is returned.
pub fn throughput<E: Send>(
    threads: usize,
    span: Duration,
    f: impl Fn() -> Result<(), E> + Sync,
) -> Result<f64, E> {
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let results: Vec<Result<(), E>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (done, stop, f) = (&done, &stop, &f);
                s.spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        f()?;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        std::thread::sleep(span);
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| h.join().expect("throughput thread panicked"))
            .collect()
    });
    let elapsed = start.elapsed();
    results.into_iter().collect::<Result<(), E>>()?;
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
}
