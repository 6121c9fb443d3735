//! `keyhole-bench`: measures keyhole's event path against baselines in the
//! same process and run, so the ratios hold on any (noisy) machine.
//!
//! ```text
//! cargo run --release --bin keyhole-bench -- --quick   # < 1 minute
//! cargo run --release --bin keyhole-bench             # fuller run
//! ```
//!
//! Cases: `floor` (bare wasmtime, best settings: `floor.rs`), `keyhole`
//! (`Runtime::emit_blocking`, the real path: `cases.rs`), `naive` (compile per
//! event), the secret read alone, one audit entry alone, the HTTP API end to end (`api.rs`,
//! optional), throughput on one and all cores, a 100-listener fan-out, an
//! event among 1,000 listeners deployed to another environment, a
//! 1,000-listener restart, and memory. Floor and keyhole run interleaved in
//! rounds so machine noise hits both alike.
//!
//! Guests: `pure-reader`, an ordinary Rust listener, for the headline ratio,
//! and `arena-reader`, the same listener without memory growth, as the
//! trivial listener for throughput (see build.rs for why both).
//!
//! Output: a table, the ratios, and as the very last line one JSON object
//! (for scripts and CI). Progress goes to stderr.

// The report's one `json!` object has more fields than serde_json's macro
// expands within the default limit.
#![recursion_limit = "256"]

/// The allocator the `keyhole` binary uses (mimalloc), so that the
/// in-process cases measure what the daemon runs; the floor shares it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod cases;
mod cluster;
mod compare;
mod floor;
mod placement;
mod profile;
mod report;
mod stats;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cases::Keyhole;
use crate::compare::{Throughput, compare};
use crate::floor::{Floor, Naive};
use crate::report::{Figures, Row};
use crate::stats::{Samples, Summary, proc_status_mb};

include!(concat!(env!("OUT_DIR"), "/guest.rs"));

pub const TOPIC: &str = "bench:event";
pub const ENVIRONMENT: &str = "prod";
pub const SECRET_NAME: &str = "SLACK_TOKEN";
pub const SECRET_VALUE: &str = "xoxb-0000000000-0000000000000-benchNotARealToken";

/// Iteration counts for one run.
struct Plan {
    quick: bool,
    /// Floor/keyhole rounds and events per round (interleaved).
    rounds: usize,
    batch: usize,
    naive: usize,
    secret_reads: usize,
    async_events: usize,
    api_events: usize,
    /// Events queued per phase of the cluster case.
    cluster_events: usize,
    throughput_span: Duration,
    fanout_events: usize,
    memory_events: usize,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                quick,
                rounds: 10,
                batch: 500,
                naive: 10,
                secret_reads: 20_000,
                async_events: 1_000,
                api_events: 1_000,
                cluster_events: 500,
                throughput_span: Duration::from_millis(1500),
                fanout_events: 20,
                memory_events: 20_000,
            }
        } else {
            Plan {
                quick,
                rounds: 20,
                batch: 2_500,
                naive: 50,
                secret_reads: 200_000,
                async_events: 10_000,
                api_events: 10_000,
                cluster_events: 5_000,
                throughput_span: Duration::from_secs(5),
                fanout_events: 200,
                memory_events: 100_000,
            }
        }
    }
}

pub const FANOUT: usize = 100;
pub const RESTART_LISTENERS: usize = 1_000;
/// Deployments in another environment for the "deployed elsewhere" case.
pub const BYSTANDERS: usize = 1_000;

