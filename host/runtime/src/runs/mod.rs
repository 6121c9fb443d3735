//! Run records and the log that keeps them.
//!
//! Every run appends one record, so the run log is the one high-volume write
//! in keyhole. The runtime sees it only through the [`RunLog`] trait, chosen
//! when the runtime opens ([`crate::Runtime::open_with_run_log`]), so a
//! different store for records can be put in without touching dispatch. The
//! default is the JSONL segment files in `runs/jsonl/`.
//!
//! The trait is called once per run (`append`), never per `get-secret`
//! call: one virtual call per run is all the indirection costs.
//!
//! - `record.rs`: the model ([`RunRecord`], [`Outcome`]).
//! - `jsonl/`: the default log, JSON lines in segment files under
//!   `DATA/runs/`.

pub(crate) mod jsonl;
mod record;

pub use record::{Outcome, RunRecord};

use crate::error::RuntimeError;

/// Where run records go, and where they are read back from.
///
/// Implementations must be cheap to `append` to: it is called on the event
/// path, once per run, after the guest has returned.
pub trait RunLog: Send + Sync {
    /// Gives `record` the next run id and stores it (possibly later, in the
    /// background); returns the id. Ids are consecutive and continue across
    /// restarts.
    fn append(&self, record: &mut RunRecord) -> u64;

    /// Waits until every record appended so far is durably stored.
    fn sync(&self) -> Result<(), RuntimeError>;

    /// Records matching `query`, newest first. Sees every record appended
    /// before the call, so callers read their own runs.
    fn query(&self, query: &RunQuery) -> Result<Vec<RunRecord>, RuntimeError>;
}

/// Which run records to read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Only this listener's runs, or everyone's.
    pub listener: Option<String>,
    /// Only runs of events in this environment (the API's scoped tokens).
    pub environment: Option<String>,
    /// Only runs of events in this space.
    pub space: Option<String>,
    /// At most this many records.
    pub limit: usize,
}

impl RunQuery {
    /// The latest `limit` runs of `listener` (or of all).
    pub fn recent(listener: Option<&str>, limit: usize) -> Self {
        RunQuery {
            listener: listener.map(Into::into),
            limit,
            ..RunQuery::default()
        }
    }

    /// Whether `record` is one this query asks for (the limit aside).
    pub fn matches(&self, record: &RunRecord) -> bool {
        self.listener.as_ref().is_none_or(|l| *l == record.listener)
            && self
                .environment
                .as_ref()
                .is_none_or(|e| *e == record.environment)
            && self
                .space
                .as_deref()
                .is_none_or(|s| Some(s) == record.space.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(listener: &str, environment: &str, space: Option<&str>) -> RunRecord {
        RunRecord {
            id: 1,
            event_id: "ev_1".into(),
            topic: "t".into(),
            environment: environment.into(),
            space: space.map(Into::into),
            listener: listener.into(),
            module_hash: "00".into(),
            outcome: Outcome::Ok {
                value: String::new(),
            },
            started_at_ms: 0,
            duration_us: 1,
            stdout: String::new(),
            stderr: String::new(),
            output_dropped: 0,
            secrets_read: vec![],
            http: vec![],
            notes: vec![],
        }
    }

    #[test]
    fn queries_match_by_listener_environment_and_space() {
        let in_space = record("a", "prod", Some("team-a"));
        let in_env = record("a", "prod", None);
        let elsewhere = record("b", "staging", None);
        let old = record("a", "", None);
        let all = RunQuery::recent(None, 10);
        assert!(
            [&in_space, &in_env, &elsewhere, &old]
                .iter()
                .all(|r| all.matches(r))
        );
        let prod = RunQuery {
            environment: Some("prod".into()),
            ..all.clone()
        };
        assert!(prod.matches(&in_space) && prod.matches(&in_env));
        assert!(!prod.matches(&elsewhere) && !prod.matches(&old));
        let team_a = RunQuery {
            space: Some("team-a".into()),
            ..prod.clone()
        };
        assert!(team_a.matches(&in_space) && !team_a.matches(&in_env));
        let b = RunQuery::recent(Some("b"), 10);
        assert!(b.matches(&elsewhere) && !b.matches(&in_env));
    }
}
