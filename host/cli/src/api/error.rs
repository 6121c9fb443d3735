//! API errors: the one place where store, runtime and token errors become
//! an [`ErrorCode`] (and through it an HTTP status). Reading and parsing
//! bodies, whose every failure is a 4xx, is `body.rs`.
//! Every error body is `{"error": message, "code": ErrorCode}`.
//!
//! | status | meaning |
//! | --- | --- |
//! | 400 | invalid input: names, ids, specs, modules, JSON, unknown fields |
//! | 401 | no, malformed, unknown, revoked or expired token: no body (`auth.rs`) |
//! | 403 | the token lacks the permission, or the target is outside its scope: `{"error", "code", "missingPermission"}` |
//! | 404 | unknown environment, space, secret, listener, run or token (a run outside the caller's scope too: `runs.rs`) |
//! | 408 | body not received within `--request-timeout` (see `deadline.rs`) |
//! | 409 | already exists (a space id taken anywhere), being deleted, not empty (a delete without `force=true`), or a concurrent change won (try again), e.g. a deploy keeping the grants of a deployment replaced meanwhile |
//! | 413 | body or module too large |
//! | 503 | store sealed (master key missing or wrong), or the audit log cannot record an admin change (nothing changed) |
//! | 500 | anything else (details are logged, not returned) |

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyhole_runtime::RuntimeError;
use keyhole_store::StoreError;
use serde::{Deserialize, Serialize};

use keyhole_audit::AuditError;

use crate::auth::{Permission, TokenError};
use crate::trail::Refused;

/// What went wrong, for programs: every error body carries one (`code`),
/// beside the message for people. The CLI turns it into its exit code and
/// hint (`crate::errors`), whether it talks to a daemon or to the API in
/// its own process, so both answer alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Invalid input: names, ids, specs, modules, JSON, unknown fields.
    Invalid,
    /// A space named with an environment it does not belong to.
    SpaceNotInEnvironment,
    UnknownEnvironment,
    UnknownSpace,
    UnknownSecret,
    UnknownListener,
    UnknownToken,
    UnknownRun,
    UnknownRoute,
    /// The route exists, but not with this method (the `Allow` header
    /// lists those it has).
    MethodNotAllowed,
    /// Already exists.
    Exists,
    /// An environment or space still holds secrets, spaces or listeners,
    /// and the delete was not forced.
    NotEmpty,
    /// The environment or space is being deleted.
    BeingDeleted,
    /// A concurrent change won; trying again may succeed.
    Contended,
    /// A check-and-set write expected another current version; nothing
    /// was written.
    VersionMismatch,
    /// The version asked for is not kept (never written, pruned, or
    /// destroyed).
    UnknownVersion,
    /// The secret is not in the state the operation needs (undeleting a
    /// live secret, destroying the live current version).
    WrongState,
    /// The body or module is too large.
    TooLarge,
    /// The body did not arrive in time.
    Timeout,
    /// No valid token (the 401 itself has no body; clients use this code).
    Unauthenticated,
    /// The token lacks the permission, or the target is outside its scope.
    Forbidden,
    /// The store is sealed: the master key is missing, wrong or refused.
    Sealed,
    /// The audit log cannot record an admin change, so nothing changed.
    AuditUnavailable,
    /// This host is not (yet) where the request needs it: it has not seen
    /// the store revision an event asked for. Retrying may succeed.
    Unavailable,
    /// A host fault; details are in the daemon's log, not the response.
    Internal,
    /// A code this client does not know (a newer daemon).
    #[serde(other)]
    Other,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        use ErrorCode as C;
        match self {
            C::Invalid | C::SpaceNotInEnvironment => StatusCode::BAD_REQUEST,
            C::UnknownEnvironment
            | C::UnknownSpace
            | C::UnknownSecret
            | C::UnknownListener
            | C::UnknownToken
            | C::UnknownRun
            | C::UnknownRoute
            | C::UnknownVersion => StatusCode::NOT_FOUND,
            C::Exists
            | C::NotEmpty
            | C::BeingDeleted
            | C::Contended
            | C::VersionMismatch
            | C::WrongState => StatusCode::CONFLICT,
            C::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            C::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            C::Timeout => StatusCode::REQUEST_TIMEOUT,
            C::Unauthenticated => StatusCode::UNAUTHORIZED,
            C::Forbidden => StatusCode::FORBIDDEN,
            C::Sealed | C::AuditUnavailable | C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            C::Internal | C::Other => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The id or name the error is about, when there is one (the unknown
    /// environment, the secret not found), for clients to act on.
    pub subject: Option<String>,
    /// For a 403: the permission the caller lacks.
    pub missing_permission: Option<Permission>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            subject: None,
            missing_permission: None,
        }
    }

    /// The same, about `subject`.
    pub fn about(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// A 403 naming the permission the caller lacks.
    pub fn forbidden(missing: Permission, message: impl Into<String>) -> Self {
        ApiError {
            missing_permission: Some(missing),
            ..Self::new(ErrorCode::Forbidden, message)
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {message}");
        Self::new(ErrorCode::Internal, "internal error")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status().as_u16())
    }
}

