//! The default run log: JSON lines in segment files under `DATA/runs/`.
//!
//! Records are an append-only log of JSON lines in segment files, each named
//! by the id of its first record (zero-padded, so name order is run order;
//! `segments.rs`). Run ids are consecutive, counted by the log, and continue
//! across restarts. The oldest segments are deleted beyond
//! `RuntimeConfig::max_run_records`.
//!
//! Not a bucket of the storage seam: run records are the one high-volume
//! write, and the embedded backend's per-insert cost was most of the writer
//! thread's time, with a flush deadlock under that load (see
//! `keyhole-kv-embedded`'s docs). Appending lines to a file needs neither.
//! Secrets and deployments, which are few and small, stay in buckets.
//!
//! Records are written by a background thread in batches (the shared
//! segmented log, `keyhole-seglog`), without an fsync on the hot path (a
//! crash can lose the last moments of records, never corrupt earlier ones:
//! a torn last line is cut off on open). [`crate::Runtime::flush`] syncs
//! them to disk; secret writes, by contrast, are flushed before they are
//! acknowledged. Each line is written by hand (`line.rs`), the same bytes
//! serde would write.

mod line;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyhole_audit::AuditLog;
use keyhole_seglog::{Config, Hooks, SegLog};

use crate::error::RuntimeError;
use crate::runs::record::RunRecord;
use crate::runs::{RunLog, RunQuery};

/// How long `sync` waits for the disk before reporting an error.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The run-record log, written by a background thread.
///
/// Writing a record costs far more than queueing it, so the dispatch path
/// only serializes it onto the log's buffer: no copy of the record, no
/// per-record allocation, and no per-record frees on the writer thread
/// (which made glibc's malloc consolidate on the hot path). No thread is
/// woken per record. Readers ([`RunLog::query`]) see everything appended
/// before them, so callers read their own runs.
pub(crate) struct JsonlRunLog {
    log: SegLog,
    /// The audit log this log's records wait for, if audited.
    audit: Option<Arc<AuditLog>>,
}

/// Run records are stored as appended, but never before the audit entries
/// accepted before them: a record says which secrets a run read, and a
/// crash must never leave a record whose reads the audit log lacks.
struct RunHooks {
    audit: Option<Arc<AuditLog>>,
}

impl Hooks for RunHooks {
    fn before_write(&mut self, mark: u64, closing: &dyn Fn() -> bool) {
        let Some(audit) = &self.audit else { return };
        while !audit.wait_written(mark, AUDIT_WAIT) {
            if closing() {
                tracing::warn!("run records written before audit entries they follow, at shutdown");
                return;
            }
        }
    }
}

/// How long the writer waits for the audit log before checking whether it
/// is shutting down.
const AUDIT_WAIT: Duration = Duration::from_millis(100);

impl JsonlRunLog {
    /// Opens (creating) the log in `dir`, keeping about `keep` records;
    /// records wait for `audit`'s entries.
    pub(crate) fn open(
        dir: &Path,
        keep: usize,
        audit: Option<Arc<AuditLog>>,
    ) -> Result<Self, RuntimeError> {
        let hooks = RunHooks {
            audit: audit.clone(),
        };
        let log = SegLog::open(dir, Config::keeping("keyhole-runs", keep), |_, _| Ok(hooks))
            .map_err(|e| RuntimeError::io(dir, e))?;
        Ok(JsonlRunLog { log, audit })
    }
}

impl RunLog for JsonlRunLog {
    /// Gives `record` the next run id and queues it, as a JSON line, for
    /// storage.
    fn append(&self, record: &mut RunRecord) -> u64 {
        // Every audit entry accepted so far, this run's reads among them.
        let mark = self.audit.as_ref().map_or(0, |a| a.appended());
        self.log.append(mark, |id, out| {
            record.id = id;
            line::write(out, record);
        })
    }

