//! Run records: what happened each time a listener handled an event.
//!
//! Records are an append-only log of JSON lines in segment files under
//! `DATA/runs/`, each named by the id of its first record (zero-padded, so
//! name order is run order). Run ids are consecutive, counted by the log,
//! and continue across restarts. The oldest segments are deleted beyond
//! `RuntimeConfig::max_run_records`.
//!
//! Not sled: run records are the one high-volume write, sled's per-insert
//! cost was most of the writer thread's time, and under that load sled
//! 0.34 can deadlock in `flush` (spacejam/sled#1412; seen here as a hang
//! dropping the tree after 10,000 hostile runs). Appending lines to a file
//! needs neither. Secrets and deployments, which are few and small, stay in
//! sled.
//!
//! Records are written by a background thread in batches, without an fsync
//! on the hot path (a crash can lose the last moments of records, never
//! corrupt earlier ones: a torn last line is cut off on open).
//! [`crate::Runtime::flush`] syncs them to disk; secret writes, by
//! contrast, are flushed before they are acknowledged.

use serde::{Deserialize, Serialize};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::RuntimeError;
use crate::http::HttpCall;

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// `handle` returned `ok(text)`.
    Ok { value: String },
    /// `handle` returned `err(text)`.
    GuestError { message: String },
    /// The run passed its wall-clock deadline and was interrupted.
    Deadline { timeout_ms: u64 },
    /// The guest asked for more memory (or table space) than its limit.
    Memory { limit_bytes: u64 },
    /// The guest trapped (panic, stack overflow, ...).
    Trap { trap: String, message: String },
    /// The host could not run the listener (e.g. instantiation failed).
    Failed { message: String },
}

impl Outcome {
    /// The text the run returned or failed with, if the outcome has one.
    pub(crate) fn text_mut(&mut self) -> Option<&mut String> {
        match self {
            Outcome::Ok { value: t }
            | Outcome::GuestError { message: t }
            | Outcome::Trap { message: t, .. }
            | Outcome::Failed { message: t } => Some(t),
            Outcome::Deadline { .. } | Outcome::Memory { .. } => None,
        }
    }

