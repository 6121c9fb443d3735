//! API errors: the one place where store and runtime errors become HTTP
//! status codes, and the JSON body extractor that turns malformed input into
//! a 4xx `{"error": "..."}` before any handler runs.
//!
//! | status | meaning |
//! | --- | --- |
//! | 400 | invalid input: names, ids, specs, modules, JSON, unknown fields |
//! | 401 | no, malformed, unknown, revoked or expired token: no body (`auth.rs`) |
//! | 403 | the token lacks the permission, or the target is outside its scope: `{"error", "missingPermission"}` |
//! | 404 | unknown environment, space, secret, listener or token |
//! | 408 | body not received within `--request-timeout` (see `deadline.rs`) |
//! | 409 | already exists (a space id taken anywhere), being deleted, not empty (a delete without `force=true`), or a concurrent change won (try again) |
//! | 413 | body or module too large |
//! | 503 | store sealed (master key missing or wrong), or the audit log cannot record an admin change (nothing changed) |
//! | 500 | anything else (details are logged, not returned) |

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use keyhole_runtime::RuntimeError;
use keyhole_store::StoreError;
use serde::de::DeserializeOwned;

use keyhole_audit::AuditError;

use crate::auth::{Permission, TokenError};
use crate::trail::Refused;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For a 403: the permission the caller lacks.
    pub missing_permission: Option<Permission>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            missing_permission: None,
        }
    }

    /// A 403 naming the permission the caller lacks.
    pub fn forbidden(missing: Permission, message: impl Into<String>) -> Self {
        ApiError {
            missing_permission: Some(missing),
            ..Self::new(StatusCode::FORBIDDEN, message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {message}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status.as_u16())
    }
}

/// On a 403's response, for the auth middleware's audit entry: why.
#[derive(Clone, Debug)]
pub struct Denial(pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.missing_permission {
            None => serde_json::json!({ "error": self.message }),
            Some(p) => serde_json::json!({ "error": self.message, "missingPermission": p.name() }),
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.missing_permission.is_some() {
            response.extensions_mut().insert(Denial(self.message));
        }
        response
    }
}

