//! The daemon under large runs, with `serve --max-memory 1GiB`: a listener
//! deployed with `--memory 256MiB` that touches 240 MiB per run, 30 times
//! alone and then from 4 concurrent clients. The daemon's resident memory
//! (its /proc/PID/status, sampled after every run and throughout) stays
//! under the budget, falls back when runs end, and `/metrics` shows the
//! budget and what the pool keeps resident. Then runs beyond the budget:
//! they wait (at most their timeout) or are refused at once, recorded as
//! `memory_budget`, and the daemon stays healthy.
//!
//! Its own test binary, so no other test's daemons share the machine's
//! memory with it while it measures.

mod common;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use keyhole_tests::{MEMORY_TOUCHER, PURE_READER, SPIN_LOOP, fnv};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;
const BUDGET: u64 = 1 << 30;
const TOKEN_VALUE: &str = "memory-budget-neighbour-token";

/// `VmRSS` and `VmHWM` (peak) of process `pid`, in bytes.
fn rss_and_peak(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The value of an unlabelled metric in a `/metrics` text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

fn emit(h: &Http, topic: &str, mib: u64) -> Value {
    let body = json!({"topic": topic, "environmentId": "prod", "payload": {"mib": mib}});
    let r = h.post_json("/v1/events", &body);
    assert_eq!(r.status, 200, "{r:?}");
    let mut v = r.json();
    let runs = v["runs"].as_array_mut().expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs.remove(0)
}

/// An installation with environment `prod`, its `SLACK_TOKEN`, a
/// well-behaved `neighbour` on topic `tick`, and `deploys` (guest, name,
/// topic, limits), all deployed through the CLI before the daemon starts.
fn install(deploys: &[(&str, &str, &str, &str, &str)]) -> (Install, String) {
    let k = Install::new();
    let token = k.init();
    k.scopes("prod", &[]);
    let out = k.run_stdin(
        &["secrets", "set", "SLACK_TOKEN", "--env", "prod"],
        TOKEN_VALUE,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let neighbour = ["--name", "neighbour", "--env", "prod", "--topic", "tick"];
    k.ok(&[&["deploy", PURE_READER][..], &neighbour].concat());
    for (guest, name, topic, memory, timeout) in deploys {
        let args = ["--name", name, "--env", "prod", "--topic", topic];
        let limits = ["--memory", memory, "--timeout", timeout];
        k.ok(&[&["deploy", guest][..], &args, &limits].concat());
    }
    (k, token)
}

fn assert_healthy(h: &Http) {
    assert_eq!(h.get("/healthz").status, 200);
    let run = emit(h, "tick", 0);
    assert_eq!(run["outcome"]["kind"], "ok", "{run}");
    assert_eq!(run["outcome"]["value"], fnv(TOKEN_VALUE).as_str());
}

#[test]
fn large_runs_alone_and_concurrent_keep_the_daemon_under_its_memory_budget() {
    let (k, token) = install(&[(MEMORY_TOUCHER, "toucher", "touch", "256MiB", "30s")]);
    let server = Server::start(&k, &token, &["--max-memory", "1GiB"]);
    let pid = server.child.id();
    let h = server.http();
    assert_healthy(&h);
    let text = h.get("/metrics").body;
    assert_eq!(metric(&text, "keyhole_memory_budget_bytes"), BUDGET);
    let allowance = metric(&text, "keyhole_memory_budget_pool_allowance_bytes");
    assert!(allowance > 0 && allowance < BUDGET / 4, "{allowance}");
    let (idle, _) = rss_and_peak(pid);

    // Alone: after each run the daemon holds no more than it did idle plus
    // what the pool may keep (before the fix: 255, 495, ... 3,135 MiB).
    let mut after = Vec::new();
    for _ in 0..30 {
        let run = emit(&h, "touch", 240);
        assert_eq!(run["outcome"]["kind"], "ok", "{run}");
        let (rss, _) = rss_and_peak(pid);
        after.push(rss >> 20);
        assert!(
            rss < idle + allowance,
            "RSS {} MiB after a run: {after:?}",
            rss >> 20
        );
    }
    let (_, peak_alone) = rss_and_peak(pid);
    eprintln!(
        "alone: idle {} MiB, after each run {after:?} MiB, peak {} MiB",
        idle >> 20,
        peak_alone >> 20
    );

    // 4 clients at once, 8 runs each: RSS sampled every 10 ms and after
    // every run stays under the budget (at most three 256 MiB runs fit
    // beside the pool's allowance; the fourth waits).
    let sampling = AtomicBool::new(true);
    let sampled_peak = Mutex::new(0u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            while sampling.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(300) {
                let (rss, _) = rss_and_peak(pid);
                let mut peak = sampled_peak.lock().unwrap();
                *peak = (*peak).max(rss);
                drop(peak);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let clients: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let h = server.http();
                    for _ in 0..8 {
                        let run = emit(&h, "touch", 240);
                        assert_eq!(run["outcome"]["kind"], "ok", "{run}");
                        let (rss, _) = rss_and_peak(pid);
                        assert!(rss < BUDGET, "RSS {} MiB after a run", rss >> 20);
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        sampling.store(false, Ordering::Relaxed);
    });
    let (rss_after, peak) = rss_and_peak(pid);
    let sampled = *sampled_peak.lock().unwrap();
    eprintln!(
        "4 clients: sampled peak {} MiB, VmHWM {} MiB, right after {} MiB, in {:?}",
        sampled >> 20,
        peak >> 20,
        rss_after >> 20,
        start.elapsed()
    );
    assert!(peak < BUDGET, "peak RSS {} MiB", peak >> 20);
    std::thread::sleep(Duration::from_secs(1));
    let (rss_later, _) = rss_and_peak(pid);
    eprintln!("a second later: {} MiB", rss_later >> 20);
    assert!(rss_later < idle + allowance, "{} MiB", rss_later >> 20);

    let text = h.get("/metrics").body;
    let retained = metric(&text, "keyhole_pool_retained_bytes");
    assert!(
        retained > 0 && retained <= allowance,
        "{retained} of {allowance}"
    );
    assert_eq!(metric(&text, "keyhole_memory_budget_reserved_bytes"), 0);
    assert_eq!(metric(&text, "keyhole_memory_budget_refusals_total"), 0);
    assert!(metric(&text, "keyhole_pool_warm_memory_slots") >= 1);
    eprintln!(
        "metrics: retained {} KiB, waits {}",
        retained >> 10,
        metric(&text, "keyhole_memory_budget_waits_total")
    );
    assert_healthy(&h);
    assert!(server.terminate().success());
}

#[test]
fn runs_beyond_the_budget_wait_or_are_refused_and_the_daemon_stays_healthy() {
    let (k, token) = install(&[
        (SPIN_LOOP, "hog", "hog", "128MiB", "3s"),
        (MEMORY_TOUCHER, "late", "late", "128MiB", "300ms"),
        (MEMORY_TOUCHER, "huge", "huge", "512MiB", "5s"),
    ]);
    let server = Server::start(&k, &token, &["--max-memory", "256MiB"]);
    let h = server.http();
    assert_healthy(&h);

    // Never fits a 256 MiB budget: refused at once, nothing run.
    let run = emit(&h, "huge", 1);
    assert_eq!(run["outcome"]["kind"], "memory_budget", "{run}");
    assert_eq!(run["outcome"]["limit_bytes"], 512 * MIB);
    assert_eq!(run["outcome"]["budget_bytes"], 256 * MIB);
    assert_eq!(run["outcome"]["waited_ms"], 0);

    // The hog reserves its 128 MiB for its 3 s; the late run's 128 MiB
    // does not fit beside it, so it waits its 300 ms timeout and is refused.
    std::thread::scope(|s| {
        let hog = s.spawn(|| emit(&server.http(), "hog", 0));
        let deadline = Instant::now() + Duration::from_secs(10);
        while metric(
            &h.get("/metrics").body,
            "keyhole_memory_budget_reserved_bytes",
        ) == 0
        {
            assert!(Instant::now() < deadline, "the hog never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        let run = emit(&h, "late", 100);
        assert_eq!(run["outcome"]["kind"], "memory_budget", "{run}");
        let waited = run["outcome"]["waited_ms"].as_u64().unwrap();
        assert!((300..2_900).contains(&waited), "waited {waited} ms");
        // A small run fits beside the hog meanwhile.
        assert_healthy(&h);
        let hog = hog.join().unwrap();
        assert_eq!(hog["outcome"]["kind"], "deadline", "{hog}");
    });

    // Recorded like any run, counted in metrics; and with the hog gone the
    // late listener runs.
    let recorded = h.get("/v1/runs?listener=late").json()["runs"].clone();
    assert_eq!(
        recorded[0]["outcome"]["kind"], "memory_budget",
        "{recorded}"
    );
    let text = h.get("/metrics").body;
    assert!(
        text.contains("keyhole_runs_total{outcome=\"memory_budget\"} 2"),
        "{text}"
    );
    assert_eq!(metric(&text, "keyhole_memory_budget_refusals_total"), 2);
    let run = emit(&h, "late", 100);
    assert_eq!(run["outcome"]["kind"], "ok", "{run}");
    assert_healthy(&h);
    assert!(server.terminate().success());

    // Out of range budgets are usage errors.
    let out = k.run(&["serve", "--max-memory", "100MiB"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("256MiB"), "{out:?}");
}
