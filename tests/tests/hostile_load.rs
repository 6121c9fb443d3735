//! Acceptance (runtime issue, item 3): 10,000 hostile runs — loops stopped at
//! their deadline, memory bombs refused, recursion trapped, panics — while a
//! well-behaved neighbour keeps succeeding on every event, and host RSS does
//! not grow.
//!
//! Its own test binary so that no other test's allocations move the RSS.

use keyhole_runtime::{Event, Outcome};
use keyhole_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_hostile_runs_leave_neighbours_and_rss_alone() {
    let h = Harness::with_neighbour();
    h.deploy(SPIN_LOOP, limited("spin", 1, 64));
    h.deploy(MEMORY_BOMB, limited("bomb", 5_000, 4));
    h.deploy(DEEP_RECURSION, limited("deep", 5_000, 64));
    h.deploy(PANICKER, limited("panicky", 5_000, 64));
    let expected_neighbour = Outcome::Ok {
        value: fnv("neighbour-token"),
    };

    const EVENTS: usize = 2_500; // x4 hostile listeners = 10,000 hostile runs
    const IN_FLIGHT: usize = 8;
    let mut rss_after_warmup = 0;
    let mut counts = std::collections::BTreeMap::<&'static str, usize>::new();
    for batch in 0..EVENTS / IN_FLIGHT + 1 {
        let mut tasks = Vec::new();
        for _ in 0..IN_FLIGHT {
            let rt = h.runtime.clone();
            tasks.push(tokio::spawn(async move {
                rt.emit(Event::new("tick", "prod", None)).await
            }));
        }
        for t in tasks {
            for run in t.await.unwrap().unwrap() {
                if run.listener == "neighbour" {
                    assert_eq!(run.outcome, expected_neighbour);
                    continue;
                }
                let kind = match (&run.listener[..], &run.outcome) {
                    ("spin", Outcome::Deadline { .. }) => "deadline",
                    ("bomb", Outcome::Memory { .. }) => "memory",
                    ("deep", Outcome::Trap { trap, .. }) if trap == "stack_overflow" => {
                        "stack_overflow"
                    }
                    ("panicky", Outcome::Trap { trap, .. }) if trap == "unreachable" => "panic",
                    (l, o) => panic!("unexpected outcome for {l}: {o:?}"),
                };
                *counts.entry(kind).or_default() += 1;
            }
        }
        if batch == 20 {
            rss_after_warmup = rss_bytes();
        }
    }
    let total: usize = counts.values().sum();
    assert!(total >= 10_000, "{counts:?}");
    assert!(counts.values().all(|&n| n == total / 4), "{counts:?}");

    let rss_end = rss_bytes();
    let growth = rss_end.saturating_sub(rss_after_warmup);
    eprintln!(
        "hostile runs: {counts:?}; RSS after warm-up {} MiB, at end {} MiB",
        rss_after_warmup >> 20,
        rss_end >> 20
    );
    assert!(
        growth < 48 << 20,
        "RSS grew by {} MiB over {total} hostile runs",
        growth >> 20
    );

    // Later events are unaffected.
    let runs = h
        .runtime
        .emit(Event::new("tick", "prod", None))
        .await
        .unwrap();
    assert_eq!(
        runs.iter()
            .find(|r| r.listener == "neighbour")
            .unwrap()
            .outcome,
        expected_neighbour
    );
}
