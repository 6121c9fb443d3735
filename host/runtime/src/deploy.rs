//! What a deployment is, and the checks a module passes before it is stored.
//!
//! A deployment binds a listener component (by sha256) to an environment,
//! optionally a space, topic filters, grants and limits. Its grants (every
//! field [`DeploySpec::has_grants`] looks at) hold for the module sha256
//! they were given to ([`Deployment::grants_sha256`]): a redeploy of other
//! code gets only what its own request states, unless it asks to keep the
//! previous grants ([`DeploySpec::keep_grants_of`]). Checks run in order
//! of cost: header bytes, then what the component needs to start (its
//! memories, tables and core instances, `needs.rs`), then compilation, then
//! the import allow-list, then linking against the `listener` world. Nothing
//! is written unless all pass.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use crate::error::RuntimeError;
use crate::http::AllowedOrigin;
use crate::inject::{Injection, Rules};

/// Largest accepted module, before compilation.
pub const MAX_MODULE_BYTES: usize = 64 << 20;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_SETTING_VALUE: usize = 4096;
const MAX_TOPICS: usize = 64;

/// Extra scopes a deployment may read with an explicit `get-secret` scope.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    pub environments: Vec<String>,
    pub spaces: Vec<String>,
}

/// Per-run resource limits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub timeout_ms: u64,
    pub memory_bytes: u64,
    /// Outbound HTTP requests a run may make (with an HTTP grant).
    pub max_http_requests: u32,
    /// Bytes of each outbound response body a run may read.
    pub max_http_response_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: DEFAULT_TIMEOUT.as_millis() as u64,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_http_requests: 16,
            max_http_response_bytes: 1 << 20,
        }
    }
}

/// What a user asks to deploy.
///
/// Stored as JSON (`deploy_record.rs`), so a field added later reads as
/// its default in older records; unknown fields are refused, so a record
/// written by a newer keyhole is not silently stripped of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    pub name: String,
    pub environment: String,
    pub space: Option<String>,
    /// Glob filters over event topics, e.g. `action:*`.
    pub topics: Vec<String>,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub limits: Limits,
    /// Outbound HTTP allow-list (`https://host`, `http://127.0.0.1:8080`).
    #[serde(default)]
    pub allow_http: Vec<String>,
    /// Non-secret settings delivered with each event.
    #[serde(default)]
    pub settings: Vec<(String, String)>,
    /// The secret names (or globs, `SLACK_*`) the listener may read;
    /// empty: every name in the scopes it may read.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Secrets the host puts into requests for the listener, which cannot
    /// read them (`--inject`, `inject.rs`). Each origin is allowed by its
    /// injection, on the allow-list or not.
    #[serde(default)]
    pub inject: Vec<Injection>,
}

impl DeploySpec {
    pub fn new(name: &str, environment: &str) -> Self {
        DeploySpec {
            name: name.into(),
            environment: environment.into(),
            space: None,
            topics: vec!["*".into()],
            grants: Grants::default(),
            limits: Limits::default(),
            allow_http: Vec::new(),
            settings: Vec::new(),
            secrets: Vec::new(),
            inject: Vec::new(),
        }
    }

    /// Whether the spec grants anything: extra scopes, declared secrets,
    /// outbound HTTP origins, injected secrets. Every field that is a grant is listed here,
    /// in [`DeploySpec::keep_grants_of`] and in
    /// [`DeploySpec::grants_text`], and nowhere else.
    pub fn has_grants(&self) -> bool {
        !self.grants.environments.is_empty()
            || !self.grants.spaces.is_empty()
            || !self.secrets.is_empty()
            || !self.allow_http.is_empty()
            || !self.inject.is_empty()
    }

    /// Replaces this spec's grants with `previous`'s (a redeploy that
    /// keeps them).
    pub fn keep_grants_of(&mut self, previous: &DeploySpec) {
        self.grants = previous.grants.clone();
        self.secrets = previous.secrets.clone();
        self.allow_http = previous.allow_http.clone();
        self.inject = previous.inject.clone();
    }

    /// The grants in a few words, e.g. `env staging; secrets SLACK_*`.
    pub fn grants_text(&self) -> String {
        let mut parts = Vec::new();
        for (what, items) in [
            ("env", &self.grants.environments),
            ("space", &self.grants.spaces),
            ("secrets", &self.secrets),
            ("http", &self.allow_http),
        ] {
            if !items.is_empty() {
                parts.push(format!("{what} {}", items.join(", ")));
            }
        }
        if !self.inject.is_empty() {
            let inject: Vec<String> = self.inject.iter().map(Injection::to_string).collect();
            parts.push(format!("inject {}", inject.join(", ")));
        }
        parts.join("; ")
    }
}

/// A stored deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    pub spec: DeploySpec,
    /// sha256 of the module bytes, hex.
    pub module_hash: String,
    pub deployed_at_ms: u64,
    /// sha256 of the module the spec's grants were given to. They apply
    /// only while it is `module_hash`; records from before grants were
    /// bound are bound to their own module when loaded
    /// (`deploy_record.rs`).
    #[serde(default)]
    pub grants_sha256: String,
}

impl Deployment {
    /// Whether the grants hold for the module this deployment runs.
    pub fn grants_bound(&self) -> bool {
        self.grants_sha256 == self.module_hash
    }
}

