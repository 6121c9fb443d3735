//! Listeners, events and runs over HTTP.
//!
//! `POST /v1/listeners` is multipart/form-data: a `spec` part (JSON, camelCase,
//! unknown fields refused) and a `module` part (the component bytes, at most
//! `--max-module-bytes`). The module is read into memory part by part and
//! refused with 413 as soon as it passes the limit; nothing is stored unless
//! the runtime accepts the whole deployment.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::StatusCode;
use keyhole_runtime::{DeploySpec, Event, Grants, Limits};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiJson, body_rejection, parse_json, read_body};
use super::scopes::{blocking, query};
use super::{JSON_BODY_LIMIT, Shared, upload_limit};
use crate::views::{ListenerView, RunView};

/// Default and largest `limit` of `GET /v1/runs`.
const RUNS_DEFAULT: usize = 50;
const RUNS_MAX: usize = 10_000;

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantsBody {
    #[serde(default)]
    environments: Vec<String>,
    #[serde(default)]
    spaces: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LimitsBody {
    timeout_ms: Option<u64>,
    memory_bytes: Option<u64>,
    max_http_requests: Option<u32>,
    max_http_response_bytes: Option<u64>,
}

fn all_topics() -> Vec<String> {
    vec!["*".into()]
}

/// The `spec` part of `POST /v1/listeners`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListenerSpec {
    name: String,
    environment_id: String,
    space_id: Option<String>,
    #[serde(default = "all_topics")]
    topics: Vec<String>,
    #[serde(default)]
    grants: GrantsBody,
    #[serde(default)]
    limits: LimitsBody,
    #[serde(default)]
    allow_http: Vec<String>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
}

impl From<ListenerSpec> for DeploySpec {
    fn from(s: ListenerSpec) -> Self {
        let d = Limits::default();
        DeploySpec {
            name: s.name,
            environment: s.environment_id,
            space: s.space_id,
            topics: s.topics,
            grants: Grants {
                environments: s.grants.environments,
                spaces: s.grants.spaces,
            },
            limits: Limits {
                timeout_ms: s.limits.timeout_ms.unwrap_or(d.timeout_ms),
                memory_bytes: s.limits.memory_bytes.unwrap_or(d.memory_bytes),
                max_http_requests: s.limits.max_http_requests.unwrap_or(d.max_http_requests),
                max_http_response_bytes: s
                    .limits
                    .max_http_response_bytes
                    .unwrap_or(d.max_http_response_bytes),
            },
            allow_http: s.allow_http,
            settings: s.settings.into_iter().collect(),
        }
    }
}

fn multipart_error(e: MultipartError) -> ApiError {
    body_rejection(e.status(), e.body_text())
}

fn too_large(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{what} is larger than {limit} bytes"),
    )
}

pub async fn deploy(
    State(s): State<Shared>,
    req: Request,
) -> Result<(StatusCode, Json<ListenerView>), ApiError> {
    // Read the whole upload first, so an oversize one is answered with a
    // clean 413 (see `read_body`), then parse it from memory.
    let (parts, body) = req.into_parts();
    let body = read_body(body, upload_limit(s.max_module_bytes)).await?;
    let req = Request::from_parts(parts, Body::from(body));
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|r| ApiError::bad_request(r.body_text()))?;
    let mut spec: Option<ListenerSpec> = None;
    let mut module: Option<Vec<u8>> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let (limit, what) = match name.as_str() {
            "spec" if spec.is_none() => (JSON_BODY_LIMIT, "the spec part"),
            "module" if module.is_none() => (s.max_module_bytes, "the module"),
            "spec" | "module" => {
                return Err(ApiError::bad_request(format!("part `{name}` given twice")));
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unexpected part `{name}`: expected `spec` (JSON) and `module` (wasm)"
                )));
            }
        };
        let mut buf = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
            if buf.len() + chunk.len() > limit {
                return Err(too_large(what, limit));
            }
            buf.extend_from_slice(&chunk);
        }
        if name == "spec" {
            spec = Some(parse_json(&buf)?);
        } else {
            module = Some(buf);
        }
    }
    let (Some(spec), Some(module)) = (spec, module) else {
        return Err(ApiError::bad_request(
            "multipart body needs a `spec` part (JSON) and a `module` part (wasm)",
        ));
    };
    let runtime = s.runtime.clone();
    let deployment = blocking(move || Ok(runtime.deploy(spec.into(), &module)?)).await?;
    Ok((StatusCode::CREATED, Json(ListenerView::from(&deployment))))
}

pub async fn list(State(s): State<Shared>) -> Json<Vec<ListenerView>> {
    Json(
        s.runtime
            .deployments()
            .iter()
            .map(ListenerView::from)
            .collect(),
    )
}

pub async fn undeploy(
    State(s): State<Shared>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let runtime = s.runtime.clone();
    blocking(move || Ok(runtime.undeploy(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmitBody {
    topic: String,
    environment_id: String,
    space_id: Option<String>,
    /// Any JSON document; `{}` when absent.
    #[serde(default = "empty_object")]
    payload: serde_json::Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EmitResponse {
    event_id: String,
    runs: Vec<RunView>,
}

pub async fn emit(
    State(s): State<Shared>,
    ApiJson(body): ApiJson<EmitBody>,
) -> Result<Json<EmitResponse>, ApiError> {
    let payload = serde_json::to_string(&body.payload)
        .map_err(|e| ApiError::bad_request(format!("payload: {e}")))?;
    let event = Event::new(&body.topic, &body.environment_id, body.space_id.as_deref())
        .with_payload(payload);
    let event_id = event.id.clone();
    // The dispatch runs in its own task: if the client goes away, hyper drops
    // this handler, but an accepted event still runs to the end and is
    // recorded (runs execute inline in the task that awaits them).
    let runtime = s.runtime.clone();
    let runs = tokio::spawn(async move { runtime.emit(event).await })
        .await
        .map_err(|e| ApiError::internal(format!("dispatch task failed: {e}")))??;
    Ok(Json(EmitResponse {
        event_id,
        runs: runs.into_iter().map(RunView::from).collect(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    listener: Option<String>,
    limit: Option<usize>,
}

pub async fn runs(
    State(s): State<Shared>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(RUNS_DEFAULT).min(RUNS_MAX);
    let runtime = s.runtime.clone();
    let runs = blocking(move || Ok(runtime.runs(q.listener.as_deref(), limit)?)).await?;
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}