/// On a 403's response, for the auth middleware's audit entry: why.
#[derive(Clone, Debug)]
pub struct Denial(pub String);

/// An error body: `{"error", "code", "subject"?, "missingPermission"?}`.
/// The CLI reads the same shape back (`crate::client`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
    pub code: ErrorCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_permission: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: self.message.clone(),
            code: self.code,
            subject: self.subject,
            missing_permission: self.missing_permission.map(|p| p.name().to_owned()),
        };
        let mut response = (status, Json(body)).into_response();
        if self.missing_permission.is_some() {
            response.extensions_mut().insert(Denial(self.message));
        }
        response
    }
}

/// The code for a store error.
pub fn store_code(e: &StoreError) -> ErrorCode {
    use ErrorCode as C;
    use StoreError as S;
    match e {
        S::InvalidName { .. }
        | S::InvalidId { .. }
        | S::InvalidValue { .. }
        | S::InvalidTopics { .. }
        | S::Unsupported(_) => C::Invalid,
        // Only a listener's read is refused for its topic (the API reads
        // no values); listed so that every variant has its code.
        S::TopicBound { .. } => C::Forbidden,
        S::SpaceNotInEnvironment { .. } => C::SpaceNotInEnvironment,
        S::UnknownEnvironment(_) => C::UnknownEnvironment,
        S::UnknownSpace(_) => C::UnknownSpace,
        S::NotFound { .. } => C::UnknownSecret,
        S::VersionMismatch { .. } => C::VersionMismatch,
        S::VersionGone { .. } => C::UnknownVersion,
        S::WrongState { .. } => C::WrongState,
        S::AlreadyExists(_) | S::SpaceExists { .. } => C::Exists,
        S::BeingDeleted(_) => C::BeingDeleted,
        S::Contended(_) => C::Contended,
        S::Sealed { .. } | S::KeyFile { .. } => C::Sealed,
        S::Locked { .. } | S::Corrupt { .. } | S::Integrity { .. } | S::Backend(_) | S::Io(_) => {
            C::Internal
        }
    }
}

/// The code for a runtime error.
pub fn runtime_code(e: &RuntimeError) -> ErrorCode {
    use ErrorCode as C;
    use RuntimeError as R;
    match e {
        R::Store(s) => store_code(s),
        R::NotWasm(_)
        | R::CoreModule
        | R::InvalidComponent(_)
        | R::WrongWorld(_)
        | R::ForbiddenImport { .. }
        | R::InvalidSpec(_)
        | R::InvalidEvent(_)
        | R::ExceedsLimits(_) => C::Invalid,
        R::UnknownListener(_) => C::UnknownListener,
        R::Changed(_) => C::Contended,
        R::NotEmpty { .. } => C::NotEmpty,
        R::TooLarge { .. } => C::TooLarge,
        R::AuditUnavailable(_) => C::AuditUnavailable,
        R::Io { .. } | R::Corrupt(_) | R::Engine(_) => C::Internal,
    }
}

/// The code for a token error.
pub fn token_code(e: &TokenError) -> ErrorCode {
    use ErrorCode as C;
    use TokenError as T;
    match e {
        T::InvalidName | T::Unscopable(_) | T::SpaceWithoutEnvironment | T::InvalidExpiry(_) => {
            C::Invalid
        }
        T::NotFound(_) => C::UnknownToken,
        T::Exists(_) => C::Exists,
        T::Contended(_) => C::Contended,
        T::Corrupt(_) | T::Storage(_) => C::Internal,
    }
}

