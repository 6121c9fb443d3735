//! How a [`Deployment`] is stored in the bucket `deployments`, and reading
//! the records of earlier releases.
//!
//! Records are JSON: a field added later (`#[serde(default)]`) reads from
//! older records without a new format, which a deployment spec, growing a
//! grant at a time, needs. Releases up to this one wrote postcard, which
//! is not self-describing; those records are read with the frozen shape
//! below and bound to their own module ([`Deployment::grants_sha256`]),
//! as the grants they hold were given to it. The two cannot be confused:
//! a JSON record starts with `{` (byte 123), and a postcard record with
//! the listener name's length, at most 64. (Should that change, a
//! postcard record that happens to start with `{` is still no JSON
//! object, and is read as postcard.)

use serde::Deserialize;

use crate::deploy::{DeploySpec, Deployment, Grants, Limits};
use crate::error::RuntimeError;

/// The bytes a deployment is stored as.
pub(crate) fn encode(record: &Deployment) -> Result<Vec<u8>, RuntimeError> {
    serde_json::to_vec(record).map_err(|e| RuntimeError::Corrupt(format!("deployment record: {e}")))
}

/// Who a record this release cannot read in full (one a newer keyhole
/// wrote, with fields this one does not know) is, and which events it
/// receives: its name, environment, space and topics, and nothing it
/// grants. `None` when even those cannot be read. For a cluster host that
/// cannot apply it (`unapplied.rs`), never to run it. So these four fields
/// decide what a listener receives in every release: a later one must not
/// widen it through a new field, or a host of this release would
/// acknowledge events the listener should have received.
pub(crate) fn decode_routing(bytes: &[u8]) -> Option<Deployment> {
    #[derive(Deserialize)]
    struct Routing {
        spec: RoutingSpec,
        #[serde(default)]
        module_hash: String,
        #[serde(default)]
        deployed_at_ms: u64,
    }
    #[derive(Deserialize)]
    struct RoutingSpec {
        name: String,
        environment: String,
        #[serde(default)]
        space: Option<String>,
        topics: Vec<String>,
    }
    let routing: Routing = serde_json::from_slice(bytes).ok()?;
    let mut spec = DeploySpec::new(&routing.spec.name, &routing.spec.environment);
    spec.space = routing.spec.space;
    spec.topics = routing.spec.topics;
    Some(Deployment {
        spec,
        module_hash: routing.module_hash,
        deployed_at_ms: routing.deployed_at_ms,
        grants_sha256: String::new(),
    })
}

/// A stored deployment, in this release's format or an earlier one. A
/// JSON record with a field this release does not know (one a newer
/// keyhole wrote) is refused, naming the field, rather than run with fewer
/// rules than it was given (`deny_unknown_fields` on [`Deployment`]).
pub(crate) fn decode(bytes: &[u8]) -> Result<Deployment, RuntimeError> {
    let corrupt =
        |e: &dyn std::fmt::Display| RuntimeError::Corrupt(format!("deployment record: {e}"));
    let mut json_error = None;
    if bytes.first() == Some(&b'{') {
        match serde_json::from_slice::<Deployment>(bytes) {
            Ok(mut record) => {
                if record.grants_sha256.is_empty() {
                    record.grants_sha256 = record.module_hash.clone();
                }
                return Ok(record);
            }
            Err(e) => json_error = Some(e),
        }
    }
    let old: PostcardDeployment = postcard::from_bytes(bytes).map_err(|e| match &json_error {
        // Not postcard either: the JSON error says what is wrong.
        Some(json) => corrupt(json),
        None => corrupt(&e),
    })?;
    let s = old.spec;
    Ok(Deployment {
        spec: DeploySpec {
            name: s.name,
            environment: s.environment,
            space: s.space,
            topics: s.topics,
            grants: s.grants,
            limits: s.limits,
            allow_http: s.allow_http,
            settings: s.settings,
            secrets: Vec::new(),
            inject: Vec::new(),
        },
        grants_sha256: old.module_hash.clone(),
        module_hash: old.module_hash,
        deployed_at_ms: old.deployed_at_ms,
    })
}

