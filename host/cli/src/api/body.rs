//! Reading request bodies: whole and bounded, in time (`deadline.rs`) and
//! size, and JSON parsed with every failure (too large, too slow,
//! malformed, unknown field) a JSON 4xx before any handler runs.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};

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
        Some(t) => ApiError::new(ErrorCode::Timeout, t.to_string()),
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
            ErrorCode::TooLarge,
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

/// Like `axum::extract::Path`, but a segment that cannot be read (not
/// UTF-8 once percent-decoded, say) is a JSON error, as every other bad
/// input is, not axum's plain-text 400.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(t)) => Ok(ApiPath(t)),
            Err(e) => Err(ApiError::bad_request(format!(
                "the address: {}",
                e.body_text()
            ))),
        }
    }
}

/// A body that could not be read; too-large bodies become 413.
pub fn body_rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorCode::TooLarge, "request body too large")
        }
        StatusCode::REQUEST_TIMEOUT => ApiError::new(ErrorCode::Timeout, text),
        _ => ApiError::bad_request(text),
    }
}
