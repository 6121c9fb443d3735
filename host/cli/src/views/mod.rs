//! The JSON shapes keyhole shows the outside world: the HTTP API writes
//! them, and the CLI reads them back (it is a client of that API, see
//! `crate::client`) and prints them, as tables or, with `--json`, as they
//! are. One type per shape, so the two never drift apart.
//!
//! Field names are camelCase (the API's convention) and timestamps RFC 3339.
//! No view has a field that could hold a secret value: secrets are shown as
//! metadata only, runs carry names of the secrets read, never values.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use keyhole_runtime::http::HttpCall;
use keyhole_runtime::{Deployment, Outcome, RunRecord, ScopeDeletion};
use keyhole_store::{EnvironmentInfo, Provenance, Scope, SecretMeta, SpaceInfo};

use crate::requests::InjectBody;
use serde::{Deserialize, Serialize};

mod operator;
pub use operator::*;

pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A secret's id in the API: `env:prod:SLACK_TOKEN`, `space:team-a:SLACK_TOKEN`.
pub fn secret_id(scope: &Scope, name: &str) -> String {
    format!("{scope}:{name}")
}

/// Splits a secret id back into scope and name (neither ids nor names
/// contain `:`, so the name is what follows the last one).
pub fn parse_secret_id(id: &str) -> Option<(Scope, String)> {
    let (scope, name) = id.rsplit_once(':')?;
    Some((scope.parse().ok()?, name.to_string()))
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretView {
    pub id: String,
    pub name: String,
    pub environment_id: String,
    pub space_id: Option<String>,
    /// `environment` or `space-override`: where the effective value comes from.
    pub provenance: Provenance,
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
    /// The topic globs listeners may read it during; `["*"]`: every topic.
    #[serde(default = "every")]
    pub topics: Vec<String>,
}

/// How views show "no restriction": `*`.
fn every() -> Vec<String> {
    vec!["*".into()]
}

/// `items`, or `*` when there are none (no restriction).
fn or_every(items: &[String]) -> Vec<String> {
    if items.is_empty() {
        every()
    } else {
        items.to_vec()
    }
}

impl SecretView {
    pub fn new(meta: &SecretMeta, environment: &str, provenance: Provenance) -> Self {
        SecretView {
            id: secret_id(&meta.scope, &meta.name),
            name: meta.name.clone(),
            environment_id: environment.to_string(),
            space_id: match &meta.scope {
                Scope::Space(s) => Some(s.clone()),
                Scope::Environment(_) => None,
            },
            provenance,
            version: meta.version,
            created_at: rfc3339(meta.created_at_ms),
            updated_at: rfc3339(meta.updated_at_ms),
            topics: or_every(&meta.topics),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitsView {
    pub timeout_ms: u64,
    pub memory_bytes: u64,
    pub max_http_requests: u32,
    pub max_http_response_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantsView {
    pub environments: Vec<String>,
    pub spaces: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerView {
    pub name: String,
    pub environment_id: String,
    pub space_id: Option<String>,
    pub topics: Vec<String>,
    pub grants: GrantsView,
    pub limits: LimitsView,
    pub allow_http: Vec<String>,
    pub settings: BTreeMap<String, String>,
    /// The secret names or globs it may read; `["*"]`: every name.
    #[serde(default = "every")]
    pub secrets: Vec<String>,
    /// Secrets the host injects into the listener's requests (absent from
    /// daemons that predate them).
    #[serde(default)]
    pub inject: Vec<InjectBody>,
    pub module_hash: String,
    /// The module sha256 its grants were given to: they apply only while
    /// it is `moduleHash`.
    #[serde(default)]
    pub grants_sha256: String,
    pub deployed_at: String,
}

impl From<&Deployment> for ListenerView {
    fn from(d: &Deployment) -> Self {
        let s = &d.spec;
        ListenerView {
            name: s.name.clone(),
            environment_id: s.environment.clone(),
            space_id: s.space.clone(),
            topics: s.topics.clone(),
            grants: GrantsView {
                environments: s.grants.environments.clone(),
                spaces: s.grants.spaces.clone(),
            },
            limits: LimitsView {
                timeout_ms: s.limits.timeout_ms,
                memory_bytes: s.limits.memory_bytes,
                max_http_requests: s.limits.max_http_requests,
                max_http_response_bytes: s.limits.max_http_response_bytes,
            },
            allow_http: s.allow_http.clone(),
            settings: s.settings.iter().cloned().collect(),
            secrets: or_every(&s.secrets),
            inject: s
                .inject
                .iter()
                .map(|i| InjectBody {
                    secret: i.secret.clone(),
                    origin: i.origin.clone(),
                    header: i.header.clone(),
                    template: i.template.clone(),
                })
                .collect(),
            module_hash: d.module_hash.clone(),
            grants_sha256: d.grants_sha256.clone(),
            deployed_at: rfc3339(d.deployed_at_ms),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub id: u64,
    pub event_id: String,
    pub topic: String,
    /// The event's environment (absent for runs recorded by older
    /// releases) and space.
    pub environment_id: Option<String>,
    pub space_id: Option<String>,
    pub listener: String,
    pub module_hash: String,
    /// `{"kind": "ok" | "guest_error" | "deadline" | "memory" | "trap" | "failed" | "memory_budget", ...}`
    pub outcome: Outcome,
    pub started_at: String,
    pub duration_us: u64,
    pub stdout: String,
    pub stderr: String,
    pub output_dropped: u64,
    pub secrets_read: Vec<String>,
    pub http: Vec<HttpCall>,
    /// What the operator should know about the run: why a `get-secret`
    /// was denied or failed, grants not applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Cluster mode: which delivery of the event ran (absent: the first).
    #[serde(default = "first_delivery", skip_serializing_if = "is_first_delivery")]
    pub delivery: u32,
}

fn first_delivery() -> u32 {
    1
}

fn is_first_delivery(n: &u32) -> bool {
    *n == 1
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        RunView {
            id: r.id,
            started_at: rfc3339(r.started_at_ms),
            event_id: r.event_id,
            topic: r.topic,
            environment_id: Some(r.environment).filter(|e| !e.is_empty()),
            space_id: r.space,
            listener: r.listener,
            module_hash: r.module_hash,
            outcome: r.outcome,
            duration_us: r.duration_us,
            stdout: r.stdout,
            stderr: r.stderr,
            output_dropped: r.output_dropped,
            secrets_read: r.secrets_read,
            http: r.http,
            notes: r.notes,
            delivery: r.delivery,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentView {
    pub id: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaceView {
    pub id: String,
    pub environment_id: String,
    pub created_at: String,
}

impl From<EnvironmentInfo> for EnvironmentView {
    fn from(e: EnvironmentInfo) -> Self {
        EnvironmentView {
            id: e.id,
            created_at: rfc3339(e.created_at_ms),
        }
    }
}

impl From<SpaceInfo> for SpaceView {
    fn from(s: SpaceInfo) -> Self {
        SpaceView {
            id: s.id,
            environment_id: s.environment,
            created_at: rfc3339(s.created_at_ms),
        }
    }
}

/// One version of a secret in its history: never a value.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    pub version: u64,
    /// `current`, `kept`, `deleted` or `destroyed`.
    pub state: keyhole_store::VersionState,
    pub created_at: String,
    pub updated_at: String,
    /// Who wrote it (for a destroyed one: who destroyed it), from the
    /// audit log; absent when the caller may not read the log or no entry
    /// matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// What `POST /v1/secrets/{id}/destroy` did.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DestroyedView {
    pub destroyed: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// `{"data": ...}`: the secrets API's envelope, around one item.
#[derive(Debug, Serialize, Deserialize)]
pub struct Data<T> {
    pub data: T,
}

/// The secrets endpoints' answer, in Flatfile's envelope
/// (`SecretsResponse`): the effective secrets of the scope asked about,
/// after the change for a write. Metadata only: values are write-only.
#[derive(Debug, Serialize, Deserialize)]
pub struct SecretsView {
    pub data: Vec<SecretView>,
    /// After a write: the store revision it is at, for an event to wait
    /// for on any host (`minRevision` of `POST /v1/events`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// The deploy response: the listener, the module hash of the deployment
/// of the same name it replaced (`null` on a first deploy), and what the
/// deployer should know (that the previous deployment's grants were not
/// carried over to this module).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployedView {
    #[serde(flatten)]
    pub listener: ListenerView,
    pub previous_module_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// What deleting an environment or space took with it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletionView {
    pub id: String,
    pub forced: bool,
    pub secrets: usize,
    pub spaces: Vec<String>,
    pub listeners: Vec<String>,
    pub data_keys: usize,
}

impl From<ScopeDeletion> for DeletionView {
    fn from(d: ScopeDeletion) -> Self {
        DeletionView {
            id: d.scope.id().to_owned(),
            forced: d.forced,
            secrets: d.secrets,
            spaces: d.spaces,
            listeners: d.listeners,
            data_keys: d.data_keys,
        }
    }
}

/// An accepted event and the runs it caused.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmitView {
    pub event_id: String,
    pub runs: Vec<RunView>,
    /// Cluster mode: the event was queued (durably) for any host to run;
    /// its runs are found later by its id. `runs` is then empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
    /// Queued already under this id (a repeated submission): nothing new.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// The events of a batch (`POST /v1/events/batch`), in the order sent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmitBatchView {
    pub events: Vec<EmitView>,
}

/// A page of run records, newest first.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunsPage {
    pub runs: Vec<RunView>,
    /// The `before` of the next page; `null` when this is the last.
    pub next: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_ids_round_trip() {
        let scope = Scope::Space("team-a".into());
        let id = secret_id(&scope, "SLACK_TOKEN");
        assert_eq!(id, "space:team-a:SLACK_TOKEN");
        assert_eq!(parse_secret_id(&id), Some((scope, "SLACK_TOKEN".into())));
        assert_eq!(
            parse_secret_id("env:prod:A"),
            Some((Scope::Environment("prod".into()), "A".into()))
        );
        assert_eq!(parse_secret_id("prod:A"), None);
        assert_eq!(parse_secret_id("vault:x:A"), None);
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    }
}