/// A deployment as releases before grant binding stored it (postcard).
/// Frozen: never add a field.
#[derive(Deserialize)]
struct PostcardDeployment {
    spec: PostcardSpec,
    module_hash: String,
    deployed_at_ms: u64,
}

#[derive(Deserialize)]
struct PostcardSpec {
    name: String,
    environment: String,
    space: Option<String>,
    topics: Vec<String>,
    grants: Grants,
    limits: Limits,
    allow_http: Vec<String>,
    settings: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    /// What earlier releases wrote: `Deployment` as it was, in postcard.
    #[derive(Serialize)]
    struct Old<'a> {
        spec: OldSpec<'a>,
        module_hash: &'a str,
        deployed_at_ms: u64,
    }

    #[derive(Serialize)]
    struct OldSpec<'a> {
        name: &'a str,
        environment: &'a str,
        space: Option<&'a str>,
        topics: Vec<&'a str>,
        grants: Grants,
        limits: Limits,
        allow_http: Vec<&'a str>,
        settings: Vec<(&'a str, &'a str)>,
    }

    fn old_record(name: &str) -> Vec<u8> {
        postcard::to_allocvec(&Old {
            spec: OldSpec {
                name,
                environment: "prod",
                space: Some("team-a"),
                topics: vec!["action:*"],
                grants: Grants {
                    environments: vec!["staging".into()],
                    spaces: vec![],
                },
                limits: Limits::default(),
                allow_http: vec!["https://slack.com"],
                settings: vec![("k", "v")],
            },
            module_hash: "ab12",
            deployed_at_ms: 7,
        })
        .unwrap()
    }

    #[test]
    fn earlier_records_load_bound_to_their_own_module() {
        // A name of 123 characters would start the record with `{` too.
        for name in ["hello".to_string(), "n".repeat(123)] {
            let bytes = old_record(&name);
            let d = decode(&bytes).unwrap();
            assert_eq!(d.spec.name, name);
            assert_eq!(d.spec.grants.environments, ["staging"]);
            assert_eq!(d.spec.settings, [("k".to_string(), "v".to_string())]);
            assert_eq!((d.module_hash.as_str(), d.deployed_at_ms), ("ab12", 7));
            assert!(d.grants_bound() && d.spec.secrets.is_empty() && d.spec.inject.is_empty());
        }
    }

    #[test]
    fn records_round_trip_with_their_binding() {
        let mut spec = DeploySpec::new("hello", "prod");
        spec.secrets = vec!["SLACK_*".into()];
        spec.inject = vec![crate::inject::Injection::parse(crate::inject::EXAMPLE).unwrap()];
        let record = Deployment {
            spec,
            module_hash: "new".into(),
            deployed_at_ms: 1,
            grants_sha256: "old".into(),
        };
        let back = decode(&encode(&record).unwrap()).unwrap();
        assert_eq!(back, record);
        assert!(!back.grants_bound());
        assert!(matches!(decode(b"{\"x\""), Err(RuntimeError::Corrupt(_))));
    }

    #[test]
    fn a_record_with_a_field_this_release_does_not_know_is_refused() {
        let record = Deployment {
            spec: DeploySpec::new("hello", "prod"),
            module_hash: "ab".into(),
            deployed_at_ms: 1,
            grants_sha256: "ab".into(),
        };
        let mut json = serde_json::to_value(&record).unwrap();
        json["spec"]["future_rule"] = serde_json::json!(["deny"]);
        let e = decode(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(e.to_string().contains("future_rule"), "{e}");
        // Older JSON records, without `inject`, read with none.
        json["spec"].as_object_mut().unwrap().remove("future_rule");
        json["spec"].as_object_mut().unwrap().remove("inject");
        assert_eq!(decode(&serde_json::to_vec(&json).unwrap()).unwrap(), record);
    }
}