    /// Waits until every record appended so far is written and on disk.
    fn sync(&self) -> Result<(), RuntimeError> {
        self.log
            .sync(SYNC_TIMEOUT)
            .map_err(|e| RuntimeError::Corrupt(format!("writing run records: {e}")))
    }

    /// Newest first, optionally only one listener's, at most `limit`.
    fn query(&self, query: &RunQuery) -> Result<Vec<RunRecord>, RuntimeError> {
        let limit = query.limit;
        let mut out = Vec::new();
        let mut bad = None;
        if limit == 0 {
            return Ok(out);
        }
        self.log
            .newest_first(|line| {
                match serde_json::from_slice::<RunRecord>(line) {
                    Ok(record) if query.matches(&record) => {
                        out.push(record);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        bad = Some(RuntimeError::Corrupt(format!("run record: {e}")));
                        return ControlFlow::Break(());
                    }
                }
                if out.len() >= limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .map_err(|e| RuntimeError::Corrupt(format!("reading run records: {e}")))?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;
    use crate::runs::record::Outcome;

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
        }
    }

    impl JsonlRunLog {
        /// The tests' shorthand for a [`RunLog::query`].
        fn recent(
            &self,
            listener: Option<&str>,
            limit: usize,
        ) -> Result<Vec<RunRecord>, RuntimeError> {
            self.query(&RunQuery::recent(listener, limit))
        }
    }

    fn runs_dir(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("runs")
    }

    fn append_n(log: &JsonlRunLog, listener: &str, range: std::ops::Range<usize>) -> Vec<u64> {
        range
            .map(|n| {
                let mut r = record(listener, n);
                log.append(&mut r);
                r.id
            })
            .collect()
    }

    #[test]
    fn ids_are_consecutive_and_continue_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let log = JsonlRunLog::open(&runs_dir(&dir), 1000, None).unwrap();
        assert_eq!(append_n(&log, "a", 0..150), (1..=150).collect::<Vec<_>>());
        log.sync().unwrap();
        drop(log);
        let log = JsonlRunLog::open(&runs_dir(&dir), 1000, None).unwrap();
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
        let log = JsonlRunLog::open(&runs_dir(&dir), 1000, None).unwrap();
        let mut quiet = record("q", 0);
        quiet.stdout.clear();
        log.append(&mut quiet);
        let mut busy = record("b", 1);
        busy.stderr = "err".into();
        busy.output_dropped = 7;
        busy.secrets_read = vec!["TOKEN".into()];
        log.append(&mut busy);
        log.sync().unwrap();
        let text =
            std::fs::read_to_string(&keyhole_seglog::segments(&runs_dir(&dir)).unwrap()[0].1)
                .unwrap();
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
        let log = JsonlRunLog::open(&runs_dir(&dir), 1000, None).unwrap();
        for n in 0..300 {
            let listener = if n % 10 == 0 { "rare" } else { "common" };
            log.append(&mut record(listener, n));
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
        let log = JsonlRunLog::open(&runs_dir(&dir), keep, None).unwrap();
        for round in 0..10 {
            append_n(&log, "a", round * 100..round * 100 + 100);
            log.sync().unwrap();
        }
        let all = log.recent(None, usize::MAX).unwrap();
        assert!(
            (keep..=keep + keep / 10 + keep / 8).contains(&all.len()),
            "{} records kept",
            all.len()
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
        let log = JsonlRunLog::open(&runs_dir(&dir), 1000, None).unwrap();
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
        let log = JsonlRunLog::open(&runs_dir(&dir), 1000, None).unwrap();
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
        let log = JsonlRunLog::open(&runs_dir(&dir), 1000, None).unwrap();
        match log.recent(None, 10) {
            Err(RuntimeError::Corrupt(m)) => assert!(m.contains("run record"), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Appends still work, after the corrupt line.
        assert_eq!(append_n(&log, "a", 0..1), vec![8]);
    }
}
