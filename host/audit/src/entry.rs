//! What an audit entry says: a `get-secret` call ([`SecretRead`]), an admin
//! action ([`Admin`]), or the deletion of old segments ([`Entry::Retention`]).
//!
//! Entries are written from borrowed data (no allocation per entry on the
//! `get-secret` path) and read back as the owned [`Entry`]. The written JSON
//! is byte for byte what `serde_json` writes for [`Entry`] (tested below),
//! so reading back is plain deserialization. No entry has a field that
//! could hold a secret value or a token: names, scopes, versions, outcomes.

use keyhole_seglog::json::{number, string, string_body};
use serde::{Deserialize, Serialize};

/// How a `get-secret` call ended, as the guest saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadOutcome {
    Ok,
    NotFound,
    AccessDenied,
    InvalidName,
    Unavailable,
}

impl ReadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ReadOutcome::Ok => "ok",
            ReadOutcome::NotFound => "not_found",
            ReadOutcome::AccessDenied => "access_denied",
            ReadOutcome::InvalidName => "invalid_name",
            ReadOutcome::Unavailable => "unavailable",
        }
    }
}

/// The scope a guest named (`None` in [`SecretRead::requested`]: it named
/// none, so the event's own scope was read).
#[derive(Clone, Copy, Debug)]
pub struct RequestedScope<'a> {
    pub environment: Option<&'a str>,
    pub space: Option<&'a str>,
}

/// Where a value was found.
#[derive(Clone, Copy, Debug)]
pub struct ResolvedScope<'a> {
    /// Written as `env:ID` or `space:ID`.
    pub space: bool,
    pub id: &'a str,
    /// `environment` or `space-override`.
    pub provenance: &'a str,
    pub version: u64,
}

/// Where the host put a value it read for a listener without handing it
/// over (`keyhole deploy --inject`): the origin of the request and the
/// header the value went into.
#[derive(Clone, Copy, Debug)]
pub struct InjectedInto<'a> {
    /// `https://slack.com:443`.
    pub origin: &'a str,
    /// Lower-case header name, e.g. `authorization`.
    pub header: &'a str,
}

/// One `get-secret` call, or one read the host made to inject a value
/// into an outbound request (then `injected` says where it went).
#[derive(Clone, Copy, Debug)]
pub struct SecretRead<'a> {
    pub time_ms: u64,
    pub event_id: &'a str,
    pub topic: &'a str,
    pub deployment: &'a str,
    pub module_sha256: &'a str,
    /// The name asked for (bounded by the runtime before it is copied).
    pub name: &'a str,
    pub requested: Option<RequestedScope<'a>>,
    pub resolved: Option<ResolvedScope<'a>>,
    /// Set when the host read the value to inject it into a request: the
    /// listener never received it.
    pub injected: Option<InjectedInto<'a>>,
    pub outcome: ReadOutcome,
    /// Why the call was refused, for the operator (an `access_denied`
    /// says which rule: a scope not granted, a name not declared, a topic
    /// binding, a grant bound to another module). The guest is told only
    /// the outcome.
    pub reason: Option<&'a str>,
}

/// One admin action: who asked for what, and how it ended.
#[derive(Clone, Copy, Debug)]
pub struct Admin<'a> {
    pub time_ms: u64,
    /// `token:NAME`, or `local:USER` for the CLI on the data directory.
    pub actor: &'a str,
    /// e.g. `secret.set`, `listener.deploy`, `token.revoke`, `auth`.
    pub action: &'a str,
    /// What it acted on, e.g. `space:team-a/SLACK_TOKEN`.
    pub target: &'a str,
    /// `ok`, `denied` (not authorised), or `failed`.
    pub outcome: &'a str,
    /// Why it was denied or failed, or other non-secret detail.
    pub detail: Option<&'a str>,
}

