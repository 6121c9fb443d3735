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

/// A stored deployment, in this release's format or an earlier one.
pub(crate) fn decode(bytes: &[u8]) -> Result<Deployment, RuntimeError> {
    if bytes.first() == Some(&b'{')
        && let Ok(mut record) = serde_json::from_slice::<Deployment>(bytes)
    {
        if record.grants_sha256.is_empty() {
            record.grants_sha256 = record.module_hash.clone();
        }
        return Ok(record);
    }
    let old: PostcardDeployment = postcard::from_bytes(bytes)
        .map_err(|e| RuntimeError::Corrupt(format!("deployment record: {e}")))?;
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
            assert!(d.grants_bound() && d.spec.secrets.is_empty());
        }
    }

    #[test]
    fn records_round_trip_with_their_binding() {
        let mut spec = DeploySpec::new("hello", "prod");
        spec.secrets = vec!["SLACK_*".into()];
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
}
