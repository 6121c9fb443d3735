//! Run records: what happened each time a listener handled an event.
//!
//! Records live in the sled tree `runs` as JSON lines, in chunks of
//! consecutive run ids keyed by their first id (big-endian), so iteration is
//! in run order and newest-first queries walk the tree backwards. Run ids are
//! counted by the log itself and continue across restarts.
//!
//! Records are written by a background thread in batches, without a flush on
//! the hot path (sled flushes every 500 ms, and [`crate::Runtime::flush`]
//! syncs and flushes on shutdown); secret writes, by contrast, are flushed
//! before they are acknowledged. The oldest chunks are trimmed beyond
//! `RuntimeConfig::max_run_records`.

use serde::{Deserialize, Serialize};

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
    pub stdout: String,
    pub stderr: String,
    /// Bytes of output dropped beyond the capture limit.
    pub output_dropped: u64,
    /// Names (never values) of the secrets this run read.
    pub secrets_read: Vec<String>,
    pub http: Vec<HttpCall>,
}

/// Most records waiting for the writer; beyond it `append` blocks
/// (backpressure rather than unbounded memory).
const QUEUE: usize = 65_536;
/// The writer wakes when this many records wait, or after [`LINGER`].
const BATCH: usize = 1_024;
const LINGER: Duration = Duration::from_millis(20);
/// Most records stored under one sled key.
const CHUNK: usize = 64;

