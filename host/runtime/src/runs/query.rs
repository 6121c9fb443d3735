//! Which run records a reader wants (filters, a cursor, a page size) and
//! the one test of whether a record passes.
//!
//! Kept apart from any log so every [`super::RunLog`] answers a query the
//! same way. The test runs on [`RunFields`], the few fields a query looks
//! at, so the JSONL log can test a line before it reads the whole record.
//!
//! Pages go newest first. Run ids are consecutive and only grow, so the
//! cursor is a run id (`before`): the next page holds the runs older than
//! the last one shown, and runs appended meanwhile never shift a page.

use super::record::RunRecord;

/// Which run records to read, newest first. Every filter that is set must
/// hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Only this listener's runs.
    pub listener: Option<String>,
    /// Only runs of events in this environment (also how the API keeps a
    /// scoped token inside its scope).
    pub environment: Option<String>,
    /// Only runs of events in this space.
    pub space: Option<String>,
    /// Only runs whose outcome has one of these labels
    /// ([`super::Outcome::LABELS`]).
    pub outcomes: Option<Vec<String>>,
    /// Only the runs of this event.
    pub event_id: Option<String>,
    /// Only runs that started at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only runs that started at or before this time (ms since the epoch).
    pub until_ms: Option<u64>,
    /// Only runs with a smaller id: the cursor, the `next` of the page
    /// before.
    pub before: Option<u64>,
    /// At most this many records.
    pub limit: usize,
}

/// The fields of a run record a query tests.
#[derive(Clone, Copy, Debug)]
pub struct RunFields<'a> {
    pub id: u64,
    pub event_id: &'a str,
    pub environment: &'a str,
    pub space: Option<&'a str>,
    pub listener: &'a str,
    /// The outcome's label.
    pub outcome: &'a str,
    pub started_at_ms: u64,
}

impl<'a> RunFields<'a> {
    pub fn of(record: &'a RunRecord) -> Self {
        RunFields {
            id: record.id,
            event_id: &record.event_id,
            environment: &record.environment,
            space: record.space.as_deref(),
            listener: &record.listener,
            outcome: record.outcome.label(),
            started_at_ms: record.started_at_ms,
        }
    }
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
        self.matches_fields(&RunFields::of(record))
    }

    /// [`RunQuery::matches`], on the fields it tests.
    pub fn matches_fields(&self, f: &RunFields<'_>) -> bool {
        let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.before.is_none_or(|b| f.id < b)
            && is(&self.listener, f.listener)
            && is(&self.environment, f.environment)
            && self.space.as_deref().is_none_or(|s| Some(s) == f.space)
            && is(&self.event_id, f.event_id)
            && self
                .outcomes
                .as_ref()
                .is_none_or(|o| o.iter().any(|o| o == f.outcome))
            && self.since_ms.is_none_or(|t| f.started_at_ms >= t)
            && self.until_ms.is_none_or(|t| f.started_at_ms <= t)
    }
}

/// One page of runs, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunPage {
    pub runs: Vec<RunRecord>,
    /// The cursor (`before`) of the next page: the id of this page's last
    /// run, when older runs match too; `None` when this page is the last.
    pub next: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::Outcome;

    fn record(listener: &str, environment: &str, space: Option<&str>) -> RunRecord {
        RunRecord {
            id: 5,
            event_id: "ev_1".into(),
            topic: "t".into(),
            environment: environment.into(),
            space: space.map(Into::into),
            listener: listener.into(),
            module_hash: "00".into(),
            outcome: Outcome::Ok {
                value: String::new(),
            },
            started_at_ms: 1_000,
            duration_us: 1,
            stdout: String::new(),
            stderr: String::new(),
            output_dropped: 0,
            secrets_read: vec![],
            http: vec![],
            notes: vec![],
            delivery: 1,
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

    #[test]
    fn queries_match_by_outcome_event_time_and_cursor() {
        let run = record("a", "prod", None);
        let q = |f: fn(&mut RunQuery)| {
            let mut q = RunQuery::recent(None, 1);
            f(&mut q);
            q.matches(&run)
        };
        assert!(q(|q| q.outcomes = Some(vec!["trap".into(), "ok".into()])));
        assert!(!q(|q| q.outcomes = Some(vec!["trap".into()])));
        assert!(
            !q(|q| q.outcomes = Some(vec![])),
            "an empty set allows none"
        );
        assert!(q(|q| q.event_id = Some("ev_1".into())));
        assert!(!q(|q| q.event_id = Some("ev_2".into())));
        assert!(q(|q| q.since_ms = Some(1_000)) && !q(|q| q.since_ms = Some(1_001)));
        assert!(q(|q| q.until_ms = Some(1_000)) && !q(|q| q.until_ms = Some(999)));
        assert!(q(|q| q.before = Some(6)) && !q(|q| q.before = Some(5)));
    }
}
