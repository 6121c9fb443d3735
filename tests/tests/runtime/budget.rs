//! The host memory budget, in process: runs reserve their memory limit
//! from it and give it back when their instance is gone, the pool keeps no
//! more than its allowance, and a run that finds no room waits for at most
//! its timeout and is then recorded as `memory_budget`, leaving the host
//! and its neighbours alone. The daemon's RSS under the budget is
//! `host/cli/tests/memory_budget.rs`.

use std::time::{Duration, Instant};

use keyhole_runtime::{Event, LINEAR_MEMORY_KEEP_RESIDENT, Outcome, RuntimeConfig};
use keyhole_tests::*;

const MIB: u64 = 1 << 20;

fn budget(bytes: u64) -> RuntimeConfig {
    RuntimeConfig::default().with_max_memory(bytes)
}

fn touch(mib: u64) -> String {
    format!("{{\"mib\": {mib}}}")
}

/// Runs touching most of their limit, one after another: each one's
/// reservation is back when its record is, the pool keeps at most the
/// keep-resident part of each slot, within its allowance, and each run
/// finds its memory zero although the slot (kept accessible between runs:
/// `engine.rs`) held the previous run's bytes.
#[test]
pub fn memory_toucher() {
    let h = Harness::with_config(budget(1 << 30));
    h.scopes("prod", &[]);
    h.deploy(MEMORY_TOUCHER, limited("toucher", 5_000, 64));
    for _ in 0..10 {
        let run = h.run_of("toucher", "tick", "prod", None, &touch(48));
        assert_eq!(
            run.outcome,
            Outcome::Ok {
                value: "touched 48 MiB (12288 pages, 0 not zero before)".into()
            }
        );
        let m = h.runtime.memory_stats();
        assert_eq!(m.reserved_bytes, 0, "{m:?}");
        assert_eq!(m.live_memories, 0, "{m:?}");
        assert!(m.warm_memory_slots >= 1, "{m:?}");
        assert!(
            m.pool_retained_bytes <= m.warm_memory_slots * (LINEAR_MEMORY_KEEP_RESIDENT + MIB),
            "{m:?}"
        );
        assert!(m.pool_retained_bytes <= m.pool_allowance_bytes, "{m:?}");
    }
    // Beyond its limit it is a memory outcome, as before.
    let run = h.run_of("toucher", "tick", "prod", None, &touch(80));
    assert_eq!(
        run.outcome,
        Outcome::Memory {
            limit_bytes: 64 * MIB
        }
    );
    let m = h.runtime.memory_stats();
    assert_eq!((m.budget_bytes, m.reserved_bytes), (1 << 30, 0), "{m:?}");
    assert_eq!((m.runs_waited, m.runs_refused), (0, 0), "{m:?}");
}

/// With a hog holding most of a 256 MiB budget (a spinning run reserves
/// its whole 128 MiB limit until its deadline), a second large run waits
/// for at most its own timeout and is recorded as `memory_budget`; a more
/// patient one runs once the hog is gone; one that can never fit is
/// refused at once; a small neighbour keeps running throughout. Both
/// emits honour the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
pub async fn a_run_beyond_the_budget_waits_then_is_recorded_as_memory_budget() {
    let h = Harness::with_config(budget(256 * MIB));
    h.scopes("prod", &[]);
    let on = |mut spec: keyhole_runtime::DeploySpec, topic: &str| {
        spec.topics = vec![topic.into()];
        spec
    };
    h.deploy(SPIN_LOOP, on(limited("hog", 8_000, 128), "hog"));
    h.deploy(MEMORY_TOUCHER, on(limited("late", 300, 128), "late"));
    h.deploy(
        MEMORY_TOUCHER,
        on(limited("patient", 20_000, 128), "patient"),
    );
    h.deploy(MEMORY_TOUCHER, on(limited("huge", 5_000, 512), "huge"));
    h.deploy(MEMORY_TOUCHER, on(limited("small", 5_000, 8), "small"));
    let emit = |topic: &str, mib: u64| {
        let rt = h.runtime.clone();
        let event = Event::new(topic, "prod", None).with_payload(touch(mib));
        tokio::spawn(async move { rt.emit(event).await.unwrap().remove(0) })
    };

    let hog = emit("hog", 0);
    // The hog's reservation is taken before its instance exists.
    let start = Instant::now();
    while h.runtime.memory_stats().reserved_bytes == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "hog never started"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let late = emit("late", 100).await.unwrap();
    let Outcome::MemoryBudget {
        limit_bytes,
        budget_bytes,
        waited_ms,
    } = late.outcome
    else {
        panic!("late: {:?}", late.outcome)
    };
    assert_eq!((limit_bytes, budget_bytes), (128 * MIB, 256 * MIB));
    assert!((300..2_900).contains(&waited_ms), "waited {waited_ms} ms");
    // The same through emit_blocking, on a thread of its own.
    let rt = h.runtime.clone();
    let blocking = tokio::task::spawn_blocking(move || {
        let event = Event::new("late", "prod", None).with_payload(touch(100));
        rt.emit_blocking(&event).unwrap().remove(0)
    });
    let late = blocking.await.unwrap();
    assert!(
        matches!(late.outcome, Outcome::MemoryBudget { waited_ms, .. } if waited_ms >= 300),
        "{:?}",
        late.outcome
    );
    // Small runs fit beside the hog.
    let small = emit("small", 4).await.unwrap();
    assert!(matches!(small.outcome, Outcome::Ok { .. }), "{small:?}");
    // Never fits: refused without waiting.
    let huge = emit("huge", 1).await.unwrap();
    assert_eq!(
        huge.outcome,
        Outcome::MemoryBudget {
            limit_bytes: 512 * MIB,
            budget_bytes: 256 * MIB,
            waited_ms: 0
        }
    );
    // Waits out the hog's 8 s deadline, then runs. (8 s, so that the steps
    // before this one finish first on a loaded machine: at 3 s, `patient`
    // sometimes came after the hog had gone, and never waited.)
    let patient = emit("patient", 100).await.unwrap();
    assert_eq!(
        patient.outcome,
        Outcome::Ok {
            value: "touched 100 MiB (25600 pages, 0 not zero before)".into()
        }
    );
    let hog = hog.await.unwrap();
    assert_eq!(hog.outcome, Outcome::Deadline { timeout_ms: 8_000 });

    // The refusals are recorded and counted like any run.
    let recorded = h.runtime.runs(Some("late"), 10).unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(
        recorded
            .iter()
            .all(|r| r.outcome.label() == "memory_budget")
    );
    let metrics = h.runtime.metrics().encode();
    assert!(
        metrics.contains("keyhole_runs_total{outcome=\"memory_budget\"} 3"),
        "{metrics}"
    );
    let m = h.runtime.memory_stats();
    assert_eq!((m.reserved_bytes, m.runs_refused), (0, 3), "{m:?}");
    assert!(m.runs_waited >= 3, "{m:?}");
    // And the host is fine: the late listener runs when there is room.
    let late = emit("late", 100).await.unwrap();
    assert!(matches!(late.outcome, Outcome::Ok { .. }), "{late:?}");
}