#[derive(Default)]
struct Queue {
    records: Vec<RunRecord>,
    /// The id the next appended record gets.
    next_id: u64,
    /// Records ever appended / ever written (sequence numbers for `sync`).
    appended: u64,
    written: u64,
    sync_wanted: bool,
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

/// The run-record tree, written by a background thread.
///
/// Writing a record into sled costs about as much as running a small
/// listener, so the dispatch path only pushes the record onto a queue. No
/// thread is woken per record: the writer wakes every [`LINGER`] or when
/// [`BATCH`] records wait, then stores them in chunks and trims old chunks.
/// Readers ([`RunLog::recent`]) and [`RunLog::sync`] wait for everything
/// appended before them, so callers read their own runs.
///
/// Storage: one sled entry per chunk of up to [`CHUNK`] records with
/// consecutive ids, keyed by the first id (big-endian, so iteration is in
/// run order), holding the records as JSON lines. One sled insert per chunk
/// instead of per record is what lets the writer keep up with dispatch.
pub(crate) struct RunLog {
    tree: sled::Tree,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl RunLog {
    pub(crate) fn open(db: &sled::Db, keep: usize) -> Result<Self, RuntimeError> {
        let tree = db.open_tree("runs")?;
        let next_id = match tree.last()? {
            Some((key, chunk)) => chunk_first_id(&key)? + chunk_len(&chunk) as u64,
            None => 1,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                next_id,
                ..Queue::default()
            }),
            ..Shared::default()
        });
        let (writer_tree, writer_shared) = (tree.clone(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("keyhole-runs".into())
            .spawn(move || write_loop(&writer_tree, &writer_shared, keep))
            .map_err(|e| RuntimeError::Engine(format!("spawn run-record writer: {e}")))?;
        Ok(RunLog {
            tree,
            shared,
            writer: Some(writer),
        })
    }

    /// Gives `record` the next run id and queues a copy for storage.
    pub(crate) fn append(&self, record: &mut RunRecord) {
        let mut q = self.shared.lock();
        while q.records.len() >= QUEUE {
            self.shared.work.notify_one();
            q = self
                .shared
                .progress
                .wait(q)
                .unwrap_or_else(|e| e.into_inner());
        }
        record.id = q.next_id;
        q.next_id += 1;
        q.records.push(record.clone());
        q.appended += 1;
        if q.records.len() == BATCH {
            self.shared.work.notify_one();
        }
    }

    /// Waits until every record appended so far is in the tree.
    pub(crate) fn sync(&self) -> Result<(), RuntimeError> {
        let mut q = self.shared.lock();
        let target = q.appended;
        q.sync_wanted = true;
        self.shared.work.notify_one();
        while q.written < target {
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
        for item in self.tree.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let (_, chunk) = item?;
            for line in chunk_lines(&chunk).rev() {
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

/// The records of a stored chunk, one JSON document per line. (JSON text
/// escapes newlines inside strings, so a line is always one record.)
fn chunk_lines(chunk: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty())
}

fn chunk_len(chunk: &[u8]) -> usize {
    chunk_lines(chunk).count()
}

fn chunk_first_id(key: &[u8]) -> Result<u64, RuntimeError> {
    key.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| RuntimeError::Corrupt("run-record key is not 8 bytes".into()))
}

fn write_loop(tree: &sled::Tree, shared: &Shared, keep: usize) {
    let mut count: usize = tree
        .iter()
        .values()
        .map(|v| v.map(|c| chunk_len(&c)).unwrap_or(0))
        .sum();
    loop {
        let (records, target) = {
            let mut q = shared.lock();
            if q.records.is_empty() && !q.sync_wanted && !q.closed {
                q = shared
                    .work
                    .wait_timeout(q, LINGER)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if q.records.is_empty() && q.closed {
                return;
            }
            q.sync_wanted = false;
            (std::mem::take(&mut q.records), q.appended)
        };
        shared.progress.notify_all();
        let mut error = None;
        if !records.is_empty() {
            if let Err(e) = store_chunks(tree, &records) {
                error = Some(e);
            }
            count += records.len();
            if count > keep + keep / 10 {
                match trim(tree, count - keep) {
                    Ok(removed) => count -= removed,
                    Err(e) => error = Some(e.to_string()),
                }
            }
        }
        if let Some(e) = &error {
            tracing::error!("writing run records: {e}");
        }
        let mut q = shared.lock();
        q.written = target;
        if error.is_some() {
            q.last_error = error;
        }
        drop(q);
        shared.progress.notify_all();
    }
}

/// Stores `records` (consecutive ids, in order) as chunks, in one batch.
fn store_chunks(tree: &sled::Tree, records: &[RunRecord]) -> Result<(), String> {
    let mut batch = sled::Batch::default();
    let mut bytes = Vec::new();
    for chunk in records.chunks(CHUNK) {
        bytes.clear();
        for r in chunk {
            serde_json::to_writer(&mut bytes, r).map_err(|e| e.to_string())?;
            bytes.push(b'\n');
        }
        batch.insert(&chunk[0].id.to_be_bytes(), bytes.as_slice());
    }
    tree.apply_batch(batch).map_err(|e| e.to_string())
}

/// Removes the oldest whole chunks holding at most `n` records; returns how
/// many records went.
fn trim(tree: &sled::Tree, n: usize) -> Result<usize, sled::Error> {
    let mut batch = sled::Batch::default();
    let mut removed = 0;
    for item in tree.iter() {
        let (key, chunk) = item?;
        let len = chunk_len(&chunk);
        if removed + len > n {
            break;
        }
        batch.remove(key);
        removed += len;
    }
    tree.apply_batch(batch)?;
    Ok(removed)
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

    fn db(dir: &tempfile::TempDir) -> sled::Db {
        sled::open(dir.path().join("db")).unwrap()
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
        let db = db(&dir);
        let log = RunLog::open(&db, 1000).unwrap();
        assert_eq!(append_n(&log, "a", 0..150), (1..=150).collect::<Vec<_>>());
        log.sync().unwrap();
        drop(log);
        let log = RunLog::open(&db, 1000).unwrap();
        assert_eq!(append_n(&log, "b", 0..3), vec![151, 152, 153]);
        let recent = log.recent(None, 5).unwrap();
        let ids: Vec<u64> = recent.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![153, 152, 151, 150, 149]);
        // Newlines inside strings survive the JSON-lines chunking.
        assert_eq!(recent[0].outcome, record("b", 2).outcome);
        assert_eq!(recent[0].stdout, "out\n");
    }

    #[test]
    fn recent_filters_by_listener_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::open(&db(&dir), 1000).unwrap();
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
    }

    #[test]
    fn old_chunks_are_trimmed_beyond_keep() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let keep = 200;
        let log = RunLog::open(&db, keep).unwrap();
        for round in 0..10 {
            append_n(&log, "a", round * 100..round * 100 + 100);
            log.sync().unwrap();
        }
        let all = log.recent(None, usize::MAX).unwrap();
        assert!(
            (keep..=keep + keep / 10 + CHUNK).contains(&all.len()),
            "{} records kept",
            all.len()
        );
        assert_eq!(all[0].event_id, "ev_999", "the newest are kept");
        let tree = db.open_tree("runs").unwrap();
        assert!(tree.len() < all.len() / 10, "{} entries", tree.len());
    }

    #[test]
    fn one_record_per_key_from_older_versions_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        let tree = db.open_tree("runs").unwrap();
        let mut old = record("old", 0);
        old.id = 41;
        tree.insert(41u64.to_be_bytes(), serde_json::to_vec(&old).unwrap())
            .unwrap();
        let log = RunLog::open(&db, 1000).unwrap();
        assert_eq!(append_n(&log, "new", 0..1), vec![42]);
        let ids: Vec<u64> = log.recent(None, 10).unwrap().iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![42, 41]);
    }

    #[test]
    fn a_corrupt_chunk_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(&dir);
        db.open_tree("runs")
            .unwrap()
            .insert(7u64.to_be_bytes(), &b"{not json\n"[..])
            .unwrap();
        let log = RunLog::open(&db, 1000).unwrap();
        match log.recent(None, 10) {
            Err(RuntimeError::Corrupt(m)) => assert!(m.contains("run record"), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
