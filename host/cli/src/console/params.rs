//! What a request carries — its query, its path segments, its form — read
//! so that an address or a form the console never made is answered with a
//! page in the visitor's words, not axum's bare text refusal.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
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
fn refused(status: StatusCode, why: &str) -> Response {
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

/// A form's body: refused unless the request says it is a URL-encoded
/// form, and bounded by the route's body limit.
pub async fn form_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, Response> {
    if !is_form(req.headers()) {
        return Err(layout::error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request was not a form (application/x-www-form-urlencoded). \
             Reload the page and submit the form again.",
        ));
    }
    Bytes::from_request(req, state).await.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return layout::error_page(
                status,
                &format!(
                    "the form is larger than the console accepts. A secret value is at most {} KiB.",
                    keyhole_store::MAX_VALUE_LEN >> 10
                ),
            );
        }
        layout::error_page(status, &format!("the form: {}", e.body_text()))
    })
}

/// Fields `T` of a form body; [`bad_fields`] answers a failure.
pub fn fields<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_urlencoded::de::Error> {
    serde_urlencoded::from_bytes(body)
}

/// A form whose fields are not the page's (one missing or twice, or not a
/// number where the form has one). The parser's words name the field,
/// never its value.
pub fn bad_fields(e: serde_urlencoded::de::Error) -> Response {
    layout::error_page(
        StatusCode::BAD_REQUEST,
        &format!(
            "the form's fields are not this page's ({e}). Reload the page and submit the form again."
        ),
    )
}

/// A form's fields, for a form without a session (sign-in).
pub struct FormFields<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for FormFields<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let body = form_body(req, state).await?;
        fields(&body).map(FormFields).map_err(bad_fields)
    }
}

/// Whether a request says its body is a URL-encoded form.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}
