//! Run records read back: every filter, combined filters, pages that walk
//! every run exactly once while runs keep being recorded, one run by id,
//! and retention by count and by age across a restart. Real guests: the
//! panicker (`ok` on a calm event, `trap` otherwise) and the pure reader
//! (`guest_error` without its secret).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use keyhole_runtime::{DeploySpec, RunPage, RunQuery, RunRecord, RuntimeConfig};
use keyhole_tests::*;

/// `prod` (spaces `team-a`, `team-b`) and `dev`; `moody` (the panicker)
/// listens in prod, `reader` (the pure reader) in dev.
fn world(config: RuntimeConfig) -> Harness {
    let h = Harness::with_config(config);
    h.scopes("prod", &["team-a", "team-b"]);
    h.scopes("dev", &[]);
    h.deploy(PANICKER, DeploySpec::new("moody", "prod"));
    h.deploy(PURE_READER, DeploySpec::new("reader", "dev"));
    h
}

fn page(h: &Harness, q: RunQuery) -> RunPage {
    h.runtime
        .runs_page(&RunQuery { limit: 1_000, ..q })
        .unwrap()
}

fn ids(runs: &[RunRecord]) -> Vec<u64> {
    runs.iter().map(|r| r.id).collect()
}

fn calm(h: &Harness, env: &str, space: Option<&str>) -> RunRecord {
    h.emit("t", env, space, r#"{"mood":"calm"}"#).remove(0)
}

#[test]
fn each_filter_and_their_combination_select_the_runs_they_say() {
    let h = world(RuntimeConfig::default());
    // A few ms apart, so start times tell them apart.
    let pause = || std::thread::sleep(Duration::from_millis(5));
    let a = calm(&h, "prod", Some("team-a")); // 1 ok
    pause();
    let b = h
        .emit("t", "prod", Some("team-b"), r#"{"mood":"storm"}"#)
        .remove(0); // 2 trap
    pause();
    let c = h.emit("t", "dev", None, "{}").remove(0); // 3 guest_error
    pause();
    let d = calm(&h, "prod", None); // 4 ok
    assert_eq!(
        ids(&[a.clone(), b.clone(), c.clone(), d.clone()]),
        [1, 2, 3, 4]
    );
    assert_eq!(
        [a.outcome.label(), b.outcome.label(), c.outcome.label()],
        ["ok", "trap", "guest_error"]
    );
    let q = RunQuery::default;
    let got = |q: RunQuery| ids(&page(&h, q).runs);
    assert_eq!(got(q()), [4, 3, 2, 1]);
    assert_eq!(
        got(RunQuery {
            environment: Some("dev".into()),
            ..q()
        }),
        [3]
    );
    assert_eq!(
        got(RunQuery {
            space: Some("team-b".into()),
            ..q()
        }),
        [2]
    );
    assert_eq!(
        got(RunQuery {
            listener: Some("moody".into()),
            ..q()
        }),
        [4, 2, 1]
    );
    assert_eq!(
        got(RunQuery {
            outcomes: Some(vec!["trap".into()]),
            ..q()
        }),
        [2]
    );
    let failed = Some(vec!["trap".into(), "guest_error".into()]);
    assert_eq!(
        got(RunQuery {
            outcomes: failed,
            ..q()
        }),
        [3, 2]
    );
    assert_eq!(
        got(RunQuery {
            event_id: Some(c.event_id.clone()),
            ..q()
        }),
        [3]
    );
    assert_eq!(
        got(RunQuery {
            since_ms: Some(c.started_at_ms),
            ..q()
        }),
        [4, 3]
    );
    assert_eq!(
        got(RunQuery {
            until_ms: Some(b.started_at_ms),
            ..q()
        }),
        [2, 1]
    );
    let combined = RunQuery {
        listener: Some("moody".into()),
        environment: Some("prod".into()),
        outcomes: Some(vec!["ok".into()]),
        until_ms: Some(d.started_at_ms),
        ..q()
    };
    assert_eq!(got(combined.clone()), [4, 1]);
    assert_eq!(
        got(RunQuery {
            space: Some("team-a".into()),
            ..combined
        }),
        [1]
    );
    assert_eq!(
        got(RunQuery {
            listener: Some("nobody".into()),
            ..q()
        }),
        Vec::<u64>::new()
    );
}

#[test]
fn pages_walk_every_run_once_while_runs_are_recorded() {
    let h = world(RuntimeConfig::default());
    for _ in 0..60 {
        calm(&h, "prod", None);
    }
    let runtime = h.runtime.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let emitter = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut emitted = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && emitted < 2_000 {
                let event = keyhole_runtime::Event::new("t", "prod", None)
                    .with_payload(r#"{"mood":"calm"}"#);
                runtime.emit_blocking(&event).unwrap();
                emitted += 1;
            }
            emitted
        })
    };
    let (mut seen, mut before, started) = (Vec::new(), None, Instant::now());
    loop {
        let p = h
            .runtime
            .runs_page(&RunQuery {
                listener: Some("moody".into()),
                before,
                limit: 7,
                ..RunQuery::default()
            })
            .unwrap();
        seen.extend(ids(&p.runs));
        assert!(
            p.runs.len() == 7 || p.next.is_none(),
            "only the last page is short"
        );
        match p.next {
            Some(next) => before = Some(next),
            None => break,
        }
        assert!(
            started.elapsed() < Duration::from_secs(20) && seen.len() < 10_000,
            "the walk ends"
        );
        std::thread::sleep(Duration::from_millis(2)); // let runs be recorded in between
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let emitted = emitter.join().unwrap();
    assert!(emitted > 0, "runs were recorded during the walk");
    let top = seen[0];
    assert!(top >= 60);
    assert_eq!(
        seen,
        (1..=top).rev().collect::<Vec<_>>(),
        "no gap, no repeat"
    );
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len());
}