    /// Short label for metrics and listings.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ok { .. } => "ok",
            Outcome::GuestError { .. } => "guest_error",
            Outcome::Deadline { .. } => "deadline",
            Outcome::Memory { .. } => "memory",
            Outcome::Trap { .. } => "trap",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// One recorded run. Secret values never appear here: see `scrub.rs`.
///
/// In the log, empty output, lists and a zero drop count are left out of a
/// record's line (most runs have them), and read back as empty.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: u64,
    pub event_id: String,
    pub topic: String,
    pub listener: String,
    pub module_hash: String,
    pub outcome: Outcome,
    pub started_at_ms: u64,
    pub duration_us: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stdout: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr: String,
    /// Bytes of output dropped beyond the capture limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub output_dropped: u64,
    /// Names (never values) of the secrets this run read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets_read: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpCall>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Most records waiting for the writer, and most bytes of them; beyond
/// either `append` blocks (backpressure rather than unbounded memory). With
/// the writer's buffer and `Vec` growth, the queue holds at most about four
/// times `QUEUE_BYTES` plus one record (whose text `dispatch` caps).
const QUEUE: usize = 65_536;
const QUEUE_BYTES: usize = 64 << 20;
/// The writer wakes when this many records wait, or after [`LINGER`].
const BATCH: usize = 1_024;
const LINGER: Duration = Duration::from_millis(20);
/// A drained queue buffer bigger than this is shrunk before reuse.
const SPARE_BYTES: usize = 1 << 20;

#[derive(Default)]
struct Queue {
    /// Records waiting for the writer, as JSON lines (each ends in `\n`).
    lines: Vec<u8>,
    /// How many records `lines` holds.
    pending: usize,
    /// The id the next appended record gets.
    next_id: u64,
    /// Records ever appended; of those, how many `sync` callers want on
    /// disk, and how many are known to be on disk (sequence numbers, so no
    /// sync request is ever lost).
    appended: u64,
    sync_wanted: u64,
    synced: u64,
    closed: bool,
    last_error: Option<String>,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes appenders waiting for room and `sync` callers.
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The run-record log, written by a background thread.
///
/// Writing a record costs far more than queueing it, so the dispatch path
/// only serializes it onto the queue's buffer: no copy of the record, no
/// per-record allocation, and no per-record frees on the writer thread
/// (which made glibc's malloc consolidate on the hot path). No
/// thread is woken per record: the writer wakes every [`LINGER`] or when
/// [`BATCH`] records wait, then appends the bytes and trims old segments.
/// Readers ([`RunLog::recent`]) and [`RunLog::sync`] wait for everything
/// appended before them, so callers read their own runs.
pub(crate) struct RunLog {
    dir: PathBuf,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl RunLog {
    /// Opens (creating) the log in `dir`, keeping about `keep` records.
    pub(crate) fn open(dir: &Path, keep: usize) -> Result<Self, RuntimeError> {
        std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io(dir, e))?;
        let segments = Segments::scan(dir)?;
        let next_id = segments.next_id()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                next_id,
                ..Queue::default()
            }),
            ..Shared::default()
        });
        let writer_shared = shared.clone();
        let per_segment = (keep / 8).clamp(16, 4096);
        let writer = std::thread::Builder::new()
            .name("keyhole-runs".into())
            .spawn(move || write_loop(segments, next_id, &writer_shared, keep, per_segment))
            .map_err(|e| RuntimeError::Engine(format!("spawn run-record writer: {e}")))?;
        Ok(RunLog {
            dir: dir.to_path_buf(),
            shared,
            writer: Some(writer),
        })
    }

    /// Gives `record` the next run id and queues it, as a JSON line, for
    /// storage.
    pub(crate) fn append(&self, record: &mut RunRecord) {
        let mut q = self.shared.lock();
        while q.pending >= QUEUE || q.lines.len() >= QUEUE_BYTES {
            self.shared.work.notify_one();
            q = self
                .shared
                .progress
                .wait(q)
                .unwrap_or_else(|e| e.into_inner());
        }
        record.id = q.next_id;
        q.next_id += 1;
        // Written here, under the lock, so ids and lines stay in step.
        crate::log_line::write(&mut q.lines, record);
        q.pending += 1;
        q.appended += 1;
        if q.pending == BATCH {
            self.shared.work.notify_one();
        }
    }

    /// Waits until every record appended so far is written and on disk.
    pub(crate) fn sync(&self) -> Result<(), RuntimeError> {
        let mut q = self.shared.lock();
        let target = q.appended;
        q.sync_wanted = q.sync_wanted.max(target);
        self.shared.work.notify_one();
        while q.synced < target {
            q = self
                .shared
                .progress
                .wait(q)
                .unwrap_or_else(|e| e.into_inner());
        }
        match q.last_error.take() {
            Some(e) => Err(RuntimeError::Corrupt(format!("writing run records: {e}"))),
            None => Ok(()),
        }
    }

    /// Newest first, optionally only one listener's, at most `limit`.
    pub(crate) fn recent(
        &self,
        listener: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RuntimeError> {
        self.sync()?;
        let mut out = Vec::new();
        for (_, path) in Segments::scan(&self.dir)?.files.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let bytes = match std::fs::read(path) {
                Ok(b) => b,
                // Trimmed since the scan: older segments are gone too.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => return Err(RuntimeError::io(path, e)),
            };
            for line in complete_lines(&bytes).rev() {
                let record: RunRecord = serde_json::from_slice(line)
                    .map_err(|e| RuntimeError::Corrupt(format!("run record: {e}")))?;
                if listener.is_none_or(|l| l == record.listener) {
                    out.push(record);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Drop for RunLog {
    /// Stops the writer after it has stored what is queued.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The segment files, oldest first, by the id of their first record.
struct Segments {
    dir: PathBuf,
    files: Vec<(u64, PathBuf)>,
}

impl Segments {
    fn scan(dir: &Path) -> Result<Self, RuntimeError> {
        let io = |e| RuntimeError::io(dir, e);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                files.push((first, path));
            }
        }
        files.sort();
        Ok(Segments {
            dir: dir.to_path_buf(),
            files,
        })
    }

    fn path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.jsonl"))
    }

    /// The id after the last complete record; cuts off a torn last line
    /// (a crash mid-append) so later appends start on a line of their own.
    fn next_id(&self) -> Result<u64, RuntimeError> {
        let Some((first, path)) = self.files.last() else {
            return Ok(1);
        };
        let io = |e| RuntimeError::io(path, e);
        let bytes = std::fs::read(path).map_err(io)?;
        let complete = complete_len(&bytes);
        if complete < bytes.len() {
            tracing::warn!(path = %path.display(), "cutting off a torn last run record");
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(complete as u64))
                .map_err(io)?;
        }
        Ok(first + complete_lines(&bytes).count() as u64)
    }

    /// Records in all segments: ids are consecutive, so the gap from the
    /// oldest segment's first id to `next_id`.
    fn total(&self, next_id: u64) -> usize {
        self.files
            .first()
            .map_or(0, |(first, _)| (next_id - first) as usize)
    }
}

/// The complete (newline-terminated) records of a segment, one JSON
/// document per line (JSON escapes newlines inside strings).
fn complete_lines(bytes: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    bytes[..complete_len(bytes)]
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
}

/// Bytes up to and including the last newline: what a torn write left
/// behind, if anything, comes after.
fn complete_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1)
}

/// The writer's open segment.
struct Current {
    file: std::io::BufWriter<std::fs::File>,
    records: usize,
}

