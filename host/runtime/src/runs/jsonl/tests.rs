//! The JSONL run log's tests: ids and lines as written, torn and corrupt
//! files, retention on disk. Queries, pages, `get` and retention as
//! readers see it are in `tests/queries.rs`.

use std::io::Write;
use std::path::PathBuf;

use super::*;
use crate::runs::record::Outcome;

mod queries;

fn record(listener: &str, n: usize) -> RunRecord {
    RunRecord {
        id: 0,
        event_id: format!("ev_{n}"),
        topic: "t".into(),
        environment: "e".into(),
        space: None,
        listener: listener.into(),
        module_hash: "00".into(),
        outcome: Outcome::Ok {
            value: format!("line one\nline two {n}"),
        },
        started_at_ms: 0,
        duration_us: 1,
        stdout: "out\n".into(),
        stderr: String::new(),
        output_dropped: 0,
        secrets_read: vec![],
        http: vec![],
        notes: vec![],
        delivery: 1,
    }
}

impl JsonlRunLog {
    /// The tests' shorthand for a [`RunLog::query`].
    fn recent(&self, listener: Option<&str>, limit: usize) -> Result<Vec<RunRecord>, RuntimeError> {
        self.query(&RunQuery::recent(listener, limit))
    }
}

fn runs_dir(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("runs")
}

fn open(dir: &tempfile::TempDir, keep: usize) -> Result<JsonlRunLog, RuntimeError> {
    let retention = Retention {
        keep,
        max_age: None,
    };
    JsonlRunLog::open(&runs_dir(dir), retention, None)
}

fn append_n(log: &JsonlRunLog, listener: &str, range: std::ops::Range<usize>) -> Vec<u64> {
    range
        .map(|n| {
            let mut r = record(listener, n);
            log.append(&mut r).unwrap();
            r.id
        })
        .collect()
}

#[test]
fn ids_are_consecutive_and_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir, 1000).unwrap();
    assert_eq!(append_n(&log, "a", 0..150), (1..=150).collect::<Vec<_>>());
    log.sync().unwrap();
    drop(log);
    let log = open(&dir, 1000).unwrap();
    assert_eq!(append_n(&log, "b", 0..3), vec![151, 152, 153]);
    let recent = log.recent(None, 5).unwrap();
    let ids: Vec<u64> = recent.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![153, 152, 151, 150, 149]);
    // Newlines inside strings survive the JSON-lines format.
    assert_eq!(recent[0].outcome, record("b", 2).outcome);
    assert_eq!(recent[0].stdout, "out\n");
    // Dropping the log wrote everything; nothing was lost in between.
    assert_eq!(log.recent(None, usize::MAX).unwrap().len(), 153);
}

#[test]
fn empty_fields_are_left_out_of_the_line_and_read_back_empty() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir, 1000).unwrap();
    let mut quiet = record("q", 0);
    quiet.stdout.clear();
    log.append(&mut quiet).unwrap();
    let mut busy = record("b", 1);
    busy.stderr = "err".into();
    busy.output_dropped = 7;
    busy.secrets_read = vec!["TOKEN".into()];
    log.append(&mut busy).unwrap();
    log.sync().unwrap();
    let text =
        std::fs::read_to_string(&keyhole_seglog::segments(&runs_dir(&dir)).unwrap()[0].1).unwrap();
    let quiet_line = text.lines().next().unwrap();
    for field in ["stdout", "stderr", "output_dropped", "secrets_read", "http"] {
        assert!(!quiet_line.contains(field), "{field} in {quiet_line}");
    }
    let recent = log.recent(None, 2).unwrap();
    assert_eq!(recent, vec![busy, quiet]);
}

#[test]
fn recent_filters_by_listener_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir, 1000).unwrap();
    for n in 0..300 {
        let listener = if n % 10 == 0 { "rare" } else { "common" };
        log.append(&mut record(listener, n)).unwrap();
    }
    let rare = log.recent(Some("rare"), 100).unwrap();
    assert_eq!(rare.len(), 30);
    assert!(rare.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(rare[0].event_id, "ev_290");
    assert_eq!(log.recent(Some("common"), 7).unwrap().len(), 7);
    assert!(log.recent(Some("nobody"), 10).unwrap().is_empty());
    let files = std::fs::read_dir(runs_dir(&dir)).unwrap().count();
    assert!(files > 1, "300 records in {files} segment(s)");
}

#[test]
fn old_segments_are_trimmed_beyond_keep() {
    let dir = tempfile::tempdir().unwrap();
    let keep = 200;
    let log = open(&dir, keep).unwrap();
    for round in 0..10 {
        append_n(&log, "a", round * 100..round * 100 + 100);
        log.sync().unwrap();
    }
    let all = log.recent(None, usize::MAX).unwrap();
    assert_eq!(all.len(), keep, "readers see exactly the newest `keep`");
    let mut on_disk = 0;
    keyhole_seglog::read_oldest_first(&runs_dir(&dir), |_| {
        on_disk += 1;
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert!(
        (keep..=keep + keep / 10 + keep / 8).contains(&on_disk),
        "{on_disk} records on disk"
    );
    assert_eq!(
        all[0].event_id,
        "a_999".replace("a_", "ev_"),
        "the newest are kept"
    );
    assert!(all.windows(2).all(|w| w[0].id == w[1].id + 1), "no gaps");
}

#[test]
fn a_torn_last_line_is_cut_off_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(&dir, 1000).unwrap();
    append_n(&log, "a", 0..5);
    drop(log);
    let (_, last) = keyhole_seglog::segments(&runs_dir(&dir))
        .unwrap()
        .pop()
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(br#"{"id":6,"event_id":"half a rec"#).unwrap();
    drop(f);
    let log = open(&dir, 1000).unwrap();
    assert_eq!(append_n(&log, "b", 0..1), vec![6]);
    let ids: Vec<u64> = log.recent(None, 10).unwrap().iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![6, 5, 4, 3, 2, 1]);
}

#[test]
fn a_corrupt_record_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(runs_dir(&dir)).unwrap();
    std::fs::write(
        runs_dir(&dir).join(format!("{:020}.jsonl", 7)),
        b"{not json\n",
    )
    .unwrap();
    let log = open(&dir, 1000).unwrap();
    match log.recent(None, 10) {
        Err(RuntimeError::Corrupt(m)) => assert!(m.contains("run record"), "{m}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Appends still work, after the corrupt line.
    assert_eq!(append_n(&log, "a", 0..1), vec![8]);
}
