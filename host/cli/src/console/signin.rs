//! Signing in and out.
//!
//! The sign-in form comes before any session, so its CSRF token is a
//! double-submit cookie: `GET /signin` sets a random token in an
//! `HttpOnly`, `SameSite=Strict` cookie and in the form; the POST must
//! carry both, equal, and come from this origin. A token that is not
//! accepted gets the same answer whether it is unknown, revoked or expired,
//! and is an audit entry like a refused API request; a sign-in and a
//! sign-out are audit entries of the token (`console.signin`,
//! `console.signout`), and a sign-in the audit log cannot record fails.

use std::time::Instant;

use axum::Router;
use axum::extract::State;

use super::params::{FormFields, Params};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::csrf::{self, CsrfToken};
use super::{ConsoleState, Posted, layout, session};
use crate::api::{UNAUTHENTICATED, audited, denial};

/// The sign-in form's double-submit cookie (`__Host-` under TLS, as the
/// session's: `session::cookie_name`).
fn signin_cookie(tls: bool) -> &'static str {
    if tls {
        "__Host-keyhole_signin"
    } else {
        "keyhole_signin"
    }
}

pub fn routes() -> Router<ConsoleState> {
    Router::new()
        .route("/signin", get(form).post(sign_in))
        .route("/signout", post(sign_out))
        .route("/assets/console.css", get(stylesheet))
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        layout::STYLESHEET,
    )
        .into_response()
}

#[derive(Deserialize)]
struct FormQuery {
    #[serde(default)]
    expired: Option<String>,
}

fn signin_page(status: StatusCode, c: &ConsoleState, message: Option<&str>) -> Response {
    let token = CsrfToken::random();
    let body = html! {
        h1 { "Sign in to keyhole" }
        @if let Some(m) = message {
            p.error role="alert" { (m) }
        }
        form.stack method="post" action="/signin" {
            input type="hidden" name=(csrf::FIELD) value=(token.hex());
            label for="token" { "API token" }
            input id="token" name="token" type="password" autocomplete="off" required;
            p.hint { "A token from " code { "keyhole init" } " or " code { "keyhole token create" } "." }
            button type="submit" { "Sign in" }
        }
    };
    let mut response = layout::bare(status, "Sign in", body);
    let cookie = session::set_cookie(signin_cookie(c.tls), &token.hex(), c.tls, Some(600));
    if let Ok(v) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn form(State(c): State<ConsoleState>, Params(q): Params<FormQuery>) -> Response {
    let message = q
        .expired
        .is_some()
        .then_some("Your session ended. Sign in again.");
    signin_page(StatusCode::OK, &c, message)
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    token: Zeroizing<String>,
}

async fn sign_in(
    State(c): State<ConsoleState>,
    headers: HeaderMap,
    FormFields(f): FormFields<SignIn>,
) -> Response {
    let cookie = session::read_cookie(&headers, signin_cookie(c.tls)).and_then(CsrfToken::parse);
    if let Err(why) = csrf::same_origin(&headers, c.tls) {
        return super::refused_form(why);
    }
    if !cookie.is_some_and(|t| t.matches(Some(&f.csrf))) {
        return signin_page(
            StatusCode::FORBIDDEN,
            &c,
            Some("The sign-in form was stale. Enter the token again."),
        );
    }
    let verified = match c.state.tokens.verify(&f.token) {
        Ok(v) => v,
        Err(e) => {
            return layout::error_page(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}"));
        }
    };
    let Some((who, binding)) = verified else {
        let state = c.state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            denial(
                &state,
                UNAUTHENTICATED.into(),
                "POST /signin",
                "console sign-in with a token that is not valid",
            )
        })
        .await;
        return signin_page(
            StatusCode::UNAUTHORIZED,
            &c,
            Some("That token was not accepted."),
        );
    };
    let state = c.state.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        audited(&state, &who, "console.signin", "console", || Ok(()))
    })
    .await;
    if !matches!(recorded, Ok(Ok(()))) {
        return layout::error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "The audit log cannot record the sign-in, so it is refused. Try again later.",
        );
    }
    let id = c.sessions.open(binding, Instant::now());
    let mut response = Redirect::to("/").into_response();
    let h = response.headers_mut();
    let name = session::cookie_name(c.tls);
    for cookie in [
        session::set_cookie(name, &id, c.tls, None),
        session::set_cookie(signin_cookie(c.tls), "", c.tls, Some(0)),
    ] {
        if let Ok(v) = cookie.parse() {
            h.append(header::SET_COOKIE, v);
        }
    }
    response
}

async fn sign_out(State(c): State<ConsoleState>, p: Posted<Empty>) -> Response {
    c.sessions.end(&p.visitor.key);
    let state = c.state.clone();
    let who = p.visitor.who;
    // The session is over either way; an entry the audit log refused is
    // the operator's to know of.
    let written = tokio::task::spawn_blocking(move || {
        audited(&state, &who, "console.signout", "console", || Ok(()))
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::error!("a console sign-out ended its session but is not in the audit log");
    }
    let mut response = Redirect::to("/signin").into_response();
    let cookie = session::set_cookie(session::cookie_name(c.tls), "", c.tls, Some(0));
    if let Ok(v) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize)]
pub struct Empty {}
