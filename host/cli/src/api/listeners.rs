//! Listeners over HTTP (events: `events.rs`, runs: `runs.rs`).
//!
//! `POST /v1/listeners` is multipart/form-data: a `spec` part (JSON, camelCase,
//! unknown fields refused) and a `module` part (the component bytes, at most
//! `--max-module-bytes`). The module is read into memory part by part and
//! refused with 413 as soon as it passes the limit; nothing is stored unless
//! the runtime accepts the whole deployment.
//!
//! The deploy response is the listener plus `previousModuleHash`, the hash
//! of the module it replaced under the same name (`null` on a first
//! deploy). `GET /v1/listeners/{name}` reads one listener.
//!
//! A scoped token may deploy, undeploy, list and emit only inside its scope
//! (`auth.rs`), and its deployments may be granted only scopes it reaches
//! itself. What a redeploy does with the previous deployment's grants
//! (keep them, or drop them with a notice) is `grants.rs`.

use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use keyhole_runtime::{DeploySpec, Grants, Injection, Limits, RuntimeError};
use keyhole_store::Scope;

use super::audit::{audited, audited_with};
use super::auth::{denied_item, sees, within, within_scope};
use super::body::{ApiPath, body_rejection, parse_json, read_body};
use super::error::{ApiError, ErrorCode};
use super::grants;
use super::scopes::blocking;
use super::{JSON_BODY_LIMIT, Shared, upload_limit};
use crate::auth::{Permission, Principal, TokenScope};
use crate::requests::ListenerSpec;
use crate::views::{DeployedView, ListenerView};

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
            secrets: s.secrets,
            inject: s
                .inject
                .into_iter()
                .map(|i| Injection {
                    secret: i.secret,
                    origin: i.origin,
                    header: i.header,
                    template: i.template,
                })
                .collect(),
        }
    }
}

fn multipart_error(e: MultipartError) -> ApiError {
    body_rejection(e.status(), e.body_text())
}

fn too_large(what: &str, limit: usize) -> ApiError {
    ApiError::new(
        ErrorCode::TooLarge,
        format!("{what} is larger than {limit} bytes"),
    )
}

/// A scoped token may deploy only into its scope, grant only scopes it
/// reaches, and not replace a listener of the same name outside it.
fn check_deploy_scope(s: &Shared, who: &Principal, spec: &ListenerSpec) -> Result<(), ApiError> {
    let (p, store) = (Permission::ListenersDeploy, s.runtime.store());
    within(
        who,
        p,
        store,
        &spec.environment_id,
        spec.space_id.as_deref(),
    )?;
    for env in &spec.grants.environments {
        within(who, p, store, env, None)?;
    }
    for space in &spec.grants.spaces {
        within_scope(who, p, store, &Scope::Space(space.clone()))?;
    }
    if who.scope != TokenScope::All
        && let Some(d) = s
            .runtime
            .deployments()
            .into_iter()
            .find(|d| d.spec.name == spec.name)
        && !sees(who, &d.spec.environment, d.spec.space.as_deref())
    {
        return Err(denied_item(who, p, &format!("listener {}", spec.name)));
    }
    Ok(())
}

pub async fn deploy(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    req: Request,
) -> Result<(StatusCode, Json<DeployedView>), ApiError> {
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
    let state = s.clone();
    let view = blocking(move || {
        check_deploy_scope(&state, &who, &spec)?;
        let keep = spec.keep_grants;
        let spec = DeploySpec::from(spec);
        let runtime = &state.runtime;
        let previous = runtime.deployment(&spec.name);
        let new_hash = keyhole_runtime::module_sha256(&module);
        let plan = grants::plan(&who, runtime.store(), &spec, keep, previous, &new_hash)?;
        let target = format!("listener:{}", spec.name);
        let detail = plan.detail.as_deref();
        let deployed = audited_with(&state, &who, "listener.deploy", &target, detail, || {
            Ok(match &plan.keep {
                Some(previous) => runtime.deploy_keeping_grants(spec, &module, previous)?,
                None => runtime.deploy_replacing(spec, &module)?,
            })
        })?;
        Ok(DeployedView {
            listener: ListenerView::from(&deployed.deployment),
            previous_module_hash: deployed.previous_module_hash,
            notice: plan.notice,
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// One listener, by name. A scoped token gets the same 403 for a listener
/// outside its scope and for one that does not exist.
pub async fn get(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<ListenerView>, ApiError> {
    match s.runtime.deployment(&name) {
        Some(d) if sees(&who, &d.spec.environment, d.spec.space.as_deref()) => {
            Ok(Json(ListenerView::from(&d)))
        }
        _ if who.scope != TokenScope::All => {
            let what = format!("listener {}", name.chars().take(64).collect::<String>());
            Err(denied_item(&who, Permission::ListenersRead, &what))
        }
        _ => Err(RuntimeError::UnknownListener(name.chars().take(64).collect()).into()),
    }
}

pub async fn list(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
) -> Json<Vec<ListenerView>> {
    Json(
        s.runtime
            .deployments()
            .iter()
            .filter(|d| sees(&who, &d.spec.environment, d.spec.space.as_deref()))
            .map(ListenerView::from)
            .collect(),
    )
}

pub async fn undeploy(
    State(s): State<Shared>,
    Extension(who): Extension<Principal>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    // A scoped token learns nothing about listeners outside its scope: a
    // missing one and another scope's are the same 403.
    if who.scope != TokenScope::All {
        let mine = s.runtime.deployments().into_iter().any(|d| {
            d.spec.name == name && sees(&who, &d.spec.environment, d.spec.space.as_deref())
        });
        if !mine {
            let what = format!("listener {}", name.chars().take(64).collect::<String>());
            return Err(denied_item(&who, Permission::ListenersDeploy, &what));
        }
    }
    let state = s.clone();
    blocking(move || {
        let target = format!("listener:{name}");
        audited(&state, &who, "listener.undeploy", &target, || {
            Ok(state.runtime.undeploy(&name)?)
        })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
