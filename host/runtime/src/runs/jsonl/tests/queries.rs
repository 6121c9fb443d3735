//! Queries on the JSONL run log: every filter, pages under concurrent
//! appends, which segments a query reads, `get`, and retention as readers
//! see it, across a reopen.

use std::sync::Arc;
use std::time::Duration;

use super::*;

/// Run `n` of a varied log: listeners `l0`..`l2`, environments `prod` and
/// `dev`, every third in space `s`, every fifth a deadline, started at
/// `1_000 + n` ms.
fn varied(n: usize) -> RunRecord {
    let mut r = record(&format!("l{}", n % 3), n);
    r.environment = if n.is_multiple_of(2) { "prod" } else { "dev" }.into();
    r.space = n.is_multiple_of(3).then(|| "s".into());
    if n.is_multiple_of(5) {
        r.outcome = Outcome::Deadline { timeout_ms: 5 };
    }
    r.started_at_ms = 1_000 + n as u64;
    r
}

fn ids(runs: &[RunRecord]) -> Vec<u64> {
    runs.iter().map(|r| r.id).collect()
}

#[test]
fn every_filter_and_their_combination_select_what_they_say() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir, 1000).unwrap(); // 125 runs a segment
    let all: Vec<RunRecord> = (0..400)
        .map(|n| {
            let mut r = varied(n);
            log.append(&mut r).unwrap();
            r
        })
        .collect();
    let check = |q: RunQuery| {
        let want: Vec<u64> = all
            .iter()
            .rev()
            .filter(|r| q.matches(r))
            .map(|r| r.id)
            .collect();
        assert!(!want.is_empty(), "{q:?} selects something");
        assert_eq!(
            ids(&log
                .query(&RunQuery {
                    limit: 1000,
                    ..q.clone()
                })
                .unwrap()),
            want
        );
        // Twice: the second time with every complete segment summed up.
        assert_eq!(
            ids(&log.query(&RunQuery { limit: 1000, ..q }).unwrap()),
            want
        );
    };
    let q = RunQuery::default;
    check(RunQuery {
        listener: Some("l1".into()),
        ..q()
    });
    check(RunQuery {
        environment: Some("dev".into()),
        ..q()
    });
    check(RunQuery {
        space: Some("s".into()),
        ..q()
    });
    check(RunQuery {
        outcomes: Some(vec!["deadline".into()]),
        ..q()
    });
    check(RunQuery {
        event_id: Some("ev_123".into()),
        ..q()
    });
    check(RunQuery {
        since_ms: Some(1_350),
        ..q()
    });
    check(RunQuery {
        until_ms: Some(1_010),
        ..q()
    });
    check(RunQuery {
        listener: Some("l0".into()),
        environment: Some("prod".into()),
        space: Some("s".into()),
        outcomes: Some(vec!["ok".into(), "deadline".into()]),
        since_ms: Some(1_100),
        until_ms: Some(1_300),
        before: Some(250),
        ..q()
    });
    let none = RunQuery {
        listener: Some("l9".into()),
        limit: 10,
        ..q()
    };
    assert!(log.query(&none).unwrap().is_empty());
}

#[test]
fn pages_walk_every_run_once_while_runs_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(&dir, 100_000).unwrap()); // 4096 a segment
    let total = 5_000;
    append_n(&log, "a", 0..total);
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || append_n(&log, "new", 0..3_000))
    };
    let (mut seen, mut before, mut pages) = (Vec::new(), None, 0);
    loop {
        let q = RunQuery {
            listener: Some("a".into()),
            before,
            limit: 97,
            ..RunQuery::default()
        };
        let runs = log.query(&q).unwrap();
        pages += 1;
        assert!(pages <= total / 97 + 2, "the walk ends");
        seen.extend(ids(&runs));
        match runs.len() {
            97 => before = runs.last().map(|r| r.id),
            _ => break,
        }
    }
    writer.join().unwrap();
    assert_eq!(
        seen,
        (1..=total as u64).rev().collect::<Vec<_>>(),
        "no gap, no repeat"
    );
}

