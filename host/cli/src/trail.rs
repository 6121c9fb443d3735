//! Admin actions into the audit log, from the CLI and from the API alike.
//!
//! An action is recorded *before* it is applied, and only once its entry
//! is on disk: if the audit log cannot take the entry (the disk fails, the
//! store is sealed so there is no audit key), the action is refused and
//! nothing changes. An action that then fails leaves a second entry
//! (`failed`) saying why, so the log never claims a change that did not
//! happen without also saying it did not. A refused authorisation is one
//! entry (`denied`), written on a best-effort basis: the request is refused
//! either way.
//!
//! Actors: `token:NAME` for API callers, `local:USER` for the CLI working
//! on the data directory itself.

use std::sync::Arc;

use keyhole_audit::{Admin, AuditLog};
use keyhole_runtime::metrics::Metrics;

/// Why an action was refused before it was applied.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// No audit key: the store is sealed.
    #[error("sealed: {0}")]
    Sealed(String),
    /// The audit log cannot write.
    #[error("{0}")]
    Unavailable(#[from] keyhole_audit::Unavailable),
}

/// Where one caller's admin actions are recorded.
#[derive(Clone)]
pub struct Trail {
    log: Option<Arc<AuditLog>>,
    /// Why there is no log, when there is none.
    sealed: Option<String>,
    actor: String,
    metrics: Option<Arc<Metrics>>,
}

impl Trail {
    /// Actions of `actor` into `log` (`None`: sealed, for `sealed_reason`).
    pub fn new(
        log: Option<Arc<AuditLog>>,
        sealed_reason: Option<String>,
        actor: String,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Trail {
            log,
            sealed: sealed_reason,
            actor,
            metrics,
        }
    }

    /// Records `action` on `target`, then runs it. `Err(Refused)` if the
    /// entry could not be recorded (nothing ran); otherwise `f`'s result,
    /// and a `failed` entry if it failed.
    pub fn record<T, E: std::fmt::Display>(
        &self,
        action: &str,
        target: &str,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<Result<T, E>, Refused> {
        self.record_detailed(action, target, None, f)
    }

    /// [`Trail::record`], with a detail on the entry (what a deletion
    /// takes with it, say).
    pub fn record_detailed<T, E: std::fmt::Display>(
        &self,
        action: &str,
        target: &str,
        detail: Option<&str>,
        f: impl FnOnce() -> Result<T, E>,
    ) -> Result<Result<T, E>, Refused> {
        self.write(action, target, "ok", detail, true)?;
        let result = f();
        if let Err(e) = &result {
            let detail = e.to_string();
            // The `ok` entry stands without its `failed` one: say so
            // where the operator looks, naming what (never a value).
            if self
                .write(action, target, "failed", Some(&detail), true)
                .is_err()
            {
                tracing::error!(
                    action,
                    target,
                    "the audit log took this action's entry but not its failure: \
                     it shows as applied though it failed ({detail})"
                );
            }
        }
        Ok(result)
    }

    /// Records a refused request (`denied`), best effort and without
    /// waiting for the disk: the request is refused either way.
    pub fn denied(&self, action: &str, target: &str, detail: &str) {
        let _ = self.write(action, target, "denied", Some(detail), false);
    }

    /// Records that an action recorded `ok` earlier (by
    /// [`Trail::record`], in another trail: the action outlived it) then
    /// failed.
    pub fn failed_later(&self, action: &str, target: &str, why: &str) -> Result<(), Refused> {
        self.write(action, target, "failed", Some(why), true)
    }

    fn write(
        &self,
        action: &str,
        target: &str,
        outcome: &str,
        detail: Option<&str>,
        synced: bool,
    ) -> Result<(), Refused> {
        let Some(log) = &self.log else {
            return Err(Refused::Sealed(
                self.sealed
                    .clone()
                    .unwrap_or_else(|| "no audit log".to_owned()),
            ));
        };
        // What a caller typed, with any pasted API token taken out.
        let target = crate::auth::redact_tokens(bounded(target));
        let detail = detail.map(|d| crate::auth::redact_tokens(bounded(d)));
        let entry = Admin {
            time_ms: now_ms(),
            actor: &self.actor,
            action,
            target: &target,
            outcome,
            detail: detail.as_deref(),
        };
        let written = if synced {
            log.admin(&entry)
        } else {
            log.admin_unsynced(&entry)
        };
        match written {
            Ok(()) => {
                if let Some(m) = &self.metrics {
                    m.audit_entry();
                }
                Ok(())
            }
            Err(e) => {
                if let Some(m) = &self.metrics {
                    m.audit_refused();
                }
                Err(e.into())
            }
        }
    }
}

/// Most of an entry's target or detail that is kept: both may hold what a
/// caller sent (an id, a name), which is bounded by then but may still be
/// long.
const FIELD_LIMIT: usize = 512;

fn bounded(text: &str) -> &str {
    if text.len() <= FIELD_LIMIT {
        return text;
    }
    let mut end = FIELD_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How an entry names a secret: `env:prod/SLACK_TOKEN`.
pub fn secret_target(scope: &keyhole_store::Scope, name: &str) -> String {
    format!("{scope}/{name}")
}

/// `local:USER` for the CLI working on the data directory.
pub fn local_actor() -> String {
    let user = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| format!("uid{}", rustix::process::getuid().as_raw()));
    format!("local:{user}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
