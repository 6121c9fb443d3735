//! The bench's output: the table, the ratios against the baselines of the
//! same run, and, as the very last line, one JSON object for scripts.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cases::Restart;
use crate::compare::Throughput;
use crate::stats::Summary;
use crate::{BYSTANDERS, FANOUT, RESTART_LISTENERS, api, cluster};

/// One table row: a name and its figures, or why it was skipped.
pub struct Row {
    pub case: String,
    pub result: Result<Summary, String>,
}

/// Everything one run measured.
pub struct Figures {
    pub quick: bool,
    pub threads: usize,
    pub started: Instant,
    pub rows: Vec<Row>,
    pub floor_sum: Summary,
    pub kh_sum: Summary,
    pub arena_floor_sum: Summary,
    pub arena_kh_sum: Summary,
    pub crowded_over_floor: f64,
    pub naive_sum: Summary,
    pub tp: Throughput,
    pub tp_pure: Throughput,
    pub guarded_1: f64,
    pub guarded_all: f64,
    pub read_sum: Summary,
    pub audit_sum: Summary,
    pub api: Result<Summary, String>,
    pub api_one_cpu: Result<Summary, String>,
    pub api_concurrent: Option<f64>,
    pub api_batch: Option<f64>,
    pub rtt_one: Result<Summary, String>,
    pub rtt_two: Result<Summary, String>,
    pub cluster: Result<cluster::Figures, String>,
    pub fan_sum: Summary,
    pub fan_async_sum: Summary,
    pub deploy_time: Duration,
    pub restart: Restart,
    pub memory_events: usize,
    pub rss_before: Option<f64>,
    pub rss_after: Option<f64>,
    pub peak: Option<f64>,
}

