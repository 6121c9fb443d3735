//! The HTTP API served by `keyhole serve`.
//!
//! [`routes`] is the one list of every (method, path) the daemon serves. The
//! router is built from it, and a test checks it against the hand-written
//! OpenAPI document (`openapi.json`, served at `GET /v1/openapi.json`), so a
//! route cannot be added without documenting it, nor documented without
//! existing.
//!
//! Every route says what access it needs ([`Access`]): `GET /healthz` is
//! public, every other route needs `Authorization: Bearer <token>` and
//! names the permission its caller's role must hold, so no route can be
//! added without deciding who may call it. A missing, wrong, revoked or
//! expired token gets a bare 401; a token without the permission, or
//! outside its scope, a 403 naming the permission (`auth.rs`). The caller's
//! `auth::Principal` is in each request's extensions.
//!
//! Three routers are built from the one table, differing only in how the
//! caller is known: [`router`] (the daemon's, bearer tokens only),
//! [`local_router`] (the CLI in its own process, as the local user) and
//! [`console_router`] (the web console in the daemon's process, as the
//! signed-in token: `crate::console`). Each is its own `Router` value,
//! never reachable from another: a network request reaches only
//! [`router`].
//!
//! Bodies are bounded: JSON bodies by [`JSON_BODY_LIMIT`], module uploads by
//! `--max-module-bytes`, and the time to receive any body by
//! `--request-timeout` ([`deadline`]).

mod audit;
mod auth;
mod body;
mod deadline;
mod deletion;
mod environments;
mod error;
mod events;
mod grants;
mod history;
mod listeners;
mod runs;
mod scopes;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use axum::{Json, Router};
use keyhole_runtime::Runtime;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use audit::{UNAUTHENTICATED, audited, denial};
pub use auth::require;
pub use deadline::limit_body_time;
pub use error::{ApiError, ErrorBody, ErrorCode};
pub use events::{BATCH_BODY_LIMIT, MAX_BATCH_EVENTS};
pub(crate) use history::applied;
pub use tokens::spawn_last_used_writer;

use crate::auth::{Permission, Principal, TokenView};

/// Largest JSON request body.
pub const JSON_BODY_LIMIT: usize = 1 << 20;
/// The OpenAPI 3 document describing [`routes`].
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Everything a handler needs.
pub struct AppState {
    pub runtime: Runtime,
    pub tokens: TokenView,
    pub max_module_bytes: usize,
    /// Time allowed to receive a request body (`--request-timeout`).
    pub request_timeout: Duration,
    pub metrics: ApiMetrics,
    /// Cluster mode: events are queued here and run by any host's workers
    /// (`crate::events_queue`); `None`: run by the host that receives them.
    pub queue: Option<Arc<keyhole_kv_nats::queue::WorkQueue>>,
}

pub type Shared = Arc<AppState>;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token.
    Public,
    /// Any valid token, whatever its role.
    AnyToken,
    /// A token whose role holds this permission.
    Needs(Permission),
}

/// One served route.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<Shared>,
}

fn route(
    method: Method,
    path: &'static str,
    needs: Permission,
    handler: MethodRouter<Shared>,
) -> Route {
    Route {
        method,
        path,
        access: Access::Needs(needs),
        handler,
    }
}

/// Largest `POST /v1/listeners` body: the module, plus room for the
/// multipart framing and the `spec` part.
pub fn upload_limit(max_module_bytes: usize) -> usize {
    max_module_bytes.saturating_add(JSON_BODY_LIMIT + 64 * 1024)
}