#[test]
fn a_run_is_read_by_id() {
    let h = world(RuntimeConfig::default());
    let first = calm(&h, "prod", Some("team-a"));
    let second = h.emit("t", "dev", None, "{}").remove(0);
    assert_eq!(
        h.runtime.run_record(first.id).unwrap().as_ref(),
        Some(&first)
    );
    assert_eq!(
        h.runtime.run_record(second.id).unwrap().as_ref(),
        Some(&second)
    );
    assert_eq!(h.runtime.run_record(second.id + 1).unwrap(), None);
    assert_eq!(h.runtime.run_record(0).unwrap(), None);
}

#[test]
fn retention_by_count_holds_across_a_restart() {
    let config = || RuntimeConfig {
        max_run_records: 20,
        ..RuntimeConfig::default()
    };
    let h = world(config());
    for _ in 0..50 {
        calm(&h, "prod", None);
    }
    let kept = page(&h, RunQuery::default());
    assert_eq!(ids(&kept.runs), (31..=50).rev().collect::<Vec<_>>());
    assert_eq!(kept.next, None, "nothing older is shown");
    assert_eq!(h.runtime.run_record(30).unwrap(), None);
    let h = h.restart_with(config());
    assert_eq!(
        ids(&page(&h, RunQuery::default()).runs),
        (31..=50).rev().collect::<Vec<_>>()
    );
    assert_eq!(calm(&h, "prod", None).id, 51, "ids continue");
    assert_eq!(page(&h, RunQuery::default()).runs.len(), 20);
}

#[test]
fn retention_by_age_holds_across_a_restart() {
    let max_age = Duration::from_millis(600);
    let config = || RuntimeConfig {
        max_run_age: Some(max_age),
        ..RuntimeConfig::default()
    };
    let h = world(config());
    for _ in 0..5 {
        calm(&h, "prod", None);
    }
    assert_eq!(page(&h, RunQuery::default()).runs.len(), 5);
    let h = h.restart_with(config());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !page(&h, RunQuery::default()).runs.is_empty() {
        assert!(Instant::now() < deadline, "runs outlived their age");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(h.runtime.run_record(5).unwrap(), None);
    let sixth = calm(&h, "prod", None);
    assert_eq!(sixth.id, 6);
    assert_eq!(ids(&page(&h, RunQuery::default()).runs), [6]);
    // Expired segments are deleted from disk, and ids still continue.
    let runs_dir = h.data_dir().join("runs");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !page(&h, RunQuery::default()).runs.is_empty()
        || std::fs::read_dir(&runs_dir).unwrap().count() > 1
    {
        assert!(Instant::now() < deadline, "expired runs stayed on disk");
        std::thread::sleep(Duration::from_millis(50));
    }
    let h = h.restart_with(config());
    assert_eq!(calm(&h, "prod", None).id, 7);
}