/// `next_id`: the id the first record appended will have.
fn write_loop(
    mut segments: Segments,
    mut next_id: u64,
    shared: &Shared,
    keep: usize,
    per_segment: usize,
) {
    let mut current: Option<Current> = None;
    let mut spare = Vec::new();
    loop {
        let (lines, records, target, sync, closed) = {
            let mut q = shared.lock();
            if q.pending == 0 && q.sync_wanted <= q.synced && !q.closed {
                q = shared
                    .work
                    .wait_timeout(q, LINGER)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            (
                std::mem::replace(&mut q.lines, std::mem::take(&mut spare)),
                std::mem::take(&mut q.pending),
                q.appended,
                q.sync_wanted > q.synced,
                q.closed,
            )
        };
        shared.progress.notify_all();
        let mut result = append_all(&mut segments, &mut current, &lines, next_id, per_segment);
        next_id += records as u64;
        spare = lines;
        spare.clear();
        spare.shrink_to(SPARE_BYTES);
        if result.is_ok() && (sync || closed) {
            result = current.as_mut().map_or(Ok(()), |c| {
                c.file.flush().and_then(|()| c.file.get_ref().sync_data())
            });
        }
        if result.is_ok() && segments.total(next_id) > keep + keep / 10 {
            result = trim(&mut segments, next_id, keep);
        }
        if let Err(e) = &result {
            tracing::error!("writing run records: {e}");
        }
        let mut q = shared.lock();
        // A failed write also releases `sync` callers: they get the error.
        if sync || closed || result.is_err() {
            q.synced = target;
        }
        if let Err(e) = result {
            q.last_error = Some(e.to_string());
        }
        let done = closed && q.pending == 0;
        drop(q);
        shared.progress.notify_all();
        if done {
            return;
        }
    }
}

/// Appends `lines` (JSON lines of records with consecutive ids from
/// `first_id`), starting a new segment every `per_segment` records.
fn append_all(
    segments: &mut Segments,
    current: &mut Option<Current>,
    lines: &[u8],
    first_id: u64,
    per_segment: usize,
) -> std::io::Result<()> {
    for (id, line) in (first_id..).zip(complete_lines(lines)) {
        let open = match current {
            Some(c) if c.records < per_segment => c,
            _ => {
                if let Some(mut old) = current.take() {
                    old.file.flush()?;
                }
                // Continue the last segment after a restart if it has room.
                let (first, records) = match segments.files.last() {
                    Some((first, _)) if id - first < per_segment as u64 => {
                        (*first, (id - first) as usize)
                    }
                    _ => (id, 0),
                };
                let path = segments.path(first);
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                if records == 0 {
                    segments.files.push((first, path));
                }
                current.insert(Current {
                    file: std::io::BufWriter::with_capacity(64 << 10, file),
                    records,
                })
            }
        };
        open.file.write_all(line)?;
        open.file.write_all(b"\n")?;
        open.records += 1;
    }
    match current {
        Some(c) => c.file.flush(),
        None => Ok(()),
    }
}

/// Deletes the oldest whole segments while at least `keep` records remain.
fn trim(segments: &mut Segments, next_id: u64, keep: usize) -> std::io::Result<()> {
    while segments.files.len() > 1 {
        let second_first = segments.files[1].0;
        if ((next_id - second_first) as usize) < keep {
            break;
        }
        let (_, path) = segments.files.remove(0);
        std::fs::remove_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(listener: &str, n: usize) -> RunRecord {
        RunRecord {
            id: 0,
            event_id: format!("ev_{n}"),
            topic: "t".into(),
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
        }
    }

    fn runs_dir(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("runs")
    }

    fn append_n(log: &RunLog, listener: &str, range: std::ops::Range<usize>) -> Vec<u64> {
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
        let log = RunLog::open(&runs_dir(&dir), 1000).unwrap();
        assert_eq!(append_n(&log, "a", 0..150), (1..=150).collect::<Vec<_>>());
        log.sync().unwrap();
        drop(log);
        let log = RunLog::open(&runs_dir(&dir), 1000).unwrap();
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
        let log = RunLog::open(&runs_dir(&dir), 1000).unwrap();
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
            std::fs::read_to_string(&Segments::scan(&runs_dir(&dir)).unwrap().files[0].1).unwrap();
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
        let log = RunLog::open(&runs_dir(&dir), 1000).unwrap();
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
        let log = RunLog::open(&runs_dir(&dir), keep).unwrap();
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
        let log = RunLog::open(&runs_dir(&dir), 1000).unwrap();
        append_n(&log, "a", 0..5);
        drop(log);
        let (_, last) = Segments::scan(&runs_dir(&dir))
            .unwrap()
            .files
            .pop()
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        f.write_all(br#"{"id":6,"event_id":"half a rec"#).unwrap();
        drop(f);
        let log = RunLog::open(&runs_dir(&dir), 1000).unwrap();
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
        let log = RunLog::open(&runs_dir(&dir), 1000).unwrap();
        match log.recent(None, 10) {
            Err(RuntimeError::Corrupt(m)) => assert!(m.contains("run record"), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
        // Appends still work, after the corrupt line.
        assert_eq!(append_n(&log, "a", 0..1), vec![8]);
    }
}
