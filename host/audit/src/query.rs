//! Reading entries back, filtered, a page at a time.
//!
//! Pages go newest first from a cursor (`before`), or, to follow the log,
//! oldest first after one (`after`).

use std::ops::ControlFlow;

use keyhole_seglog::SegLog;
use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::chain;
use crate::entry::Entry;

/// Which entries to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only reads of this secret name.
    pub secret: Option<String>,
    /// Only reads by this deployment.
    pub deployment: Option<String>,
    /// Only admin actions of this actor (`token:NAME`, `local:USER`).
    pub actor: Option<String>,
    /// Only admin actions on this target (`env:prod/SLACK_TOKEN`).
    pub target: Option<String>,
    /// Only this outcome (`ok`, `not_found`, ... for reads; `ok`, `denied`,
    /// `failed` for admin actions).
    pub outcome: Option<String>,
    /// Only entries at or after this time.
    pub since_ms: Option<u64>,
    /// Newest first, entries before this sequence number.
    pub before: Option<u64>,
    /// Oldest first, entries after this sequence number (wins over
    /// `before`).
    pub after: Option<u64>,
    pub limit: usize,
}

/// An entry and its place in the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: Entry,
}

impl AuditQuery {
    /// Whether entry `seq` passes the filters (and the cursor).
    pub fn matches(&self, seq: u64, entry: &Entry) -> bool {
        if self.before.is_some_and(|b| seq >= b) && self.after.is_none()
            || self.after.is_some_and(|a| seq <= a)
            || self.since_ms.is_some_and(|t| entry.time_ms() < t)
        {
            return false;
        }
        match entry {
            Entry::SecretRead {
                name,
                deployment,
                outcome,
                ..
            } => {
                self.actor.is_none()
                    && self.target.is_none()
                    && self.secret.as_ref().is_none_or(|s| s == name)
                    && self.deployment.as_ref().is_none_or(|d| d == deployment)
                    && self.outcome.as_ref().is_none_or(|o| o == outcome.as_str())
            }
            Entry::Admin {
                actor,
                outcome,
                target,
                ..
            } => {
                self.secret.is_none()
                    && self.deployment.is_none()
                    && self.actor.as_ref().is_none_or(|a| a == actor)
                    && self.target.as_ref().is_none_or(|t| t == target)
                    && self.outcome.as_ref().is_none_or(|o| o == outcome)
            }
            Entry::Retention { .. } => {
                self.secret.is_none()
                    && self.deployment.is_none()
                    && self.actor.is_none()
                    && self.target.is_none()
                    && self.outcome.is_none()
            }
        }
    }
}

pub(crate) fn run(log: &SegLog, q: &AuditQuery) -> Result<Vec<AuditRecord>, AuditError> {
    select(q, |oldest_first, visit| {
        if oldest_first {
            log.oldest_first(visit)?;
        } else {
            log.newest_first(visit)?;
        }
        Ok(())
    })
}

/// The entries of stored lines that `walk` visits (oldest first when told
/// so, else newest first) that match `q`.
pub(crate) fn select(
    q: &AuditQuery,
    walk: impl FnOnce(bool, &mut dyn FnMut(&[u8]) -> ControlFlow<()>) -> Result<(), AuditError>,
) -> Result<Vec<AuditRecord>, AuditError> {
    let mut out = Vec::new();
    let mut bad = None;
    if q.limit == 0 {
        return Ok(out);
    }
    let mut visit = |line: &[u8]| {
        let parsed = chain::parse(line).map_err(str::to_owned).and_then(|s| {
            serde_json::from_slice::<Entry>(s.entry)
                .map(|e| (s.seq, e))
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok((seq, entry)) => {
                if q.after.is_none() && q.before.is_some_and(|b| seq >= b) {
                    return ControlFlow::Continue(());
                }
                if q.matches(seq, &entry) {
                    out.push(AuditRecord { seq, entry });
                }
            }
            Err(what) => {
                bad = Some(AuditError::Corrupt { seq: 0, what });
                return ControlFlow::Break(());
            }
        }
        if out.len() >= q.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    walk(q.after.is_some(), &mut visit)?;
    match bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}