fn from_code(code: ErrorCode, message: String) -> ApiError {
    if code == ErrorCode::Internal {
        ApiError::internal(message)
    } else {
        ApiError::new(code, message)
    }
}

/// What a store error is about, if it names one thing.
fn store_subject(e: &StoreError) -> Option<&str> {
    match e {
        StoreError::UnknownEnvironment(id) | StoreError::UnknownSpace(id) => Some(id),
        StoreError::SpaceNotInEnvironment { space, .. } => Some(space),
        StoreError::NotFound { name, .. } => Some(name),
        _ => None,
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let error = from_code(store_code(&e), e.to_string());
        match store_subject(&e) {
            Some(s) => error.about(s),
            None => error,
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Store(s) => s.into(),
            RuntimeError::UnknownListener(ref name) => {
                let name = name.clone();
                from_code(runtime_code(&e), e.to_string()).about(name)
            }
            RuntimeError::NotEmpty { .. } => from_code(
                runtime_code(&e),
                format!("{e}; pass force=true to delete them with it"),
            ),
            e => from_code(runtime_code(&e), e.to_string()),
        }
    }
}

/// A store error from creating a space, for a caller who may (`reaches`)
/// or may not see the environment that owns a taken space id: a scoped
/// caller is told only that the id is taken, not where.
pub fn space_create_error(e: StoreError, reaches: impl Fn(&str) -> bool) -> ApiError {
    match &e {
        StoreError::SpaceExists { space, environment } if !reaches(environment) => {
            ApiError::new(store_code(&e), format!("space id {space} is taken"))
                .about(space.as_str())
        }
        _ => e.into(),
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match &e {
            TokenError::NotFound(name) => {
                let name = name.clone();
                from_code(token_code(&e), e.to_string()).about(name)
            }
            _ => from_code(token_code(&e), e.to_string()),
        }
    }
}

impl From<Refused> for ApiError {
    /// Not applied: the audit log could not record it.
    fn from(e: Refused) -> Self {
        match &e {
            Refused::Sealed(reason) => ApiError::new(
                ErrorCode::Sealed,
                format!(
                    "not changed: admin changes are audited, and the audit log needs the master key (store sealed: {reason})"
                ),
            ),
            Refused::Unavailable(_) => {
                ApiError::new(ErrorCode::AuditUnavailable, format!("not changed: {e}"))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_for_every_variant_class() {
        let status = |c: ErrorCode| c.status();
        assert_eq!(
            status(store_code(&StoreError::UnknownEnvironment("x".into()))),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(store_code(&StoreError::AlreadyExists("x".into()))),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(store_code(&StoreError::Sealed { reason: "r".into() })),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status(runtime_code(&RuntimeError::TooLarge { size: 2, limit: 1 })),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status(runtime_code(&RuntimeError::Store(
                StoreError::InvalidValue { rule: "r" }
            ))),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(token_code(&TokenError::NotFound("ci".into()))),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(token_code(&TokenError::Exists("ci".into()))),
            StatusCode::CONFLICT
        );
        let taken = || StoreError::SpaceExists {
            space: "team-a".into(),
            environment: "prod".into(),
        };
        let e = space_create_error(taken(), |_| false);
        assert_eq!(
            (e.status(), e.message.as_str()),
            (StatusCode::CONFLICT, "space id team-a is taken")
        );
        let e = space_create_error(taken(), |env| env == "prod");
        assert!(e.message.contains("environment \"prod\""), "{}", e.message);
        let e = ApiError::from(RuntimeError::Engine("secret detail".into()));
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.message, "internal error");
    }

    #[test]
    fn codes_round_trip_and_unknown_ones_are_other() {
        let body = ErrorBody {
            error: "x".into(),
            code: ErrorCode::SpaceNotInEnvironment,
            subject: None,
            missing_permission: None,
        };
        let text = serde_json::to_string(&body).unwrap();
        assert_eq!(text, r#"{"error":"x","code":"space_not_in_environment"}"#);
        let back: ErrorBody = serde_json::from_str(&text).unwrap();
        assert_eq!(back.code, ErrorCode::SpaceNotInEnvironment);
        let newer: ErrorBody =
            serde_json::from_str(r#"{"error":"x","code":"from_the_future"}"#).unwrap();
        assert_eq!(newer.code, ErrorCode::Other);
    }
}
