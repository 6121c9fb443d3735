//! Run records over HTTP: `GET /v1/runs` (filtered, a page at a time) and
//! `GET /v1/runs/{id}`.
//!
//! Pages go newest first. The cursor is a run id: `next` in a page is the
//! `before` of the one after it, and `null` on the last. Ids only grow, so
//! a walk sees every run at most once while new runs are recorded; it ends
//! at the oldest run retention keeps (`serve --max-runs`,
//! `--runs-max-age`).
//!
//! Times (`since`, `until`, both inclusive, on a run's start) are
//! milliseconds since the Unix epoch or RFC 3339 in UTC
//! (`2026-12-01T10:00:00Z`). Every parameter is checked before anything
//! is read, and a bad one is a 400 naming it.
//!
//! Scope: a scoped token sees only runs of events inside its scope. A
//! filter naming an environment or space is checked like any target
//! (`auth::within`: outside the scope is a 403), and a run outside it is a
//! 404 exactly like a run that does not exist. A `listener` that is
//! neither deployed nor has a run the caller can see is a 404 too, the same
//! whether it exists elsewhere or not.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use keyhole_runtime::{Outcome, RunQuery};
use keyhole_store::{Scope, validate_id};

use super::Shared;
use super::auth::{sees, within, within_scope};
use super::body::ApiPath;
use super::error::{ApiError, ErrorCode};
use super::scopes::{blocking, query};
use crate::auth::{Permission, Principal};
use crate::requests::RunsParams;
use crate::views::{RunView, RunsPage};

/// Default and largest page of `GET /v1/runs`.
pub const RUNS_DEFAULT: usize = 100;
pub const RUNS_MAX: usize = 1_000;

/// A user-supplied value, quoted and cut short, for error messages.
fn preview(s: &str) -> String {
    let mut out: String = s.chars().take(64).flat_map(char::escape_debug).collect();
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    format!("\"{out}\"")
}

fn bad(param: &str, expected: &str, value: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{param}: expected {expected}, not {}",
        preview(value)
    ))
}

fn id_param(param: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    if let Some(v) = &value {
        validate_id(v).map_err(|e| ApiError::bad_request(format!("{param}: {e}")))?;
    }
    Ok(value)
}

/// A positive whole number (a run id or a cursor).
fn run_id(param: &str, value: &str) -> Result<u64, ApiError> {
    match value.parse::<u64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(bad(param, "a run id (a whole number from 1)", value)),
    }
}

/// Milliseconds since the epoch, or an RFC 3339 time in UTC.
fn parse_time(param: &str, value: &str) -> Result<u64, ApiError> {
    let expected = "milliseconds since the Unix epoch or an RFC 3339 time in UTC \
                    such as 2026-12-01T10:00:00Z";
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().map_err(|_| bad(param, expected, value));
    }
    let t = humantime::parse_rfc3339_weak(value).map_err(|_| bad(param, expected, value))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .ok_or_else(|| bad(param, expected, value))
}

fn outcomes(value: &str) -> Result<Vec<String>, ApiError> {
    value
        .split(',')
        .map(|label| {
            if Outcome::LABELS.contains(&label) {
                return Ok(label.to_string());
            }
            let all = Outcome::LABELS.join(", ");
            let expected = format!("one or more of {all} (comma-separated)");
            Err(bad("outcome", &expected, label))
        })
        .collect()
}

/// The query `p` asks for, without the caller's scope.
fn filters(p: RunsParams) -> Result<RunQuery, ApiError> {
    let limit = match p.limit.as_deref() {
        None => RUNS_DEFAULT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=RUNS_MAX).contains(&n) => n,
            _ => {
                return Err(bad(
                    "limit",
                    &format!("a whole number from 1 to {RUNS_MAX}"),
                    v,
                ));
            }
        },
    };
    if let Some(e) = &p.event_id
        && (e.is_empty() || e.len() > 128)
    {
        return Err(bad("eventId", "an event id (1-128 characters)", e));
    }
    let q = RunQuery {
        environment: id_param("environmentId", p.environment_id)?,
        space: id_param("spaceId", p.space_id)?,
        listener: id_param("listener", p.listener)?,
        outcomes: p.outcome.as_deref().map(outcomes).transpose()?,
        event_id: p.event_id,
        since_ms: p.since.map(|v| parse_time("since", &v)).transpose()?,
        until_ms: p.until.map(|v| parse_time("until", &v)).transpose()?,
        before: p.before.map(|v| run_id("before", &v)).transpose()?,
        limit,
    };
    if let (Some(since), Some(until)) = (q.since_ms, q.until_ms)
        && since > until
    {
        return Err(ApiError::bad_request(
            "since is later than until: no run can match",
        ));
    }
    Ok(q)
}

/// Narrows `q` to `who`'s scope; a filter naming an environment or space
/// outside it is a 403 (`auth::within`).
fn scoped(s: &Shared, who: &Principal, mut q: RunQuery) -> Result<RunQuery, ApiError> {
    let (p, store) = (Permission::RunsRead, s.runtime.store());
    match (&q.environment, &q.space) {
        (Some(env), space) => within(who, p, store, env, space.as_deref())?,
        (None, Some(space)) => within_scope(who, p, store, &Scope::Space(space.clone()))?,
        (None, None) => {}
    }
    if q.environment.is_none() {
        q.environment = who.scope.environment().map(Into::into);
    }
    if q.space.is_none() {
        q.space = who.scope.space().map(Into::into);
    }
    Ok(q)
}

pub async fn list(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    q: Result<Query<RunsParams>, QueryRejection>,
) -> Result<Json<RunsPage>, ApiError> {
    let q = scoped(&s, &who, filters(query(q)?)?)?;
    let state = s.clone();
    let page = blocking(move || {
        let page = state.runtime.runs_page(&q)?;
        if page.runs.is_empty()
            && let Some(listener) = &q.listener
            && !known_listener(&state, &who, listener)?
        {
            return Err(ApiError::new(
                ErrorCode::UnknownListener,
                format!("no listener named {listener}"),
            )
            .about(listener.as_str()));
        }
        Ok(page)
    })
    .await?;
    Ok(Json(RunsPage {
        runs: page.runs.into_iter().map(RunView::from).collect(),
        next: page.next,
    }))
}

/// Whether `listener` is deployed where `who` sees it, or has a run `who`
/// may see: a removed listener's runs stay listable, while a name the
/// caller can see nothing of is unknown. Only asked when a page is empty;
/// for an unknown name it reads the whole log once.
fn known_listener(s: &Shared, who: &Principal, listener: &str) -> Result<bool, ApiError> {
    let deployed = s.runtime.deployments().into_iter().any(|d| {
        d.spec.name == listener && sees(who, &d.spec.environment, d.spec.space.as_deref())
    });
    if deployed {
        return Ok(true);
    }
    let any_run = RunQuery {
        listener: Some(listener.into()),
        environment: who.scope.environment().map(Into::into),
        space: who.scope.space().map(Into::into),
        limit: 1,
        ..RunQuery::default()
    };
    Ok(!s.runtime.query_runs(&any_run)?.is_empty())
}

pub async fn get(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunView>, ApiError> {
    let id = run_id("run id", &id)?;
    let runtime = s.runtime.clone();
    let run = blocking(move || Ok(runtime.run_record(id)?)).await?;
    match run {
        Some(r) if sees(&who, &r.environment, r.space.as_deref()) => Ok(Json(RunView::from(r))),
        // Missing and out of scope are one answer.
        _ => {
            Err(ApiError::new(ErrorCode::UnknownRun, format!("no run {id}")).about(id.to_string()))
        }
    }
}