/// Prints the table, the ratios and the JSON line.
pub fn print(figures: Figures) {
    let Figures {
        quick,
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
        memory_events,
        rss_before,
        rss_after,
        peak,
    } = figures;
    let restart_ms = (restart.store_open + restart.runtime_open).as_secs_f64() * 1e3;
    let keyhole_over_floor = kh_sum.median_us / floor_sum.median_us;
    let arena_over_floor = arena_kh_sum.median_us / arena_floor_sum.median_us;
    let naive_over_keyhole = naive_sum.median_us / kh_sum.median_us;
    println!();
    println!(
        "keyhole-bench ({}), {} cores, guest pure-reader unless marked arena-reader",
        if quick { "quick" } else { "full" },
        threads
    );
    println!(
        "{:<32} {:>12} {:>12} {:>10}",
        "case", "median µs", "p99 µs", "iterations"
    );
    for r in &rows {
        match &r.result {
            Ok(s) => println!(
                "{:<32} {:>12.1} {:>12.1} {:>10}",
                r.case, s.median_us, s.p99_us, s.iterations
            ),
            Err(why) => println!("{:<32} {:>12} ({why})", r.case, "skipped"),
        }
    }
    println!();
    let mb = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1} MiB"));
    for (guest, t) in [("arena-reader", &tp), ("pure-reader", &tp_pure)] {
        println!(
            "throughput, {guest:<13} 1 thread {:>8.0} events/s (floor {:.0}), {threads} threads {:>8.0} events/s (floor {:.0})",
            t.keyhole_1, t.floor_1, t.keyhole_all, t.floor_all
        );
    }
    println!(
        "throughput, pure-reader on wasmtime's memory settings (guard pages): 1 thread {guarded_1:>8.0} events/s, {threads} threads {guarded_all:>8.0} events/s"
    );
    match api_concurrent {
        Some(eps) => println!(
            "API POST /v1/events, {} connections: {eps:>8.0} events/s ({:.2} of in-process, {threads} threads)",
            api::CONNECTIONS,
            eps / tp_pure.keyhole_all
        ),
        None => println!(
            "API POST /v1/events, {} connections: skipped",
            api::CONNECTIONS
        ),
    }
    if let Some(eps) = api_batch {
        println!(
            "API POST /v1/events/batch, {} events a request, one connection: {eps:>8.0} events/s ({:.2} of in-process, {threads} threads)",
            api::BATCH,
            eps / tp_pure.keyhole_all
        );
    }
    match &cluster {
        Ok(c) => println!(
            "cluster, queued events (pure-reader): 1 host {:>8.0} events/s, 3 hosts {:>8.0} events/s (embedded, 1 thread {:.0})",
            c.one_host, c.three_hosts, tp_pure.keyhole_1
        ),
        Err(why) => println!("cluster, queued events: skipped ({why})"),
    }
    println!(
        "deploy {RESTART_LISTENERS} listeners:        {:>10.0} ms",
        deploy_time.as_secs_f64() * 1e3
    );
    println!(
        "restart with {RESTART_LISTENERS}:           {restart_ms:>10.1} ms (store open {:.1} ms + Runtime::open {:.1} ms; {} loaded from artifact, 0 compiled)",
        restart.store_open.as_secs_f64() * 1e3,
        restart.runtime_open.as_secs_f64() * 1e3,
        restart.loaded_from_artifact
    );
    println!(
        "RSS after {} events:      {} (before: {}){}",
        memory_events,
        mb(rss_after),
        mb(rss_before),
        if quick {
            " [quick: 20,000 events, not 100,000]"
        } else {
            ""
        }
    );
    println!("peak RSS (VmHWM):            {}", mb(peak));
    println!();
    println!(
        "keyhole/floor  median {keyhole_over_floor:.2}x  p99 {:.2}x   (target ≤ 1.3)  {}",
        kh_sum.p99_us / floor_sum.p99_us,
        verdict(keyhole_over_floor <= 1.3)
    );
    println!(
        "  arena-reader median {arena_over_floor:.2}x  p99 {:.2}x",
        arena_kh_sum.p99_us / arena_floor_sum.p99_us
    );
    println!("  arena-reader, {BYSTANDERS} deployed elsewhere median {crowded_over_floor:.2}x");
    println!(
        "naive/keyhole  median {naive_over_keyhole:.0}x            (target ≥ 100)  {}",
        verdict(naive_over_keyhole >= 100.0)
    );
    println!(
        "events/s, {threads} threads {:.0} (arena-reader) (target ≥ 100000) {}",
        tp.keyhole_all,
        verdict(tp.keyhole_all >= 100_000.0)
    );
    println!(
        "restart 1,000  {restart_ms:.0} ms              (target < 1000) {}",
        verdict(restart_ms < 1000.0)
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());

    let med = |s: &Result<Summary, String>| s.as_ref().ok().map(|s| s.median_us);
    let async_median = rows
        .iter()
        .find(|r| r.case == "keyhole emit (async)")
        .and_then(|r| med(&r.result));
    let p99 = |s: &Result<Summary, String>| s.as_ref().ok().map(|s| s.p99_us);
    let report = json!({
        "quick": quick,
        "cores": threads,
        "keyhole_over_floor": round(keyhole_over_floor, 3),
        "keyhole_over_floor_p99": round(kh_sum.p99_us / floor_sum.p99_us, 3),
        "naive_over_keyhole": round(naive_over_keyhole, 1),
        "keyhole_over_floor_arena": round(arena_over_floor, 3),
        "keyhole_over_floor_arena_1000_elsewhere": round(crowded_over_floor, 3),
        "events_per_s_1core": tp.keyhole_1.round(),
        "events_per_s_all": tp.keyhole_all.round(),
        "floor_events_per_s_1core": tp.floor_1.round(),
        "floor_events_per_s_all": tp.floor_all.round(),
        "pure_reader_events_per_s_1core": tp_pure.keyhole_1.round(),
        "pure_reader_events_per_s_all": tp_pure.keyhole_all.round(),
        "pure_reader_floor_events_per_s_1core": tp_pure.floor_1.round(),
        "pure_reader_floor_events_per_s_all": tp_pure.floor_all.round(),
        "restart_1000_ms": round(restart_ms, 1),
        "restart_store_open_ms": round(restart.store_open.as_secs_f64() * 1e3, 1),
        "restart_runtime_open_ms": round(restart.runtime_open.as_secs_f64() * 1e3, 1),
        "deploy_1000_ms": round(deploy_time.as_secs_f64() * 1e3, 0),
        "rss_after_100k_mb": rss_after.map(|v| round(v, 1)),
        "rss_events": memory_events,
        "rss_before_mb": rss_before.map(|v| round(v, 1)),
        "peak_rss_mb": peak.map(|v| round(v, 1)),
        "floor_median_us": round(floor_sum.median_us, 2),
        "floor_p99_us": round(floor_sum.p99_us, 2),
        "keyhole_median_us": round(kh_sum.median_us, 2),
        "keyhole_p99_us": round(kh_sum.p99_us, 2),
        "arena_floor_median_us": round(arena_floor_sum.median_us, 2),
        "arena_keyhole_median_us": round(arena_kh_sum.median_us, 2),
        "naive_median_us": round(naive_sum.median_us, 1),
        "secret_read_median_us": round(read_sum.median_us, 2),
        "secret_read_p99_us": round(read_sum.p99_us, 2),
        "audit_entry_median_us": round(audit_sum.median_us, 3),
        "audit_entry_p99_us": round(audit_sum.p99_us, 3),
        "keyhole_async_median_us": async_median.map(|v| round(v, 2)),
        "api_median_us": med(&api).map(|v| round(v, 1)),
        "api_p99_us": p99(&api).map(|v| round(v, 1)),
        "api_skipped": api.as_ref().err(),
        "api_one_cpu_median_us": med(&api_one_cpu).map(|v| round(v, 1)),
        "api_one_cpu_over_inprocess_us": med(&api_one_cpu).zip(async_median).map(|(a, b)| round(a - b, 1)),
        "loopback_rtt_median_us": med(&rtt_one).map(|v| round(v, 1)),
        "loopback_rtt_two_cpus_median_us": med(&rtt_two).map(|v| round(v, 1)),
        "cluster_events_per_s_1_host": cluster.as_ref().ok().map(|c| round(c.one_host, 0)),
        "cluster_events_per_s_3_hosts": cluster.as_ref().ok().map(|c| round(c.three_hosts, 0)),
        "cluster_skipped": cluster.as_ref().err(),
        "fanout_100_event_median_us": round(fan_sum.median_us, 1),
        "fanout_100_run_median_us": round(fan_sum.median_us / FANOUT as f64, 2),
        "fanout_100_async_event_median_us": round(fan_async_sum.median_us, 1),
        "fanout_async_over_serial": round(fan_async_sum.median_us / fan_sum.median_us, 3),
        "throughput_over_floor_1": round(tp.keyhole_1 / tp.floor_1, 3),
        "throughput_over_floor_all": round(tp.keyhole_all / tp.floor_all, 3),
        "pure_reader_guarded_floor_events_per_s_1core": guarded_1.round(),
        "pure_reader_guarded_floor_events_per_s_all": guarded_all.round(),
        "pure_reader_over_guarded_floor_all": round(tp_pure.keyhole_all / guarded_all, 3),
        "api_concurrent_events_per_s": api_concurrent.map(f64::round),
        "api_over_inprocess": api_concurrent.map(|eps| round(eps / tp_pure.keyhole_all, 3)),
        "api_batch_events_per_s": api_batch.map(f64::round),
        "api_batch_over_inprocess": api_batch.map(|eps| round(eps / tp_pure.keyhole_all, 3)),
        "total_s": round(started.elapsed().as_secs_f64(), 1),
    });
    println!("{report}");
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn round(v: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (v * k).round() / k
}