/// Validates the non-module parts of a spec; returns the origins its runs
/// may reach (the allow-list and each injection's origin).
pub(crate) fn check_spec(spec: &DeploySpec) -> Result<Vec<AllowedOrigin>, RuntimeError> {
    let bad = |m: String| Err(RuntimeError::InvalidSpec(m));
    keyhole_store::validate_id(&spec.name)
        .map_err(|e| RuntimeError::InvalidSpec(format!("listener name: {e}")))?;
    if spec.topics.is_empty() {
        return bad("at least one topic filter is required (use `*` for all)".into());
    }
    if spec.topics.len() > MAX_TOPICS {
        return bad(format!("at most {MAX_TOPICS} topic filters"));
    }
    for t in &spec.topics {
        if t.is_empty() || t.len() > 256 {
            return bad(format!("topic filter must be 1-256 characters: {t:?}"));
        }
        globset::Glob::new(t)
            .map_err(|e| RuntimeError::InvalidSpec(format!("topic filter {t:?}: {e}")))?;
    }
    let l = &spec.limits;
    if l.timeout_ms == 0 || l.timeout_ms > MAX_TIMEOUT.as_millis() as u64 {
        return bad(format!(
            "timeout must be between 1 ms and {} s",
            MAX_TIMEOUT.as_secs()
        ));
    }
    if l.memory_bytes < (1 << 20) || l.memory_bytes > crate::engine::MAX_MEMORY_BYTES {
        return bad(format!(
            "memory limit must be between 1 MiB and {} MiB",
            crate::engine::MAX_MEMORY_BYTES >> 20
        ));
    }
    for (k, v) in &spec.settings {
        keyhole_store::validate_name(k)
            .map_err(|e| RuntimeError::InvalidSpec(format!("setting name: {e}")))?;
        if v.len() > MAX_SETTING_VALUE {
            return bad(format!(
                "setting {k} is longer than {MAX_SETTING_VALUE} bytes"
            ));
        }
    }
    crate::access::check_patterns(&spec.secrets)?;
    let mut origins = spec
        .allow_http
        .iter()
        .map(|entry| AllowedOrigin::parse(entry).map_err(RuntimeError::InvalidSpec))
        .collect::<Result<Vec<_>, _>>()?;
    // An injection allows its own origin: it could not be used otherwise.
    if let Some(rules) = Rules::of(&spec.inject).map_err(RuntimeError::InvalidSpec)? {
        for origin in rules.origins() {
            if !origins.contains(origin) {
                origins.push(origin.clone());
            }
        }
    }
    Ok(origins)
}

/// Cheap header check so garbage and core modules get a precise message.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), RuntimeError> {
    if bytes.len() > MAX_MODULE_BYTES {
        return Err(RuntimeError::TooLarge {
            size: bytes.len(),
            limit: MAX_MODULE_BYTES,
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(RuntimeError::NotWasm(
            "missing the `\\0asm` magic header".into(),
        ));
    }
    match bytes[4..8] {
        [1, 0, 0, 0] => Err(RuntimeError::CoreModule),
        [_, _, 1, 0] => Ok(()),
        _ => Err(RuntimeError::NotWasm(
            "unknown WebAssembly binary version".into(),
        )),
    }
}

/// Import interfaces any listener may use. WASI ones are linked to a
/// deny-all context (see `sandbox.rs`).
const ALLOWED_IMPORTS: &[&str] = &[
    "keyhole:listener/secrets@0.1.",
    "keyhole:listener/types@0.1.",
    "keyhole:listener/secrets@0.2.",
    "keyhole:listener/types@0.2.",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// Imports allowed only with an outbound HTTP grant.
const HTTP_IMPORTS: &[&str] = &["wasi:http/outgoing-handler@0.2.", "wasi:http/types@0.2."];

/// Whether every import is keyhole's own (no WASI): such a component can be
/// called synchronously, since none of its host calls need an async runtime.
pub(crate) fn imports_only_keyhole(engine: &Engine, component: &Component) -> bool {
    component
        .component_type()
        .imports(engine)
        .all(|(name, _)| name.starts_with("keyhole:listener/"))
}

/// Checks every import of `component` against the allow-list.
pub(crate) fn check_imports(
    engine: &Engine,
    component: &Component,
    http_granted: bool,
) -> Result<(), RuntimeError> {
    for (name, item) in component.component_type().imports(engine) {
        let is_instance = matches!(item.ty, ComponentItem::ComponentInstance(_));
        let allowed = is_instance
            && (ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p))
                || (http_granted && HTTP_IMPORTS.iter().any(|p| name.starts_with(p))));
        if !allowed {
            let hint = if HTTP_IMPORTS.iter().any(|p| name.starts_with(p)) {
                ": outbound HTTP needs a grant (`keyhole deploy --allow-http HOST`)"
            } else if name.starts_with("wasi:sockets/") {
                ": listeners get no sockets; use an outbound HTTP grant instead"
            } else {
                ": listeners may import keyhole:listener/secrets and the WASI cli, io, clocks, random and filesystem interfaces"
            };
            return Err(RuntimeError::ForbiddenImport {
                import: name.to_string(),
                hint,
            });
        }
    }
    Ok(())
}
