//! Run records in a bucket every host of a cluster shares (cluster mode):
//! one record per (event, listener), created once, so an event that runs
//! twice (its first host died before acking it) is recorded once, and any
//! host lists every host's runs.
//!
//! The key is `EVENT_ID/LISTENER`; a record's id is the revision its
//! create was written at, so ids grow (they are not consecutive, unlike
//! the embedded log's). Each `append` is one write to the backend: the
//! price of sharing, paid once per run. Listing scans the bucket; old
//! records are deleted beyond `keep` (oldest first) at most once per
//! [`PRUNE_EVERY`] appends.
//!
//! As in the default log, a record is written only once the audit entries
//! accepted before it (its run's reads among them) are in this host's
//! audit files: a crash must never leave a record whose reads the audit
//! log lacks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyhole_audit::AuditLog;
use keyhole_kv::{Bucket, Cas};

use super::{RunLog, RunQuery, RunRecord};
use crate::error::RuntimeError;

/// How often (in appends) old records are looked for.
const PRUNE_EVERY: u64 = 1_000;

/// How long a record waits for the audit entries before it.
const AUDIT_WAIT: Duration = Duration::from_secs(10);

pub(crate) struct SharedRunLog {
    bucket: Arc<dyn Bucket>,
    keep: usize,
    appended: AtomicU64,
    /// The audit log records wait for, if audited.
    audit: Option<Arc<AuditLog>>,
}

fn key(event_id: &str, listener: &str) -> Vec<u8> {
    format!("{event_id}/{listener}").into_bytes()
}

impl SharedRunLog {
    pub(crate) fn new(bucket: Arc<dyn Bucket>, keep: usize, audit: Option<Arc<AuditLog>>) -> Self {
        SharedRunLog {
            bucket,
            keep,
            appended: AtomicU64::new(0),
            audit,
        }
    }

    fn all(&self) -> Result<Vec<RunRecord>, RuntimeError> {
        let mut out = Vec::new();
        for (_, entry) in self.bucket.scan(b"")? {
            let mut r: RunRecord = serde_json::from_slice(&entry.value)
                .map_err(|e| RuntimeError::Corrupt(format!("a shared run record: {e}")))?;
            r.id = entry.revision;
            out.push(r);
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.id));
        Ok(out)
    }

    fn prune(&self) -> Result<(), RuntimeError> {
        let all = self.all()?;
        for r in all.iter().skip(self.keep) {
            let _ = self.bucket.delete(&key(&r.event_id, &r.listener), r.id)?;
        }
        Ok(())
    }
}

/// Waits until the audit entries accepted so far are written; an error as
/// soon as the audit log is failing, or after [`AUDIT_WAIT`].
fn wait_for_audit(audit: &AuditLog) -> Result<(), RuntimeError> {
    const STEP: Duration = Duration::from_millis(100);
    let mark = audit.appended();
    let deadline = std::time::Instant::now() + AUDIT_WAIT;
    while !audit.wait_written(mark, STEP) {
        if let Some(why) = audit.failing() {
            return Err(RuntimeError::AuditUnavailable(why));
        }
        if std::time::Instant::now() >= deadline {
            return Err(RuntimeError::AuditUnavailable(format!(
                "the run's audit entries were not written within {} s",
                AUDIT_WAIT.as_secs()
            )));
        }
    }
    Ok(())
}

impl RunLog for SharedRunLog {
    /// One create, acknowledged by the backend before this returns. A
    /// failed write is the caller's error, not a log line: the event's
    /// queue delivers it again and the listener runs again, as it has no
    /// record (a write that timed out but landed is found by `recorded`).
    fn append(&self, record: &mut RunRecord) -> Result<u64, RuntimeError> {
        if let Some(audit) = &self.audit {
            wait_for_audit(audit)?;
        }
        let k = key(&record.event_id, &record.listener);
        record.id = 0;
        let bytes = serde_json::to_vec(record)
            .map_err(|e| RuntimeError::Corrupt(format!("encoding a run record: {e}")))?;
        record.id = match self.bucket.create(&k, &bytes)? {
            Cas::Written(revision) => revision,
            // Recorded already (by a host that ran it before): that record
            // stands.
            Cas::Conflict => self.bucket.get(&k)?.map_or(0, |e| e.revision),
        };
        if self.appended.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1
            && let Err(e) = self.prune()
        {
            tracing::warn!("deleting old shared run records: {e}");
        }
        Ok(record.id)
    }

    fn sync(&self) -> Result<(), RuntimeError> {
        Ok(self.bucket.flush()?)
    }

    fn query(&self, query: &RunQuery) -> Result<Vec<RunRecord>, RuntimeError> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|r| query.matches(r))
            .take(query.limit)
            .collect())
    }

    fn recorded(&self, event_id: &str, listener: &str) -> Result<bool, RuntimeError> {
        Ok(self.bucket.get(&key(event_id, listener))?.is_some())
    }
}
