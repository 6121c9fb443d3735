//! The operator's views: key rotations, the audit log and API tokens
//! (apart from `views/mod.rs`: listeners, secrets, scopes and runs).

use std::time::UNIX_EPOCH;

use keyhole_store::{RotationReport, RotationTarget};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::rfc3339;
use crate::auth::Token;

/// What an operator must know after a rotation beyond its numbers, shown
/// by `keyhole keys rotate` and carried by `POST /v1/keys/rotate`'s
/// `notice`. After a master key rotation: where the new key is, and that
/// copies of the key file taken before no longer open the store (the old
/// versions are gone from the file and from the store's key checks).
pub fn rotation_notice(r: &RotationReport) -> Option<String> {
    let path = r.key_file.as_ref()?;
    if r.prepared_only {
        return Some(format!(
            "{} now holds master key v{} beside the current one: copy it to every host that \
             shares this store (each re-reads its key file when it meets a key it lacks; no \
             restart), then run `keyhole keys rotate` on any host to switch",
            path.display(),
            r.new_version
        ));
    }
    Some(format!(
        "the new master key (v{}) is in {}, which no longer holds the old one: back it up \
         again, apart from the data directory; backups of the key file made before this \
         rotation no longer open the store",
        r.new_version,
        path.display()
    ))
}

/// What a key rotation did.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationView {
    /// `kek`, `env:NAME` or `space:NAME`.
    pub target: String,
    pub previous_version: Option<u64>,
    pub new_version: u64,
    pub records_rewritten: usize,
    pub retired_versions: Vec<u64>,
    /// A master key rotation's key file, which now holds the new key.
    #[serde(default)]
    pub key_file: Option<String>,
    /// What the operator must know beyond the numbers ([`rotation_notice`]),
    /// printed by `keyhole keys rotate`.
    #[serde(default)]
    pub notice: Option<String>,
    /// `keyhole keys rotate --prepare`: `newVersion` is in the key file but
    /// not current yet.
    #[serde(default)]
    pub prepared: bool,
}

impl From<RotationReport> for RotationView {
    fn from(r: RotationReport) -> Self {
        let notice = rotation_notice(&r);
        RotationView {
            target: match r.target {
                RotationTarget::Kek => "kek".into(),
                RotationTarget::Dek(scope) => scope.to_string(),
            },
            previous_version: r.previous_version,
            new_version: r.new_version,
            records_rewritten: r.records_rewritten,
            retired_versions: r.retired_versions,
            key_file: r.key_file.map(|p| p.display().to_string()),
            notice,
            prepared: r.prepared_only,
        }
    }
}

/// A page of the audit log.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Cluster mode: the host whose chain these entries are (sequence
    /// numbers are per host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub entries: Vec<keyhole_audit::AuditRecord>,
    /// The cursor for the next page in the same direction (`before` or
    /// `after`), absent when this page was the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// What verifying the audit log found.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyView {
    /// Cluster mode: whose chain this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// For the answering host: its own log and, in cluster mode, every
    /// host's chain in the cluster's copy (`hosts`) hold.
    pub ok: bool,
    pub entries: u64,
    pub segments: usize,
    /// The first entry that does not hold, in words (with its segment
    /// file's name, never the data directory's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_seq: Option<u64>,
    /// Cluster mode: each host's chain in the cluster's copy (`segments`
    /// counts its chunks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<VerifyView>,
}

/// A token just made (or given a new secret): the one answer that holds
/// it.
#[derive(Serialize, Deserialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    /// Zeroized once written (daemon) or printed (CLI).
    #[serde(serialize_with = "reveal", deserialize_with = "conceal")]
    pub token: Zeroizing<String>,
}

fn reveal<S: serde::Serializer>(token: &Zeroizing<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(token)
}

fn conceal<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Zeroizing<String>, D::Error> {
    String::deserialize(d).map(Zeroizing::new)
}

/// An API token as listed: never the token, never its hash.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    /// `all`, `env:E` or `env:E/space:S`.
    pub scope: String,
    pub environment_id: Option<String>,
    pub space_id: Option<String>,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub expired: bool,
    pub last_used_at: Option<String>,
}

impl TokenInfo {
    /// `last_used_ms`: a fresher time than the record's, if known.
    pub fn new(t: &Token, last_used_ms: Option<u64>) -> Self {
        let last_used = t.last_used_ms.max(last_used_ms);
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        TokenInfo {
            name: t.name.clone(),
            role: t.role.name().to_owned(),
            scope: t.scope.to_string(),
            environment_id: t.scope.environment().map(Into::into),
            space_id: t.scope.space().map(Into::into),
            created_at: rfc3339(t.created_at_ms),
            created_by: t.created_by.clone(),
            expires_at: t.expires_at_ms.map(rfc3339),
            expired: t.expired_at(now),
            last_used_at: last_used.map(rfc3339),
        }
    }
}