/// An entry as read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    SecretRead {
        time_ms: u64,
        event_id: String,
        topic: String,
        deployment: String,
        module_sha256: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested: Option<Requested>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resolved: Option<Resolved>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        injected: Option<Injected>,
        outcome: ReadOutcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Admin {
        time_ms: u64,
        actor: String,
        action: String,
        target: String,
        outcome: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// Segments before `first_kept` were deleted by retention.
    Retention { time_ms: u64, first_kept: u64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requested {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub scope: String,
    pub provenance: String,
    pub version: u64,
}

/// Where an injected value went ([`InjectedInto`], read back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injected {
    pub origin: String,
    pub header: String,
}

impl Entry {
    pub fn time_ms(&self) -> u64 {
        match self {
            Entry::SecretRead { time_ms, .. }
            | Entry::Admin { time_ms, .. }
            | Entry::Retention { time_ms, .. } => *time_ms,
        }
    }
}

fn field(buf: &mut Vec<u8>, name: &str) {
    buf.extend_from_slice(b",\"");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\":");
}

/// Writes `r` as the JSON of [`Entry::SecretRead`].
pub(crate) fn write_secret_read(buf: &mut Vec<u8>, r: &SecretRead<'_>) {
    // Field names as literals (copied inline, not by a call per name):
    // this runs on every `get-secret`.
    buf.extend_from_slice(b"{\"kind\":\"secret_read\",\"time_ms\":");
    number(buf, r.time_ms);
    buf.extend_from_slice(b",\"event_id\":");
    string(buf, r.event_id);
    buf.extend_from_slice(b",\"topic\":");
    string(buf, r.topic);
    buf.extend_from_slice(b",\"deployment\":");
    string(buf, r.deployment);
    buf.extend_from_slice(b",\"module_sha256\":");
    string(buf, r.module_sha256);
    buf.extend_from_slice(b",\"name\":");
    string(buf, r.name);
    if let Some(q) = r.requested {
        field(buf, "requested");
        buf.push(b'{');
        let mut first = true;
        for (name, value) in [("environment", q.environment), ("space", q.space)] {
            if let Some(v) = value {
                if !first {
                    buf.push(b',');
                }
                first = false;
                string(buf, name);
                buf.push(b':');
                string(buf, v);
            }
        }
        buf.push(b'}');
    }
    if let Some(s) = r.resolved {
        buf.extend_from_slice(b",\"resolved\":{\"scope\":");
        buf.extend_from_slice(if s.space { b"\"space:" } else { b"\"env:" });
        string_body(buf, s.id);
        buf.push(b'"');
        buf.extend_from_slice(b",\"provenance\":");
        string(buf, s.provenance);
        buf.extend_from_slice(b",\"version\":");
        number(buf, s.version);
        buf.push(b'}');
    }
    if let Some(i) = r.injected {
        field(buf, "injected");
        buf.extend_from_slice(b"{\"origin\":");
        string(buf, i.origin);
        field(buf, "header");
        string(buf, i.header);
        buf.push(b'}');
    }
    buf.extend_from_slice(b",\"outcome\":");
    string(buf, r.outcome.as_str());
    if let Some(reason) = r.reason {
        field(buf, "reason");
        string(buf, reason);
    }
    buf.push(b'}');
}

/// Writes `a` as the JSON of [`Entry::Admin`].
pub(crate) fn write_admin(buf: &mut Vec<u8>, a: &Admin<'_>) {
    buf.extend_from_slice(b"{\"kind\":\"admin\",\"time_ms\":");
    number(buf, a.time_ms);
    for (name, value) in [
        ("actor", a.actor),
        ("action", a.action),
        ("target", a.target),
        ("outcome", a.outcome),
    ] {
        field(buf, name);
        string(buf, value);
    }
    if let Some(d) = a.detail {
        field(buf, "detail");
        string(buf, d);
    }
    buf.push(b'}');
}