/// Every route the daemon serves.
pub fn routes(max_module_bytes: usize) -> Vec<Route> {
    use Method as M;
    use Permission as P;
    let upload_limit = upload_limit(max_module_bytes);
    vec![
        Route {
            method: M::GET,
            path: "/healthz",
            access: Access::Public,
            handler: get(healthz),
        },
        Route {
            method: M::GET,
            path: "/v1/openapi.json",
            access: Access::AnyToken,
            handler: get(openapi),
        },
        route(M::GET, "/metrics", P::MetricsRead, get(metrics)),
        route(
            M::GET,
            "/v1/environments",
            P::ScopesRead,
            get(environments::list_environments),
        ),
        route(
            M::POST,
            "/v1/environments",
            P::EnvironmentsWrite,
            post(environments::create_environment),
        ),
        route(
            M::GET,
            "/v1/environments/{id}",
            P::ScopesRead,
            get(environments::get_environment),
        ),
        route(
            M::DELETE,
            "/v1/environments/{id}",
            P::EnvironmentsWrite,
            delete(deletion::delete_environment),
        ),
        route(
            M::GET,
            "/v1/spaces",
            P::ScopesRead,
            get(environments::list_spaces),
        ),
        route(
            M::POST,
            "/v1/spaces",
            P::ScopesWrite,
            post(environments::create_space),
        ),
        route(
            M::GET,
            "/v1/spaces/{id}",
            P::ScopesRead,
            get(environments::get_space),
        ),
        route(
            M::DELETE,
            "/v1/spaces/{id}",
            P::ScopesWrite,
            delete(deletion::delete_space),
        ),
        route(
            M::GET,
            "/v1/secrets",
            P::SecretsRead,
            get(scopes::list_secrets),
        ),
        route(
            M::POST,
            "/v1/secrets",
            P::SecretsWrite,
            post(scopes::set_secret),
        ),
        route(
            M::GET,
            "/v1/secrets/{id}",
            P::SecretsRead,
            get(scopes::get_secret),
        ),
        route(
            M::DELETE,
            "/v1/secrets/{id}",
            P::SecretsWrite,
            delete(scopes::delete_secret),
        ),
        route(
            M::GET,
            "/v1/secrets/config",
            P::SecretsRead,
            get(history::config),
        ),
        route(
            M::POST,
            "/v1/secrets/config",
            P::EnvironmentsWrite,
            post(history::set_config),
        ),
        route(
            M::GET,
            "/v1/secrets/{id}/history",
            P::SecretsRead,
            get(history::history),
        ),
        route(
            M::POST,
            "/v1/secrets/{id}/rollback",
            P::SecretsWrite,
            post(history::rollback),
        ),
        route(
            M::POST,
            "/v1/secrets/{id}/undelete",
            P::SecretsWrite,
            post(history::undelete),
        ),
        route(
            M::POST,
            "/v1/secrets/{id}/destroy",
            P::SecretsWrite,
            post(history::destroy),
        ),
        route(
            M::POST,
            "/v1/keys/rotate",
            P::KeysRotate,
            post(scopes::rotate),
        ),
        route(
            M::GET,
            "/v1/listeners",
            P::ListenersRead,
            get(listeners::list),
        ),
        route(
            M::POST,
            "/v1/listeners",
            P::ListenersDeploy,
            post(listeners::deploy).layer(DefaultBodyLimit::max(upload_limit)),
        ),
        route(
            M::GET,
            "/v1/listeners/{name}",
            P::ListenersRead,
            get(listeners::get),
        ),
        route(
            M::DELETE,
            "/v1/listeners/{name}",
            P::ListenersDeploy,
            delete(listeners::undeploy),
        ),
        route(M::POST, "/v1/events", P::EventsEmit, post(events::emit)),
        route(
            M::POST,
            "/v1/events/batch",
            P::EventsEmit,
            post(events::emit_batch).layer(DefaultBodyLimit::max(events::BATCH_BODY_LIMIT)),
        ),
        route(M::GET, "/v1/runs", P::RunsRead, get(runs::list)),
        route(M::GET, "/v1/runs/{id}", P::RunsRead, get(runs::get)),
        route(M::GET, "/v1/audit", P::AuditRead, get(audit::list)),
        route(M::GET, "/v1/audit/verify", P::AuditRead, get(audit::verify)),
        route(M::GET, "/v1/tokens", P::TokensAdmin, get(tokens::list)),
        route(M::POST, "/v1/tokens", P::TokensAdmin, post(tokens::create)),
        route(
            M::DELETE,
            "/v1/tokens/{name}",
            P::TokensAdmin,
            delete(tokens::revoke),
        ),
        route(
            M::POST,
            "/v1/tokens/{name}/rotate",
            P::TokensAdmin,
            post(tokens::rotate),
        ),
    ]
}

/// The caller of a request to [`console_router`]: the signed-in token's
/// principal, put in the request's extensions by the console. Only code in
/// this process can set an extension, and only the console's router reads
/// this one, so no network request can name its own caller.
#[derive(Clone, Debug)]
pub struct ConsoleCaller(pub Principal);

/// How a router knows who is calling.
enum Caller {
    /// `Authorization: Bearer` on each request.
    Bearer,
    /// Always this principal (the CLI's local user).
    Given(Principal),
    /// The [`ConsoleCaller`] extension of each request.
    Console,
}

/// The complete application, for network clients: every route but the
/// public ones needs a bearer token (`auth::authorize`).
pub fn router(state: Shared) -> Router {
    build(state, Caller::Bearer)
}

/// The same application for the CLI in this process (`crate::client`):
/// every request is `caller`'s (the local user), with no token.
pub fn local_router(state: Shared) -> Router {
    build(state, Caller::Given(Principal::local()))
}

/// The same application for the web console, in the daemon's process
/// (`crate::console`): each request is the [`ConsoleCaller`] its extension
/// names, checked exactly as a bearer token's principal is (permission,
/// scope, and a `denied` audit entry for every refusal).
pub fn console_router(state: Shared) -> Router {
    build(state, Caller::Console)
}

fn build(state: Shared, caller: Caller) -> Router {
    let mut router = Router::new();
    for r in routes(state.max_module_bytes) {
        tracing::debug!(method = %r.method, path = r.path, access = ?r.access, "route");
        let handler = match (r.access, &caller) {
            (Access::Public, _) => r.handler,
            (access, Caller::Bearer) => r.handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), access),
                auth::authorize,
            )),
            (access, Caller::Given(caller)) => r.handler.route_layer(
                middleware::from_fn_with_state((caller.clone(), access), auth::as_caller),
            ),
            (access, Caller::Console) => r.handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), access),
                auth::from_console,
            )),
        };
        router = router.route(r.path, handler);
    }
    router
        // After the routes: it applies to those already added.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.request_timeout,
            deadline::limit_body_time,
        ))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::UnknownRoute,
        "no such route (see GET /v1/openapi.json)",
    )
}

/// A known path with a method it does not have: the API's JSON error
/// (axum adds the `Allow` header).
async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method (see GET /v1/openapi.json)",
    )
}

async fn healthz(State(s): State<Shared>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "sealed": s.runtime.store().is_sealed(),
    }))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn metrics(State(s): State<Shared>) -> impl IntoResponse {
    let runtime = s.runtime.metrics().encode();
    let mut text = runtime
        .strip_suffix("# EOF\n")
        .unwrap_or(&runtime)
        .to_string();
    prometheus_client::encoding::text::encode(&mut text, &s.metrics.registry)
        .expect("writing to a String cannot fail");
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

/// API request counters, by method, route template and status.
pub struct ApiMetrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keyhole_api");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "HTTP API requests", requests.clone());
        ApiMetrics { registry, requests }
    }
}

async fn count_requests(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_string();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    s.metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status,
        })
        .inc();
    response
}

#[cfg(test)]
mod tests;
