//! The API's side of the audit log: who did what through it, and reading
//! the log back.
//!
//! - Admin actions: each mutating handler checks its caller's scope first,
//!   then runs the change through [`audited`], so the entry (actor
//!   `token:NAME`) is on disk before the change is applied and a change the
//!   log cannot record is refused with a 503 (`crate::trail`).
//! - Refused requests: the auth middleware calls [`denial`] for every 401
//!   (actor `unauthenticated`) and 403 (the token's actor, the message
//!   naming the missing permission), best effort: the request is refused
//!   whether or not its entry is written.
//! - `GET /v1/audit` (a page of entries, newest first, or oldest first
//!   after a cursor) and `GET /v1/audit/verify` (the whole chain), both
//!   `audit:read`: admin and auditor tokens.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use keyhole_audit::{AuditLog, AuditQuery, VerifyReport};

use super::Shared;
use super::error::{ApiError, ErrorCode};
use super::scopes::{blocking, query};
use crate::auth::Principal;
use crate::requests::AuditParams;
use crate::trail::Trail;
use crate::views::{AuditPage, VerifyView};

/// Default and largest `limit` of `GET /v1/audit`.
const AUDIT_DEFAULT: usize = 100;
const AUDIT_MAX: usize = 10_000;

/// The actor of a request without a valid token.
pub const UNAUTHENTICATED: &str = "unauthenticated";

/// Where `actor`'s admin actions through the API are recorded.
pub fn trail(s: &Shared, actor: String) -> Trail {
    Trail::new(
        s.runtime.audit().cloned(),
        s.runtime.store().sealed_reason(),
        actor,
        Some(s.runtime.metrics_handle()),
    )
}

/// Records `action` on `target` by `who`, then applies it (`f`), on the
/// calling (blocking) thread; see [`Trail::record`].
pub fn audited<T>(
    s: &Shared,
    who: &Principal,
    action: &str,
    target: &str,
    f: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    trail(s, who.actor()).record(action, target, f)?
}

/// [`audited`], the entry carrying `detail` (what else the change does,
/// e.g. grants kept across a redeploy).
pub fn audited_with<T>(
    s: &Shared,
    who: &Principal,
    action: &str,
    target: &str,
    detail: Option<&str>,
    f: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    trail(s, who.actor()).record_detailed(action, target, detail, f)?
}

/// [`audited`], with a detail on the entry.
pub fn audited_detailed<T>(
    s: &Shared,
    who: &Principal,
    (action, target, detail): (&str, &str, &str),
    f: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    trail(s, who.actor()).record_detailed(action, target, Some(detail), f)?
}

/// Records a refused request: `route` is its method and matched path.
pub fn denial(s: &Shared, actor: String, route: &str, why: &str) {
    trail(s, actor).denied("request", route, why);
}

fn log(s: &Shared) -> Result<std::sync::Arc<AuditLog>, ApiError> {
    s.runtime.audit().cloned().ok_or_else(|| {
        let reason = s.runtime.store().sealed_reason().unwrap_or_default();
        ApiError::new(
            ErrorCode::Sealed,
            format!("the audit log needs the master key (store sealed: {reason})"),
        )
    })
}

pub async fn list(
    State(s): State<Shared>,
    q: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let p = query(q)?;
    let limit = p.limit.unwrap_or(AUDIT_DEFAULT);
    if limit > AUDIT_MAX {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is over the most a page holds ({AUDIT_MAX})"
        )));
    }
    let forward = p.after.is_some();
    let q = AuditQuery {
        secret: p.secret,
        deployment: p.deployment,
        actor: p.actor,
        target: p.target,
        outcome: p.outcome,
        since_ms: p.since,
        before: p.before,
        after: p.after,
        limit,
    };
    if let Some(host) = &p.host
        && !keyhole_audit::valid_host(host)
    {
        return Err(ApiError::bad_request(
            "host must be 1-64 of A-Z a-z 0-9 _ . -",
        ));
    }
    let log = log(&s)?;
    let host = p.host.clone().or_else(|| log.host().map(str::to_owned));
    let entries = blocking(move || {
        Ok(match &p.host {
            Some(host) if Some(host.as_str()) != log.host() => log.query_host(host, &q)?,
            _ => log.query(&q)?,
        })
    })
    .await?;
    let next = if entries.len() < limit || limit == 0 {
        None
    } else if forward {
        entries.iter().map(|r| r.seq).max()
    } else {
        entries.iter().map(|r| r.seq).min()
    };
    Ok(Json(AuditPage {
        host,
        entries,
        next,
    }))
}

fn verify_view(host: Option<String>, r: VerifyReport) -> VerifyView {
    VerifyView {
        host,
        ok: r.ok(),
        entries: r.entries,
        segments: r.segments,
        problem_seq: r.problem.as_ref().map(|p| p.seq),
        problem: r.problem.map(|p| p.to_string()),
        hosts: Vec::new(),
    }
}

/// This host's log and, in cluster mode, every host's chain in the
/// cluster's copy.
pub async fn verify(State(s): State<Shared>) -> Result<Json<VerifyView>, ApiError> {
    let log = log(&s)?;
    let (own, hosts) = blocking(move || Ok((log.verify()?, log.verify_cluster()?, log)))
        .await
        .map(|(own, cluster, log)| {
            let own = verify_view(log.host().map(str::to_owned), own);
            let hosts: Vec<VerifyView> = cluster
                .into_iter()
                .map(|h| verify_view(Some(h.host), h.report))
                .collect();
            (own, hosts)
        })?;
    let ok = own.ok && hosts.iter().all(|h| h.ok);
    Ok(Json(VerifyView { ok, hosts, ..own }))
}