/// The status for a store error.
pub fn store_status(e: &StoreError) -> StatusCode {
    use StoreError as S;
    match e {
        S::InvalidName { .. }
        | S::InvalidId { .. }
        | S::InvalidValue { .. }
        | S::SpaceNotInEnvironment { .. }
        | S::Unsupported(_) => StatusCode::BAD_REQUEST,
        S::UnknownEnvironment(_) | S::UnknownSpace(_) | S::NotFound { .. } => StatusCode::NOT_FOUND,
        S::AlreadyExists(_) | S::SpaceExists { .. } | S::BeingDeleted(_) | S::Contended(_) => {
            StatusCode::CONFLICT
        }
        S::Sealed { .. } | S::KeyFile { .. } => StatusCode::SERVICE_UNAVAILABLE,
        S::Locked { .. } | S::Corrupt { .. } | S::Integrity { .. } | S::Backend(_) | S::Io(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// The status for a runtime error.
pub fn runtime_status(e: &RuntimeError) -> StatusCode {
    use RuntimeError as R;
    match e {
        R::Store(s) => store_status(s),
        R::NotWasm(_)
        | R::CoreModule
        | R::InvalidComponent(_)
        | R::WrongWorld(_)
        | R::ForbiddenImport { .. }
        | R::InvalidSpec(_)
        | R::InvalidEvent(_)
        | R::ExceedsLimits(_) => StatusCode::BAD_REQUEST,
        R::UnknownListener(_) => StatusCode::NOT_FOUND,
        R::NotEmpty { .. } => StatusCode::CONFLICT,
        R::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        R::Io { .. } | R::Corrupt(_) | R::Engine(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The status for a token error.
pub fn token_status(e: &TokenError) -> StatusCode {
    use TokenError as T;
    match e {
        T::InvalidName | T::Unscopable(_) | T::SpaceWithoutEnvironment | T::InvalidExpiry(_) => {
            StatusCode::BAD_REQUEST
        }
        T::NotFound(_) => StatusCode::NOT_FOUND,
        T::Exists(_) | T::Contended(_) => StatusCode::CONFLICT,
        T::Corrupt(_) | T::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn from_status(status: StatusCode, message: String) -> ApiError {
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        ApiError::internal(message)
    } else {
        ApiError::new(status, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        from_status(store_status(&e), e.to_string())
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        let message = match &e {
            RuntimeError::NotEmpty { .. } => {
                format!("{e}; pass force=true to delete them with it")
            }
            _ => e.to_string(),
        };
        from_status(runtime_status(&e), message)
    }
}

/// A store error from creating a space, for a caller who may (`reaches`)
/// or may not see the environment that owns a taken space id: a scoped
/// caller is told only that the id is taken, not where.
pub fn space_create_error(e: StoreError, reaches: impl Fn(&str) -> bool) -> ApiError {
    match &e {
        StoreError::SpaceExists { space, environment } if !reaches(environment) => {
            ApiError::new(store_status(&e), format!("space id {space} is taken"))
        }
        _ => e.into(),
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        from_status(token_status(&e), e.to_string())
    }
}

impl From<Refused> for ApiError {
    /// Not applied: the audit log could not record it.
    fn from(e: Refused) -> Self {
        let message = match &e {
            Refused::Sealed(reason) => format!(
                "not changed: admin changes are audited, and the audit log needs the master key (store sealed: {reason})"
            ),
            Refused::Unavailable(_) => format!("not changed: {e}"),
        };
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Io(_) | AuditError::Storage(_) | AuditError::Corrupt { .. } => {
                ApiError::internal(e)
            }
        }
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        ApiError::internal(format!("task failed: {e}"))
    }
}

/// Parses a JSON body, mapping every failure to a JSON 4xx.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// How much of an oversize body is read (and thrown away) before answering
/// 413. Answering while the client is still sending would make the server
/// close the connection under it, and most clients then report a broken
/// pipe instead of the 413; past this much the connection is cut anyway.
const DRAIN_LIMIT: usize = 64 << 20;

/// Why a body read failed: too slow (408) or broken (400).
fn body_read_error(e: axum::Error) -> ApiError {
    match super::deadline::timed_out(&e) {
        Some(t) => ApiError::new(StatusCode::REQUEST_TIMEOUT, t.to_string()),
        None => ApiError::bad_request(format!("reading the body: {e}")),
    }
}

/// Reads a whole body of at most `limit` bytes; a larger one is a 413.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(body_read_error)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            if total > limit.saturating_add(DRAIN_LIMIT) {
                break;
            }
            buf = Vec::new();
            continue;
        }
        buf.extend_from_slice(&data);
    }
    if total > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than {limit} bytes"),
        ));
    }
    Ok(Bytes::from(buf))
}

/// Like `axum::Json`, but every rejection (too large, unreadable, malformed,
/// unknown field) is a JSON error. No Content-Type is required.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req.into_body(), super::JSON_BODY_LIMIT).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A body that could not be read; too-large bodies become 413.
pub fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "request body too large")
    } else {
        ApiError::new(status, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_for_every_variant_class() {
        assert_eq!(
            store_status(&StoreError::UnknownEnvironment("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            store_status(&StoreError::AlreadyExists("x".into())),
            StatusCode::CONFLICT
        );
        assert_eq!(
            store_status(&StoreError::Sealed { reason: "r".into() }),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            runtime_status(&RuntimeError::TooLarge { size: 2, limit: 1 }),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            runtime_status(&RuntimeError::Store(StoreError::InvalidValue { rule: "r" })),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            token_status(&TokenError::NotFound("ci".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            token_status(&TokenError::Exists("ci".into())),
            StatusCode::CONFLICT
        );
        let taken = || StoreError::SpaceExists {
            space: "team-a".into(),
            environment: "prod".into(),
        };
        let e = space_create_error(taken(), |_| false);
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::CONFLICT, "space id team-a is taken")
        );
        let e = space_create_error(taken(), |env| env == "prod");
        assert!(e.message.contains("environment \"prod\""), "{}", e.message);
        let e = ApiError::from(RuntimeError::Engine("secret detail".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message, "internal error");
    }
}
