//! Run records: what happened each time a listener handled an event.
//!
//! Records live in the sled tree `runs` as JSON, keyed by a big-endian id
//! from `sled::Db::generate_id`, so iteration is in run order and
//! newest-first queries walk the tree backwards. They are written by a
//! background thread in batches, without a flush on the hot path (sled
//! flushes every 500 ms, and [`crate::Runtime::flush`] syncs and flushes on
//! shutdown); secret writes, by contrast, are flushed before they are
//! acknowledged. The oldest records are trimmed beyond
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

#[derive(Default)]
struct Queue {
    records: Vec<RunRecord>,
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
/// Writing one record into sled costs about as much as running a small
/// listener, so the dispatch path only pushes the record onto a queue. No
/// thread is woken per record: the writer wakes every [`LINGER`] or when
/// [`BATCH`] records wait, then serializes and inserts them as one sled batch
/// and trims old records. Readers ([`RunLog::recent`]) and [`RunLog::sync`]
/// wait for everything appended before them, so callers read their own runs.
pub(crate) struct RunLog {
    db: sled::Db,
    tree: sled::Tree,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl RunLog {
    pub(crate) fn open(db: &sled::Db, keep: usize) -> Result<Self, RuntimeError> {
        let tree = db.open_tree("runs")?;
        let shared = Arc::new(Shared::default());
        let (writer_tree, writer_shared) = (tree.clone(), shared.clone());
        let writer = std::thread::Builder::new()
            .name("keyhole-runs".into())
            .spawn(move || write_loop(&writer_tree, &writer_shared, keep))
            .map_err(|e| RuntimeError::Engine(format!("spawn run-record writer: {e}")))?;
        Ok(RunLog {
            db: db.clone(),
            tree,
            shared,
            writer: Some(writer),
        })
    }

    pub(crate) fn next_id(&self) -> Result<u64, RuntimeError> {
        Ok(self.db.generate_id()?)
    }

    pub(crate) fn append(&self, record: RunRecord) {
        let mut q = self.shared.lock();
        while q.records.len() >= QUEUE {
            self.shared.work.notify_one();
            q = self
                .shared
                .progress
                .wait(q)
                .unwrap_or_else(|e| e.into_inner());
        }
        q.records.push(record);
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
            let (_, bytes) = item?;
            let record: RunRecord = serde_json::from_slice(&bytes)
                .map_err(|e| RuntimeError::Corrupt(format!("run record: {e}")))?;
            if listener.is_none_or(|l| l == record.listener) {
                out.push(record);
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

fn write_loop(tree: &sled::Tree, shared: &Shared, keep: usize) {
    let mut count = tree.len();
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
            let mut batch = sled::Batch::default();
            for r in &records {
                match serde_json::to_vec(r) {
                    Ok(bytes) => batch.insert(&r.id.to_be_bytes(), bytes),
                    Err(e) => error = Some(e.to_string()),
                }
            }
            if let Err(e) = tree.apply_batch(batch) {
                error = Some(e.to_string());
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

/// Removes the `n` oldest records.
fn trim(tree: &sled::Tree, n: usize) -> Result<usize, sled::Error> {
    let mut batch = sled::Batch::default();
    let mut removed = 0;
    for key in tree.iter().keys().take(n) {
        batch.remove(key?);
        removed += 1;
    }
    tree.apply_batch(batch)?;
    Ok(removed)
}
