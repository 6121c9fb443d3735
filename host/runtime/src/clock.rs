//! Wall-clock milliseconds for the event path, from the monotonic clock.
//!
//! Every run reads the monotonic clock at its start (for its duration and
//! deadline) and needs its start as wall-clock milliseconds too (the run
//! record, audit entries). On the bench machine a wall-clock read costs
//! about 35 ns and a monotonic one 25; two reads per run were over 1% of a
//! pure listener's run. So the wall-clock time of a monotonic reading is
//! derived from an anchor: the offset between the two clocks, measured
//! together and measured again at most [`REANCHOR`] later, so a step of
//! the wall clock (an NTP step, a VM resumed) shows within that. Between
//! steps the two clocks run at the same rate (the kernel slews both), so
//! a derived time is off only by the few nanoseconds between the two reads
//! of an anchor.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// How long an anchor is used before it is measured again.
pub(crate) const REANCHOR: std::time::Duration = std::time::Duration::from_secs(1);

struct Anchor {
    /// Monotonic readings are counted in nanoseconds from here.
    base: Instant,
    /// Wall-clock nanoseconds since the Unix epoch minus monotonic
    /// nanoseconds since `base`, at the last measurement (one atomic, so a
    /// reader never mixes two measurements).
    offset: AtomicU64,
    /// Monotonic nanoseconds since `base` of the last measurement.
    measured: AtomicU64,
}

fn since(base: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(base).as_nanos() as u64
}

impl Anchor {
    fn measure(&self) {
        let mono = since(self.base, Instant::now());
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.offset
            .store(wall.wrapping_sub(mono), Ordering::Relaxed);
        self.measured.store(mono, Ordering::Relaxed);
    }
}

fn anchor() -> &'static Anchor {
    static ANCHOR: OnceLock<Anchor> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let a = Anchor {
            base: Instant::now(),
            offset: AtomicU64::new(0),
            measured: AtomicU64::new(0),
        };
        a.measure();
        a
    })
}

/// Milliseconds since the Unix epoch at the monotonic reading `at`.
pub(crate) fn wall_ms(at: Instant) -> u64 {
    let a = anchor();
    let mono = since(a.base, at);
    if mono > a.measured.load(Ordering::Relaxed) + REANCHOR.as_nanos() as u64 {
        a.measure();
    }
    a.offset.load(Ordering::Relaxed).wrapping_add(mono) / 1_000_000
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    wall_ms(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    #[test]
    fn derived_times_agree_with_the_wall_clock() {
        for _ in 0..1_000 {
            let before = system_ms();
            let derived = now_ms();
            let after = system_ms();
            // Within a millisecond of the reads around it: the anchor's
            // two reads are nanoseconds apart.
            assert!(
                before <= derived + 1 && derived <= after + 1,
                "{before} {derived} {after}"
            );
        }
        // A later reading is never earlier.
        let t0 = Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let t1 = Instant::now();
        assert!(wall_ms(t1) >= wall_ms(t0) + 2);
    }
}