pub(crate) fn write_retention(buf: &mut Vec<u8>, time_ms: u64, first_kept: u64) {
    buf.extend_from_slice(b"{\"kind\":\"retention\",\"time_ms\":");
    number(buf, time_ms);
    field(buf, "first_kept");
    number(buf, first_kept);
    buf.push(b'}');
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(buf: &[u8]) -> Entry {
        let entry: Entry = serde_json::from_slice(buf).unwrap();
        assert_eq!(
            String::from_utf8(serde_json::to_vec(&entry).unwrap()).unwrap(),
            String::from_utf8(buf.to_vec()).unwrap(),
            "hand-written JSON is what serde writes"
        );
        entry
    }

    #[test]
    fn secret_reads_round_trip_with_and_without_scopes() {
        let awkward = "quote \" and \\ and \n é";
        let mut read = SecretRead {
            time_ms: 1,
            event_id: "ev_1",
            topic: awkward,
            deployment: "hello",
            module_sha256: "ab",
            name: "SLACK_TOKEN",
            requested: None,
            resolved: None,
            injected: None,
            outcome: ReadOutcome::NotFound,
            reason: None,
        };
        let mut buf = Vec::new();
        write_secret_read(&mut buf, &read);
        assert!(matches!(
            owned(&buf),
            Entry::SecretRead {
                requested: None,
                resolved: None,
                outcome: ReadOutcome::NotFound,
                reason: None,
                ..
            }
        ));
        let denied = SecretRead {
            outcome: ReadOutcome::AccessDenied,
            reason: Some("name not declared \"by\" the deployment"),
            ..read
        };
        let mut buf = Vec::new();
        write_secret_read(&mut buf, &denied);
        let Entry::SecretRead { reason, .. } = owned(&buf) else {
            panic!()
        };
        assert_eq!(reason.as_deref(), denied.reason);
        for requested in [
            RequestedScope {
                environment: Some("prod"),
                space: None,
            },
            RequestedScope {
                environment: None,
                space: Some("team-a"),
            },
            RequestedScope {
                environment: Some("prod"),
                space: Some("team-a"),
            },
        ] {
            read.requested = Some(requested);
            read.resolved = Some(ResolvedScope {
                space: true,
                id: "team-a",
                provenance: "space-override",
                version: 7,
            });
            read.outcome = ReadOutcome::Ok;
            let mut buf = Vec::new();
            write_secret_read(&mut buf, &read);
            let Entry::SecretRead {
                resolved: Some(r),
                requested: Some(q),
                ..
            } = owned(&buf)
            else {
                panic!()
            };
            assert_eq!((r.version, r.scope.as_str()), (7, "space:team-a"));
            assert_eq!(q.environment.as_deref(), requested.environment);
        }
        read.requested = None;
        read.injected = Some(InjectedInto {
            origin: "https://slack.com:443",
            header: "authorization",
        });
        let mut buf = Vec::new();
        write_secret_read(&mut buf, &read);
        let Entry::SecretRead {
            injected: Some(i), ..
        } = owned(&buf)
        else {
            panic!()
        };
        assert_eq!(
            (i.origin.as_str(), i.header.as_str()),
            ("https://slack.com:443", "authorization")
        );
    }

    #[test]
    fn admin_and_retention_entries_round_trip() {
        for detail in [None, Some("lacks permission secrets:write")] {
            let mut buf = Vec::new();
            write_admin(
                &mut buf,
                &Admin {
                    time_ms: 5,
                    actor: "token:ci",
                    action: "secret.set",
                    target: "env:prod/SLACK_TOKEN",
                    outcome: "denied",
                    detail,
                },
            );
            assert!(matches!(owned(&buf), Entry::Admin { .. }));
        }
        let mut buf = Vec::new();
        write_retention(&mut buf, 9, 4097);
        assert_eq!(
            owned(&buf),
            Entry::Retention {
                time_ms: 9,
                first_kept: 4097
            }
        );
    }
}