/// Overwrites the segment file starting at `first` with lines that do not
/// parse: a query that reads it fails.
fn spoil(dir: &tempfile::TempDir, first: u64) {
    let path = keyhole_seglog::segments(&runs_dir(dir))
        .unwrap()
        .into_iter()
        .find(|(f, _)| *f == first)
        .unwrap()
        .1;
    std::fs::write(path, b"{spoiled\n").unwrap();
}

#[test]
fn a_query_reads_only_the_segments_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir, 160).unwrap(); // 20 runs a segment
    for n in 0..100 {
        let mut r = record(if n < 20 { "early" } else { "late" }, n);
        log.append(&mut r).unwrap();
    }
    log.sync().unwrap();
    // The cursor passes over newer segments by name.
    spoil(&dir, 81);
    let q = RunQuery {
        before: Some(81),
        limit: 10,
        ..RunQuery::default()
    };
    assert_eq!(
        ids(&log.query(&q).unwrap()),
        (71..=80).rev().collect::<Vec<_>>()
    );
    assert!(
        log.query(&RunQuery::recent(None, 1)).is_err(),
        "the spoiled one is read"
    );
    // Summaries pass over segments without a match, once read.
    let early = RunQuery {
        listener: Some("early".into()),
        before: Some(81),
        limit: 100,
        ..RunQuery::default()
    };
    assert_eq!(log.query(&early).unwrap().len(), 20);
    spoil(&dir, 41);
    assert_eq!(
        log.query(&early).unwrap().len(),
        20,
        "segment 41 was not read"
    );
    assert_eq!(
        log.get(30).unwrap().unwrap().event_id,
        "ev_29",
        "nor by get"
    );
}

#[test]
fn get_finds_a_run_by_id_within_retention() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir, 50).unwrap(); // 16 a segment
    append_n(&log, "a", 0..200);
    log.sync().unwrap();
    assert_eq!(log.get(200).unwrap().unwrap().event_id, "ev_199");
    assert_eq!(log.get(151).unwrap().unwrap().id, 151);
    assert_eq!(log.get(150).unwrap(), None, "beyond the newest 50");
    assert_eq!(log.get(1).unwrap(), None);
    assert_eq!(log.get(201).unwrap(), None);
    assert_eq!(log.get(u64::MAX).unwrap(), None);
    assert_eq!(log.get(0).unwrap(), None);
}

#[test]
fn retention_by_count_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir, 50).unwrap();
    append_n(&log, "a", 0..200);
    drop(log);
    let log = open(&dir, 50).unwrap();
    let kept = log.recent(None, 1000).unwrap();
    assert_eq!(ids(&kept), (151..=200).rev().collect::<Vec<_>>());
    assert_eq!(append_n(&log, "a", 0..1), vec![201]);
    assert_eq!(log.recent(None, 1000).unwrap().len(), 50);
    let oldest_file = keyhole_seglog::segments(&runs_dir(&dir)).unwrap()[0].0;
    assert!(
        oldest_file > 100,
        "old segments deleted: the oldest starts at {oldest_file}"
    );
}

#[test]
fn retention_by_age_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let max_age = Duration::from_millis(400);
    let open_aging = || {
        let retention = Retention {
            keep: 1000,
            max_age: Some(max_age),
        };
        JsonlRunLog::open(&runs_dir(&dir), retention, None).unwrap()
    };
    let log = open_aging();
    let now = crate::now_ms();
    for n in 0..30 {
        let mut r = record("a", n);
        // Ten runs that started an hour ago, then twenty just now.
        r.started_at_ms = if n < 10 { now - 3_600_000 } else { now };
        log.append(&mut r).unwrap();
    }
    let shown = log.recent(None, 100).unwrap();
    assert_eq!(
        ids(&shown),
        (11..=30).rev().collect::<Vec<_>>(),
        "old runs are never shown"
    );
    assert_eq!(log.get(5).unwrap(), None);
    drop(log);
    let log = open_aging();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while log.recent(None, 100).unwrap().len()
        + keyhole_seglog::segments(&runs_dir(&dir)).unwrap().len()
        > 1
    {
        assert!(
            std::time::Instant::now() < deadline,
            "expired runs were not deleted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(log);
    let log = open_aging();
    assert_eq!(append_n(&log, "a", 0..1), vec![31], "ids continue");
}
