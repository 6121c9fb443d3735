//! What a page's address carries — its query and its path segments — read
//! so that an address the console never made is answered with a page in
//! the visitor's words, not axum's bare text refusal.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::response::Response;
use serde::de::DeserializeOwned;

use super::layout;

/// A page's query parameters (`axum::extract::Query`, refused as a page).
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(t)) => Ok(Params(t)),
            Err(e) => Err(refused(e.status(), &e.body_text())),
        }
    }
}

/// A page's path parameters (`axum::extract::Path`, refused as a page).
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(Segments(t)),
            Err(e) => Err(refused(e.status(), &e.body_text())),
        }
    }
}

/// axum's words say what could not be read (a parameter's name and the
/// parser's complaint, never the value: no console type is `flatten`ed).
fn refused(status: axum::http::StatusCode, why: &str) -> Response {
    let why = why
        .trim_start_matches("Failed to deserialize query string: ")
        .trim_start_matches("Invalid URL: ");
    layout::error_page(
        status,
        &format!(
            "This address is not one the console makes ({why}). Follow a link from the console instead."
        ),
    )
}
