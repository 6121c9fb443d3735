//! The web console: `keyhole serve` answers `/` with server-rendered pages
//! for the same operations as the API, for people signed in with a token.
//!
//! - **Who**: a sign-in form takes an API token (`signin.rs`); the daemon
//!   keeps a session for it in memory (`session.rs`) and the browser holds
//!   only a random id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure`
//!   under TLS). Each request re-checks the token, so revoking it ends its
//!   sessions.
//! - **What**: every page reads, and every form acts, through the API's own
//!   handlers in this process as the signed-in token (`call.rs`), so the
//!   console enforces exactly the API's permissions and scopes and writes
//!   the same audit entries. Pages hide the actions the token's role lacks;
//!   a post anyway is refused by the API like any other request.
//! - **Forms**: every POST must come from this origin and carry the
//!   session's CSRF token (`csrf.rs`). A form that is not one of the
//!   console's (wrong type, fields missing, twice or not numbers), like an
//!   address the console never made (`params.rs`), gets a page saying so.
//! - **Values never come back**: secret values go in through write-only
//!   password fields and no page has anything to show but names and
//!   metadata, because the API has nothing else to give.
//! - **Assets** are embedded in the binary: one stylesheet, no script, so
//!   the policy is `default-src 'self'` with nothing inline.
//!
//! Pages: `pages/` (one file per area), the shared frame: `layout.rs`.

mod call;
mod csrf;
mod layout;
mod pages;
mod params;
mod session;
mod signin;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use session::Limits;

use crate::api::{self, Shared};
use crate::auth::Principal;
use call::Failure;
use csrf::CsrfToken;
use session::{Missing, Sessions};

/// The console's state: the API router it calls, and the sessions.
pub struct Console {
    api: Router,
    state: Shared,
    sessions: Sessions,
    /// Served over TLS: cookies are `Secure` and origins `https`.
    tls: bool,
}

type ConsoleState = Arc<Console>;

/// The console's routes, to merge with the API's (`serve.rs`).
pub fn router(state: Shared, tls: bool, limits: Limits) -> Router {
    let upload_limit = api::upload_limit(state.max_module_bytes);
    let request_timeout = state.request_timeout;
    let console = Arc::new(Console {
        api: api::console_router(state.clone()),
        state,
        sessions: Sessions::new(limits),
        tls,
    });
    pages::routes(upload_limit)
        .merge(signin::routes())
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(
            request_timeout,
            api::limit_body_time,
        ))
        .with_state(console)
}

/// On every console response: the content policy (no inline script or
/// style, nothing from elsewhere, no framing), no sniffing, no caching (a
/// page may list secret names), no referrer to other sites.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The signed-in caller of a console request.
pub struct Visitor {
    pub who: Principal,
    pub csrf: CsrfToken,
    key: session::Key,
}

impl Visitor {
    /// Whether the token's role holds `p` everywhere it needs it (pages
    /// show an action only then; the API decides anyway).
    pub fn may(&self, p: crate::auth::Permission) -> bool {
        api::require(&self.who, p).is_ok()
    }
}

/// Where a request without a live session goes.
fn to_signin(why: Missing) -> Response {
    match why {
        Missing::Unknown => Redirect::to("/signin").into_response(),
        Missing::Expired => Redirect::to("/signin?expired=1").into_response(),
    }
}

impl FromRequestParts<ConsoleState> for Visitor {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, c: &ConsoleState) -> Result<Self, Response> {
        let name = session::cookie_name(c.tls);
        let id = session::read_cookie(&parts.headers, name).ok_or(to_signin(Missing::Unknown))?;
        let found = c.sessions.find(id, Instant::now()).map_err(to_signin)?;
        // The token is checked again on every request: revoked, expired or
        // rotated, its session ends here.
        match c.state.tokens.recheck(&found.binding) {
            Ok(Some(who)) => Ok(Visitor {
                who,
                csrf: found.csrf,
                key: found.key,
            }),
            Ok(None) => {
                c.sessions.end(&found.key);
                Err(to_signin(Missing::Expired))
            }
            Err(e) => Err(layout::error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the token store cannot be read: {e}"),
            )),
        }
    }
}

/// A form posted by a signed-in visitor: from this origin, carrying the
/// session's CSRF token, with fields `T`.
pub struct Posted<T> {
    pub visitor: Visitor,
    pub form: T,
}

/// The field every form carries besides its own.
#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned + Send> FromRequest<ConsoleState> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: Request, c: &ConsoleState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let visitor = Visitor::from_request_parts(&mut parts, c).await?;
        csrf::same_origin(&parts.headers, c.tls).map_err(refused_form)?;
        let body = params::form_body(Request::from_parts(parts, body), c).await?;
        let CsrfField { csrf } = params::fields(&body).map_err(params::bad_fields)?;
        if !visitor.csrf.matches(Some(&csrf)) {
            return Err(refused_form("its form token is missing or stale"));
        }
        // The form's own fields from the same body; `csrf` is one no form
        // declares, so it is skipped. Not one struct with the form
        // `#[serde(flatten)]`ed into it: through flatten every field
        // arrives as text, so a number field refused every number
        // (`invalid type: string "1", expected u64`), quoting what was
        // typed back into the page.
        Ok(Posted {
            visitor,
            form: params::fields(&body).map_err(params::bad_fields)?,
        })
    }
}

/// A POST that failed the CSRF checks.
fn refused_form(why: &str) -> Response {
    layout::error_page(
        StatusCode::FORBIDDEN,
        &format!("This request was refused: {why}. Reload the page and submit the form again."),
    )
}

/// An API failure as a page, with the API's status and message.
impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = if self.status.is_client_error() || self.status.is_server_error() {
            self.status
        } else {
            StatusCode::BAD_GATEWAY
        };
        let mut text = self.api.message;
        if let Some(p) = self.api.missing_permission {
            text = format!("{text} (your token lacks `{p}`)");
        }
        layout::error_page(status, &text)
    }
}
