//! The JSON bodies and query strings clients send: the CLI builds them,
//! the API parses them. One type per request, so the two cannot drift.
//!
//! Field names are camelCase. Bodies refuse unknown fields, so a typo is a
//! 400 rather than a silently ignored setting. Answers are in `views/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// `POST /v1/environments`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    pub id: String,
}

/// `POST /v1/spaces`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSpace {
    pub id: String,
    pub environment_id: String,
}

/// `GET /v1/spaces`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpaceQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
}

/// `GET /v1/secrets`, as Flatfile's API takes it: a space alone implies its
/// environment. keyhole has no actor-scoped secrets: `actorId` is accepted
/// and changes nothing.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
}

/// `POST /v1/secrets`: an upsert, in Flatfile's shape (`actorId` as in
/// [`SecretQuery`]), plus keyhole's optional `topics`. The value is held in
/// a zeroizing buffer on both sides.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetSecret {
    pub name: String,
    pub value: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_id: Option<String>,
    /// Topic globs listeners may read the secret during. Absent: the
    /// binding the secret had stays (none for a new one); `[]` or `["*"]`:
    /// every topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<Vec<String>>,
    /// Check-and-set: write only if the secret's current version is this
    /// (0: only if it does not exist); otherwise 409 and nothing written.
    /// `If-Match: "N"` says the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    /// How many of this secret's versions to keep (1-1000), instead of
    /// the store's setting; absent leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_versions: Option<u64>,
}

/// `GET` and `POST /v1/secrets/config`: the store-wide settings of secrets.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecretsConfig {
    /// Versions kept per secret, the current one included (1-1000), unless
    /// a secret says otherwise.
    pub versions_kept: u64,
}

/// `POST /v1/keys/rotate`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// `env:NAME` or `space:NAME`; absent rotates the master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The first half of a master key rotation across hosts: add the new
    /// version to this host's key file without switching to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prepare: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsBody {
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub spaces: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LimitsBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_response_bytes: Option<u64>,
}

fn placeholder() -> String {
    "{}".into()
}

/// One `inject` entry of [`ListenerSpec`] (and of the listener's view): the
/// host puts the secret `secret` into the header `header` of every request
/// the listener sends to `origin`, written as `template` with `{}` standing
/// for the value; the listener cannot read it. `keyhole deploy --inject`
/// writes it as `SECRET@ORIGIN/HEADER: TEMPLATE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectBody {
    pub secret: String,
    pub origin: String,
    pub header: String,
    #[serde(default = "placeholder")]
    pub template: String,
}

fn all_topics() -> Vec<String> {
    vec!["*".into()]
}

/// The `spec` part of `POST /v1/listeners` (the other part is the module).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListenerSpec {
    pub name: String,
    pub environment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    #[serde(default = "all_topics")]
    pub topics: Vec<String>,
    #[serde(default)]
    pub grants: GrantsBody,
    #[serde(default)]
    pub limits: LimitsBody,
    #[serde(default)]
    pub allow_http: Vec<String>,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Secret names or globs the listener may read; empty: every name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// Carry the grants of the deployment of the same name over to this
    /// module (which must state none of its own).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_grants: bool,
    /// Left out when empty, so a daemon that predates it accepts the rest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inject: Vec<InjectBody>,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

/// `POST /v1/events`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EmitBody {
    pub topic: String,
    pub environment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    /// Any JSON document; `{}` when absent.
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// Run only once this host's store has applied this revision (a
    /// write's `revision`, made through any host): read-your-writes across
    /// hosts. Waited for at most [`MIN_REVISION_WAIT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_revision: Option<u64>,
    /// The event's id, chosen by the client so that a repeated submission
    /// is recognised (cluster mode queues an id once); absent: a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// How long `POST /v1/events` waits for its `minRevision`.
pub const MIN_REVISION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `GET /v1/runs`, as sent: each value is checked and parsed by the API
/// (`api/runs.rs`), so a bad one is a 400 in the caller's terms.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RunsParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// One outcome label, or several separated by commas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// Milliseconds since the epoch, or RFC 3339 in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    /// The cursor: runs older than this run id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// `GET /v1/audit`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Only reads of this secret name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Only reads by this deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Only admin actions of this actor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Only admin actions on this target (`env:prod/SLACK_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// Only entries at or after this time (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    /// Newest first, entries before this sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<u64>,
    /// Oldest first, entries after this sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Cluster mode: this host's chain, from the cluster's copy (default:
    /// the answering host's own log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateToken {
    pub name: String,
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    /// A duration such as `1h`, `30d`; absent: never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// `POST /v1/secrets/{id}/rollback`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollback {
    /// The version whose value becomes the new version's.
    pub version: u64,
    /// Check-and-set, as for `POST /v1/secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// `POST /v1/secrets/{id}/destroy`: `versions`, or `all`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Destroy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}
