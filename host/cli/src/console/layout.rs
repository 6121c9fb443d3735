//! The frame every console page shares: head, top navigation (only the
//! areas the token's role may see), the signed-in token and sign-out, a
//! notice after an action, and the error page.
//!
//! Everything is rendered by `maud`, which escapes every interpolated
//! string: names from the API cannot become markup.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::Visitor;
use crate::auth::Permission;

/// The stylesheet, embedded in the binary.
pub const STYLESHEET: &str = include_str!("assets/console.css");

/// The top-level areas: label, path, the permission that shows it.
pub const AREAS: [(&str, &str, Permission); 5] = [
    ("Environments", "/environments", Permission::ScopesRead),
    ("Listeners", "/listeners", Permission::ListenersRead),
    ("Runs", "/runs", Permission::RunsRead),
    ("Audit", "/audit", Permission::AuditRead),
    ("Tokens", "/tokens", Permission::TokensAdmin),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · keyhole" }
            link rel="stylesheet" href="/assets/console.css";
        }
    }
}

/// A hidden CSRF field for a form of `v`'s session.
pub fn csrf(v: &Visitor) -> Markup {
    html! { input type="hidden" name=(super::csrf::FIELD) value=(v.csrf.hex()); }
}

/// A one-button form that posts to `action` (delete, revert, revoke).
pub fn button_form(v: &Visitor, action: &str, label: &str, class: &str) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(v))
            button type="submit" class=(class) { (label) }
        }
    }
}

/// A signed-in page: `area` marks the current top-level area.
pub fn page(v: &Visitor, title: &str, area: &str, notice: Option<&str>, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "keyhole" }
                    nav aria-label="Main" {
                        ul {
                            @for (label, path, p) in AREAS {
                                @if v.may(p) {
                                    li {
                                        @if label == area {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span { "Signed in as " strong { (v.who.actor()) } " (" (v.who.role.name()) ")" }
                        (button_form(v, "/signout", "Sign out", "link"))
                    }
                }
                main id="main" tabindex="-1" {
                    @if let Some(n) = notice {
                        p.notice role="status" { (n) }
                    }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page outside a session (sign-in, errors).
pub fn bare(status: StatusCode, title: &str, body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/" { "keyhole" } }
                main id="main" { (body) }
            }
        }
    };
    (status, Html(markup.into_string())).into_response()
}

/// An error page: what went wrong, in the user's terms, and a way back.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    bare(
        status,
        "Error",
        html! {
            h1 { "That did not work" }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the console" } }
        },
    )
}
