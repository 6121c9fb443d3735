//! The default run log: JSON lines in segment files under `DATA/runs/`.
//!
//! Records are an append-only log of JSON lines in segment files, each named
//! by the id of its first record (zero-padded, so name order is run order).
//! Run ids are consecutive, counted by the log (a run's id is its line's
//! sequence number), and continue across restarts.
//!
//! **Retention** keeps the newest `RuntimeConfig::max_run_records` runs
//! and, with `RuntimeConfig::max_run_age`, only runs younger than that.
//! Readers never see a run beyond either ([`Visible`]); on disk the oldest
//! whole segments are deleted a little later (`keyhole-seglog`'s
//! `retention.rs`), always leaving consecutive runs up to the newest, so
//! the log reopens consistent and ids continue.
//!
//! **Reading** (`scan.rs`) goes newest first a segment at a time, passing
//! over segments by name (the cursor) or by summary (`summary.rs`).
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
mod scan;
mod summary;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use keyhole_audit::AuditLog;
use keyhole_seglog::{Config, Hooks, SegLog};

use crate::error::RuntimeError;
use crate::runs::record::RunRecord;
use crate::runs::{RunLog, RunQuery};
use scan::Visible;
use summary::Summaries;

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
    retention: Retention,
    summaries: Summaries,
}

/// How many runs the log keeps, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retention {
    pub keep: usize,
    pub max_age: Option<Duration>,
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
    /// Opens (creating) the log in `dir`, keeping what `retention` says;
    /// records wait for `audit`'s entries.
    pub(crate) fn open(
        dir: &Path,
        retention: Retention,
        audit: Option<Arc<AuditLog>>,
    ) -> Result<Self, RuntimeError> {
        let hooks = RunHooks {
            audit: audit.clone(),
        };
        let config = Config {
            max_age: retention.max_age,
            ..Config::keeping("keyhole-runs", retention.keep)
        };
        let log =
            SegLog::open(dir, config, |_, _| Ok(hooks)).map_err(|e| RuntimeError::io(dir, e))?;
        Ok(JsonlRunLog {
            log,
            audit,
            retention,
            summaries: Summaries::default(),
        })
    }

    /// What retention shows now.
    fn visible(&self) -> Visible {
        let keep = u64::try_from(self.retention.keep).unwrap_or(u64::MAX);
        let max_age_ms = self.retention.max_age.map_or(u64::MAX, |a| {
            u64::try_from(a.as_millis()).unwrap_or(u64::MAX)
        });
        Visible {
            min_id: self.log.next_seq().saturating_sub(keep),
            min_started_ms: crate::now_ms().saturating_sub(max_age_ms),
        }
    }
}

impl RunLog for JsonlRunLog {
    /// Gives `record` the next run id and queues it, as a JSON line, for
    /// storage: it cannot fail here (a failed write shows in `sync`).
    fn append(&self, record: &mut RunRecord) -> Result<u64, RuntimeError> {
        // Every audit entry accepted so far, this run's reads among them.
        let mark = self.audit.as_ref().map_or(0, |a| a.appended());
        Ok(self.log.append(mark, |id, out| {
            record.id = id;
            line::write(out, record);
        }))
    }

    /// Waits until every record appended so far is written and on disk.
    fn sync(&self) -> Result<(), RuntimeError> {
        self.log
            .sync(SYNC_TIMEOUT)
            .map_err(|e| RuntimeError::Corrupt(format!("writing run records: {e}")))
    }

    /// Newest first, at most `query.limit` (`scan.rs`).
    fn query(&self, query: &RunQuery) -> Result<Vec<RunRecord>, RuntimeError> {
        scan::query(&self.log, &self.summaries, self.visible(), query)
    }

    /// Reads only the segment that holds `id`.
    fn get(&self, id: u64) -> Result<Option<RunRecord>, RuntimeError> {
        scan::get(&self.log, self.visible(), id)
    }
}

#[cfg(test)]
mod tests;
