//! Authentication and authorization of API requests.
//!
//! Each route names the access it needs ([`super::Access`]); [`authorize`]
//! runs before its handler:
//!
//! 1. The bearer token must be one the daemon knows, unrevoked and
//!    unexpired, or the answer is a **bare 401** (no body, `WWW-Authenticate:
//!    Bearer`): nothing says whether it was missing, malformed or wrong.
//! 2. The token's role must hold the route's permission, or the answer is a
//!    **403** naming it (`missingPermission`). A global permission also
//!    needs an unscoped token.
//! 3. The [`Principal`] goes into the request's extensions, for the handler
//!    and for audit entries (`Principal::actor`).
//! 4. Every 401 and every 403 (this check's or a handler's) is an audit
//!    entry with outcome `denied` (`super::audit::denial`).
//! 5. A refusal here leaves the request's body unread, so it says
//!    `Connection: close`: the server will not read the rest, and a
//!    keep-alive client must not send another request on that connection
//!    (it would find it closed under it).
//!
//! A handler whose target is in its body or query (an environment, a space,
//! a listener) then checks the token's scope with [`within`] or
//! [`within_scope`] *before* it reads or writes anything about the target,
//! so a denial is the same whether the target exists or not. Where scope
//! membership itself needs a lookup (an environment-scoped token naming a
//! space), anything not found inside the token's environment, missing or
//! elsewhere, is the same 403.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyhole_store::{Scope, SecretStore};

use super::audit::{UNAUTHENTICATED, denial};
use super::error::{ApiError, Denial, ErrorCode, store_code};
use super::{Access, ConsoleCaller, Shared};
use crate::auth::{Permission, Principal, Reach, TokenScope};

/// The method and matched path of a request, for audit entries.
fn route_of(req: &Request) -> String {
    format!(
        "{} {}",
        req.method(),
        req.extensions()
            .get::<MatchedPath>()
            .map_or("?", |m| m.as_str())
    )
}

/// Middleware for every non-public route (see the module docs).
pub async fn authorize(
    State((s, access)): State<(Shared, Access)>,
    req: Request,
    next: Next,
) -> Response {
    let route = route_of(&req);
    let unread = declares_body(&req);
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let principal = match s.tokens.verify_header(header) {
        Ok(Some(p)) => p,
        Ok(None) => {
            denial(&s, UNAUTHENTICATED.into(), &route, "no valid bearer token");
            return closing(unread, unauthorized());
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    admit(&s, access, principal, &route, req, next).await
}

/// Middleware for every non-public route of the console's in-process API
/// (`super::console_router`): the caller is the [`ConsoleCaller`] the
/// console put in the request's extensions (the signed-in token, which the
/// console has just checked is still valid); from there on it is treated
/// exactly as a bearer token's principal.
pub async fn from_console(
    State((s, access)): State<(Shared, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    let route = route_of(&req);
    let Some(ConsoleCaller(principal)) = req.extensions_mut().remove::<ConsoleCaller>() else {
        denial(
            &s,
            UNAUTHENTICATED.into(),
            &route,
            "console request without a caller",
        );
        return unauthorized();
    };
    admit(&s, access, principal, &route, req, next).await
}

/// The route's permission check for a known caller, then the handler;
/// every 403 is audited.
async fn admit(
    s: &Shared,
    access: Access,
    principal: Principal,
    route: &str,
    mut req: Request,
    next: Next,
) -> Response {
    let unread = declares_body(&req);
    let actor = principal.actor();
    let response = match access {
        Access::Needs(p) if let Err(e) = require(&principal, p) => {
            closing(unread, e.into_response())
        }
        _ => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
    };
    // Every 403, whether from the route's permission or a handler's scope
    // check, carries why (`error::Denial`).
    if let Some(Denial(why)) = response.extensions().get::<Denial>() {
        denial(s, actor, route, why);
    }
    response
}

/// Middleware for every non-public route of the CLI's in-process API
/// (`crate::client::Local`): the caller is given, not presented; its role
/// is still checked against the route's permission.
pub async fn as_caller(
    State((caller, access)): State<(Principal, Access)>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Access::Needs(p) = access
        && let Err(e) = require(&caller, p)
    {
        return e.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Whether the request says it carries a body (which a refusal here leaves
/// unread).
fn declares_body(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// A refusal answered before the body was read: the server will not read
/// it, so the connection cannot carry another request. Saying so keeps a
/// keep-alive client from sending its next request into a closed socket.
fn closing(unread: bool, mut response: Response) -> Response {
    if unread {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// The bare 401: no detail.
fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
    )
        .into_response()
}

fn denied(who: &Principal, p: Permission, target: Option<&str>) -> ApiError {
    let message = match target {
        None => format!("{} lacks permission {p}", who.describe()),
        Some(t) => format!("{} lacks permission {p} for {t}", who.describe()),
    };
    ApiError::forbidden(p, message)
}

/// The role holds `p` (and, for a global permission, the token is unscoped).
pub fn require(who: &Principal, p: Permission) -> Result<(), ApiError> {
    if !who.role.allows(p) {
        return Err(denied(who, p, None));
    }
    if p.global() && who.scope != TokenScope::All {
        return Err(denied(who, p, Some("all environments")));
    }
    Ok(())
}

fn target_text(environment: &str, space: Option<&str>) -> String {
    match space {
        None => format!("env {environment}"),
        Some(s) => format!("space {s} in env {environment}"),
    }
}

/// `who` may use `p` on `environment` (or `space` in it). Looks nothing up
/// unless an environment-scoped token names a space.
pub fn within(
    who: &Principal,
    p: Permission,
    store: &SecretStore,
    environment: &str,
    space: Option<&str>,
) -> Result<(), ApiError> {
    require(who, p)?;
    let deny = || Err(denied(who, p, Some(&target_text(environment, space))));
    match who.scope.reaches(environment, space) {
        Reach::Yes => Ok(()),
        Reach::No => deny(),
        Reach::IfSpaceInEnvironment => match store.check_scope(environment, space) {
            Ok(()) => Ok(()),
            Err(e) if store_code(&e) == ErrorCode::Internal => Err(e.into()),
            // Missing, elsewhere or malformed: one answer.
            Err(_) => deny(),
        },
    }
}

/// [`within`] for a secret's scope (`env:E` or `space:S`): a space is
/// looked for in the token's own environment.
pub fn within_scope(
    who: &Principal,
    p: Permission,
    store: &SecretStore,
    scope: &Scope,
) -> Result<(), ApiError> {
    match (scope, who.scope.environment()) {
        (Scope::Environment(e), _) => within(who, p, store, e, None),
        (Scope::Space(_), None) => require(who, p),
        (Scope::Space(s), Some(e)) => {
            let e = e.to_string();
            within(who, p, store, &e, Some(s))
        }
    }
}

/// Whether a listed item of `environment` (and `space`, which the item's
/// own record places in it) is inside `who`'s scope. For filtering lists:
/// no lookup, no error.
pub fn sees(who: &Principal, environment: &str, space: Option<&str>) -> bool {
    who.scope.reaches(environment, space) != Reach::No
}

/// A denial for a named item (a listener) whose scope `who` cannot be shown
/// to reach; the same whether it exists or not.
pub fn denied_item(who: &Principal, p: Permission, what: &str) -> ApiError {
    denied(who, p, Some(what))
}
