//! `keyhole-bench --loop CASE [THREADS] [GUEST]`: one case alone in a loop,
//! for a profiler (perf, callgrind) or a quick A/B of two builds.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::cases::{self, Keyhole};
use crate::floor::{self, Floor};
use crate::stats::{self, Samples};
use crate::{ARENA_READER, FANOUT, PURE_READER};

/// Runs one case in a loop for `KEYHOLE_BENCH_SECS` (default 10) seconds
/// with `threads` threads, so a profiler sees only that path.
pub fn run(case: &str, threads: usize, guest: &str) -> Result<()> {
    let path = match guest {
        "pure-reader" => PURE_READER,
        "arena-reader" => ARENA_READER,
        other => bail!("unknown guest {other:?}: pure-reader or arena-reader"),
    };
    let module = std::fs::read(path).with_context(|| format!("read {path}"))?;
    let secs: u64 = std::env::var("KEYHOLE_BENCH_SECS").map_or(Ok(10), |s| s.parse())?;
    let span = Duration::from_secs(secs);
    let eps = match case {
        // The latency comparison alone (keyhole/floor, interleaved rounds of
        // 500 events as in the full bench, 20 rounds per second of
        // KEYHOLE_BENCH_SECS): A/B runs of two builds take a second each.
        "compare" => {
            let floor = Floor::new(&module)?;
            let (kh, _) = Keyhole::new(&module, 1)?;
            let plan = crate::Plan {
                rounds: 20 * secs as usize,
                ..crate::Plan::new(true)
            };
            let (f, k) = crate::compare::compare(&floor, &kh, &plan)?;
            println!(
                "compare: floor {:.2} µs, keyhole {:.2} µs, keyhole/floor {:.3}",
                f.median_us,
                k.median_us,
                k.median_us / f.median_us
            );
            return Ok(());
        }
        "floor" | "guarded-floor" => {
            let floor = if case == "floor" {
                Floor::new(&module)?
            } else {
                Floor::guarded(&module)?
            };
            stats::throughput(threads, span, || {
                floor.event(&floor::wit_event("ev_bench")).map(drop)
            })?
        }
        "keyhole" => {
            let (kh, _) = Keyhole::new(&module, 1)?;
            cases::throughput(&kh.runtime, threads, span)?
        }
        // One event to 100 listeners at a time, per second: serially on
        // this thread, or through the async `emit` on a tokio runtime of
        // THREADS workers.
        "fanout" | "fanout-async" => {
            let (fan, _) = Keyhole::new(&module, FANOUT)?;
            let tokio = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()?;
            stats::throughput(1, span, || {
                if case == "fanout" {
                    cases::timed_emit(&fan.runtime, &mut Samples::default(), FANOUT)
                } else {
                    cases::timed_emit_async(&tokio, &fan.runtime, &mut Samples::default(), FANOUT)
                }
            })?
        }
        // `POST /v1/events` over the API case's connections to a `keyhole
        // serve` (THREADS is ignored).
        "api" => {
            let api = crate::api::run(&module, 2_000, span).map_err(anyhow::Error::msg)?;
            let one = api.latency.summary();
            println!(
                "api, one connection: median {:.1} µs, p99 {:.1} µs",
                one.median_us, one.p99_us
            );
            if let Some(pinned) = api.latency_one_cpu.map(|s| s.summary()) {
                println!(
                    "api, one connection, daemon and client on CPU 0: median {:.1} µs, p99 {:.1} µs",
                    pinned.median_us, pinned.p99_us
                );
            }
            api.concurrent_events_per_s
        }
        other => {
            bail!(
                "unknown case {other:?}: compare, floor, guarded-floor, keyhole, fanout, fanout-async or api"
            )
        }
    };
    println!("{case}: {eps:.0} events/s on {threads} threads, {guest}");
    Ok(())
}
