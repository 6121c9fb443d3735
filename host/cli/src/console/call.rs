//! How every console page and action does its work: a request to the API
//! router built for the console (`api::console_router`), in this process,
//! as the signed-in token's principal (`api::ConsoleCaller`).
//!
//! Why not call the store or the runtime directly: the API handler is the
//! one implementation of each operation, with its permission and scope
//! checks, its audit entry (`token:NAME`, the same as over HTTP) and its
//! error codes. Going through it, the console cannot show or do anything
//! the token could not over HTTP, and a rule changed in the API changes the
//! console with it. The request never leaves the process: the caller is an
//! extension no network request can carry, and the router is built once per
//! daemon, apart from the public one.

use axum::http::{Method, StatusCode};
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use super::Console;
use crate::api::{ConsoleCaller, ErrorCode};
use crate::auth::Principal;
use crate::client::{ApiFailure, Body, Call, Reply, json};
use crate::errors::{CliError, Exit};

/// Most bytes of an answer read back (the largest is a page of audit
/// entries or runs with their output).
const ANSWER_LIMIT: usize = 64 << 20;

/// The API refused or failed: its status and what its error body said.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub api: ApiFailure,
}

impl Failure {
    /// A failure of the console's own making (an answer it cannot read).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::of(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            message,
        )
    }

    fn of(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Failure {
            status,
            api: ApiFailure {
                code,
                message: message.into(),
                subject: None,
                missing_permission: None,
            },
        }
    }
}

impl Console {
    /// Sends `call` as `who`; the reply, whatever its status.
    pub async fn send(&self, who: &Principal, call: Call) -> Result<Reply, Failure> {
        let mut request = call.into_request().map_err(|e| {
            // A name in the address that percent-encodes past any address's
            // length (`Call::uri`) is the visitor's input, not a fault.
            let input = e
                .downcast_ref::<CliError>()
                .is_some_and(|c| c.code == Exit::Usage);
            if input {
                Failure::of(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::Invalid,
                    format!("{e:#}"),
                )
            } else {
                Failure::internal(format!("{e:#}"))
            }
        })?;
        request.extensions_mut().insert(ConsoleCaller(who.clone()));
        let response = self
            .api
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), ANSWER_LIMIT)
            .collect()
            .await
            .map_err(|e| Failure::internal(format!("reading the API's answer: {e}")))?
            .to_bytes()
            .to_vec();
        Ok(Reply { status, body })
    }

    /// Sends `call` as `who`: a 2xx answer's JSON as `T`, anything else as
    /// the [`Failure`] it says.
    pub async fn call<T: DeserializeOwned>(
        &self,
        who: &Principal,
        call: Call,
    ) -> Result<T, Failure> {
        let reply = self.send(who, call).await?;
        if !reply.status.is_success() {
            return Err(Failure {
                status: reply.status,
                api: ApiFailure::from_reply(&reply, "the API"),
            });
        }
        let body: &[u8] = if reply.body.is_empty() {
            b"null"
        } else {
            &reply.body
        };
        serde_json::from_slice(body)
            .map_err(|e| Failure::internal(format!("reading the API's answer: {e}")))
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        who: &Principal,
        path: &str,
    ) -> Result<T, Failure> {
        self.call(who, Call::new(Method::GET, path, Body::Empty))
            .await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        who: &Principal,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Failure> {
        let body = json(body).map_err(|e| Failure::internal(format!("{e:#}")))?;
        self.call(who, Call::new(Method::POST, path, body)).await
    }

    /// A DELETE or body-less POST whose answer is not needed.
    pub async fn act(&self, who: &Principal, method: Method, path: &str) -> Result<(), Failure> {
        self.call::<serde_json::Value>(who, Call::new(method, path, Body::Empty))
            .await
            .map(drop)
    }
}