fn main() -> Result<()> {
    let mut quick = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--loop" => {
                let case = args.next().context("--loop needs a case")?;
                let threads = args.next().map_or(Ok(1), |t| t.parse())?;
                let guest = args.next();
                return profile::run(&case, threads, guest.as_deref().unwrap_or("pure-reader"));
            }
            "-h" | "--help" => {
                println!(
                    "usage: keyhole-bench [--quick]\n       keyhole-bench --loop compare|floor|guarded-floor|keyhole|fanout|fanout-async|api [THREADS] [pure-reader|arena-reader]\n                     \
                     (one case for KEYHOLE_BENCH_SECS, default 10, for perf/callgrind;\n                      compare: only the interleaved latency rounds, 20 per KEYHOLE_BENCH_SECS)"
                );
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let plan = Plan::new(quick);
    let started = Instant::now();
    let module = std::fs::read(PURE_READER).with_context(|| format!("read {PURE_READER}"))?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut rows = Vec::new();

    // Floor and keyhole, interleaved after a warm-up of each, on both guests.
    progress("floor vs keyhole");
    let floor = Floor::new(&module)?;
    let (kh, _) = Keyhole::new(&module, 1)?;
    let (floor_sum, kh_sum) = compare(&floor, &kh, &plan)?;
    rows.push(row("floor (bare wasmtime)", Ok(floor_sum)));
    rows.push(row("keyhole emit_blocking", Ok(kh_sum)));
    let arena_module =
        std::fs::read(ARENA_READER).with_context(|| format!("read {ARENA_READER}"))?;
    let arena_floor = Floor::new(&arena_module)?;
    let (arena_kh, _) = Keyhole::new(&arena_module, 1)?;
    let (arena_floor_sum, arena_kh_sum) = compare(&arena_floor, &arena_kh, &plan)?;
    rows.push(row("floor, arena-reader", Ok(arena_floor_sum)));
    rows.push(row("keyhole, arena-reader", Ok(arena_kh_sum)));
    progress("keyhole among bystanders");
    let (crowded, _) = Keyhole::new(&arena_module, 1)?;
    cases::add_bystanders(&crowded, &arena_module, BYSTANDERS)?;
    let (crowded_floor_sum, crowded_sum) = compare(&arena_floor, &crowded, &plan)?;
    drop(crowded);
    let crowded_over_floor = crowded_sum.median_us / crowded_floor_sum.median_us;
    rows.push(row(
        "keyhole, arena-reader, 1,000 deployed elsewhere",
        Ok(crowded_sum),
    ));
    let fixed = floor::wit_event("ev_bench");
    let mut scratch = Samples::default();

    progress("naive");
    let naive = Naive::new(&module)?;
    floor::check_fingerprint(&naive.event(&fixed)?, floor::CONSTANT_SECRET)?;
    let mut naive_s = Samples::with_capacity(plan.naive);
    for _ in 0..plan.naive {
        naive_s.time(|| naive.event(&fixed))?;
    }
    let naive_sum = naive_s.summary();

    rows.push(row("naive (compile per event)", Ok(naive_sum)));
    drop(naive);

    progress("throughput, arena-reader");
    let tp = Throughput::measure(&arena_floor, &arena_kh, threads, plan.throughput_span)?;
    drop((arena_floor, arena_kh));
    progress("throughput, pure-reader");
    let tp_pure = Throughput::measure(&floor, &kh, threads, plan.throughput_span)?;
    drop(floor);
    progress("throughput, pure-reader, wasmtime's memory settings");
    let guarded = Floor::guarded(&module)?;
    let guarded_tp = |n| {
        stats::throughput(n, plan.throughput_span, || {
            guarded.event(&floor::wit_event("ev_bench")).map(drop)
        })
    };
    let (guarded_1, guarded_all) = (guarded_tp(1)?, guarded_tp(threads)?);
    drop(guarded);

    progress("secret read");
    let read_sum = cases::secret_read(&kh.store, plan.secret_reads)?.summary();
    rows.push(row("secret read (store.resolve)", Ok(read_sum)));
    progress("audit entry");
    let audit_sum = cases::audit_entry(&kh.runtime, plan.secret_reads)?.summary();
    rows.push(row("audit entry (get-secret)", Ok(audit_sum)));

    progress("keyhole async emit");
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut async_s = Samples::with_capacity(plan.async_events);
    for i in 0..plan.async_events + plan.async_events / 10 {
        let target = if i < plan.async_events / 10 {
            &mut scratch
        } else {
            &mut async_s
        };
        cases::timed_emit_async(&tokio, &kh.runtime, target, 1)?;
    }
    rows.push(row("keyhole emit (async)", Ok(async_s.summary())));

    progress("API end to end");
    let api_figures = api::run(&module, plan.api_events, plan.throughput_span);
    let api = api_figures
        .as_ref()
        .map(|f| f.latency.summary())
        .map_err(Clone::clone);
    let api_one_cpu = match &api_figures {
        Ok(f) => f
            .latency_one_cpu
            .as_ref()
            .map(Samples::summary)
            .ok_or_else(|| "could not pin the daemon and the client (taskset)".to_owned()),
        Err(why) => Err(why.clone()),
    };
    let api_concurrent = api_figures.as_ref().ok().map(|f| f.concurrent_events_per_s);
    let api_batch = api_figures.as_ref().ok().map(|f| f.batch_events_per_s);
    rows.push(row("API POST /v1/events", api.clone()));
    rows.push(row("API POST /v1/events, one CPU", api_one_cpu.clone()));
    // About the sizes of the API case's request and answer; on one CPU and,
    // with two or more, across two (`placement.rs`).
    let rtt = |echo_cpu| -> Result<Result<Summary, String>> {
        Ok(
            api::loopback_round_trip(plan.api_events, 300, 600, echo_cpu)?
                .map(|s| s.summary())
                .ok_or_else(|| "could not pin the threads (taskset)".to_owned()),
        )
    };
    let rtt_one = rtt(0)?;
    let rtt_two = if threads > 1 {
        rtt(1)?
    } else {
        Err("one CPU".to_owned())
    };
    rows.push(row("loopback TCP round trip, one CPU", rtt_one.clone()));
    rows.push(row("loopback TCP round trip, two CPUs", rtt_two.clone()));

    drop(kh);

    progress("cluster (NATS JetStream on loopback)");
    let cluster = cluster::run(&module, plan.cluster_events);

    progress("fan-out");
    let (fan, _) = Keyhole::new(&module, FANOUT)?;
    let mut fan_s = Samples::with_capacity(plan.fanout_events);
    let mut fan_async = Samples::with_capacity(plan.fanout_events);
    cases::timed_emit(&fan.runtime, &mut scratch, FANOUT)?;
    for _ in 0..plan.fanout_events {
        cases::timed_emit(&fan.runtime, &mut fan_s, FANOUT)?;
        cases::timed_emit_async(&tokio, &fan.runtime, &mut fan_async, FANOUT)?;
    }
    let fan_sum = fan_s.summary();
    let fan_async_sum = fan_async.summary();
    rows.push(row("fan-out 100, per event", Ok(fan_sum)));
    rows.push(row("fan-out 100, per run", Ok(fan_sum.per(FANOUT as f64))));
    rows.push(row("fan-out 100 async, per event", Ok(fan_async_sum)));
    drop(fan);

    progress("startup: deploy 1,000 and restart");
    let (big, deploy_time) = Keyhole::new(&module, RESTART_LISTENERS)?;
    let (big, restart) = big.restart()?;
    if restart.deployments != RESTART_LISTENERS {
        bail!(
            "restart found {} deployments, expected {RESTART_LISTENERS}",
            restart.deployments
        );
    }
    // Ready means runnable: one event reaches all of them (not timed).
    cases::timed_emit(&big.runtime, &mut scratch, RESTART_LISTENERS)?;
    drop(big);

    progress("memory");
    let (mem, _) = Keyhole::new(&module, 1)?;
    let rss_before = proc_status_mb("VmRSS");
    for _ in 0..plan.memory_events {
        cases::timed_emit(&mem.runtime, &mut scratch, 1)?;
    }
    let rss_after = proc_status_mb("VmRSS");
    drop(mem);
    // VmHWM is updated lazily; never report a peak below a sample.
    let peak = proc_status_mb("VmHWM").map(|p| p.max(rss_after.unwrap_or(0.0)));

    report::print(Figures {
        quick: plan.quick,
        threads,
        started,
        rows,
        floor_sum,
        kh_sum,
        arena_floor_sum,
        arena_kh_sum,
        crowded_over_floor,
        naive_sum,
        tp,
        tp_pure,
        guarded_1,
        guarded_all,
        read_sum,
        audit_sum,
        api,
        api_one_cpu,
        api_concurrent,
        api_batch,
        rtt_one,
        rtt_two,
        cluster,
        fan_sum,
        fan_async_sum,
        deploy_time,
        restart,
        memory_events: plan.memory_events,
        rss_before,
        rss_after,
        peak,
    });
    Ok(())
}

fn row(case: &str, result: Result<Summary, String>) -> Row {
    Row {
        case: case.to_owned(),
        result,
    }
}

fn progress(what: &str) {
    eprintln!("keyhole-bench: {what}...");
}
