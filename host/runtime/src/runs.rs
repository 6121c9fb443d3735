//! Run records: what happened each time a listener handled an event.
//!
//! Records live in the sled tree `runs`, keyed by a big-endian id from
//! `sled::Db::generate_id`, so iteration is in run order and newest-first
//! queries walk the tree backwards. Records are written without a flush on
//! the hot path (sled flushes in the background every 500 ms, and
//! [`crate::Runtime::flush`] is called on shutdown); secret writes, by
//! contrast, are flushed before they are acknowledged.

use serde::{Deserialize, Serialize};

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

/// The run-record tree.
#[derive(Clone)]
pub(crate) struct RunLog {
    db: sled::Db,
    tree: sled::Tree,
}

impl RunLog {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, RuntimeError> {
        Ok(RunLog {
            db: db.clone(),
            tree: db.open_tree("runs")?,
        })
    }

    pub(crate) fn next_id(&self) -> Result<u64, RuntimeError> {
        Ok(self.db.generate_id()?)
    }

    pub(crate) fn append(&self, record: &RunRecord) -> Result<(), RuntimeError> {
        let bytes = serde_json::to_vec(record).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        self.tree.insert(record.id.to_be_bytes(), bytes)?;
        Ok(())
    }

    /// Newest first, optionally only one listener's, at most `limit`.
    pub(crate) fn recent(
        &self,
        listener: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, RuntimeError> {
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

    /// Keeps at most `keep` records, dropping the oldest.
    pub(crate) fn trim(&self, keep: usize) -> Result<usize, RuntimeError> {
        let len = self.tree.len();
        let mut removed = 0;
        if len > keep {
            for item in self.tree.iter().keys().take(len - keep) {
                self.tree.remove(item?)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
