//! How a deployment is stored in the bucket `deployments`: JSON.
//!
//! Release 0.1 stored deployments as postcard, which has no field names:
//! a field added to the spec would make every older record unreadable,
//! and one left out by an older binary would go unnoticed. JSON names its
//! fields, so a field added later (`inject`, with a default) reads as its
//! default in an older record, and an unknown one (a record a newer keyhole
//! wrote) is refused rather than dropped (`deny_unknown_fields` on
//! [`Deployment`]): a deployment never runs with fewer rules than it was
//! given.
//!
//! Old records are still read: a postcard deployment starts with its name's
//! length (1-64), a JSON one with `{`. They are rewritten as JSON when next
//! deployed. Deployments are few and read at open, so the format's cost
//! does not matter.

use serde::Deserialize;

use crate::deploy::{DeploySpec, Deployment, Grants, Limits};
use crate::error::RuntimeError;

/// The bytes stored for `record`.
pub(crate) fn encode(record: &Deployment) -> Result<Vec<u8>, RuntimeError> {
    serde_json::to_vec(record).map_err(|e| RuntimeError::Corrupt(format!("deployment record: {e}")))
}

/// A stored record, in either format. A JSON record starts with `{`
/// (byte 123), a postcard one with its name's length (at most 64); should
/// that change, a postcard record starting with `{` is still no JSON
/// object, and is read as postcard.
pub(crate) fn decode(bytes: &[u8]) -> Result<Deployment, RuntimeError> {
    let corrupt =
        |e: &dyn std::fmt::Display| RuntimeError::Corrupt(format!("deployment record: {e}"));
    if bytes.first() == Some(&b'{') {
        let json = serde_json::from_slice::<Deployment>(bytes);
        return match json {
            Ok(record) => Ok(record),
            Err(e) => match postcard::from_bytes::<Release01>(bytes) {
                Ok(old) => Ok(old.into()),
                // The JSON error says what is wrong (an unknown field).
                Err(_) => Err(corrupt(&e)),
            },
        };
    }
    let old: Release01 = postcard::from_bytes(bytes).map_err(|e| corrupt(&e))?;
    Ok(old.into())
}

/// A deployment as release 0.1 wrote it (postcard: fields in order).
#[derive(Deserialize)]
struct Release01 {
    spec: Release01Spec,
    module_hash: String,
    deployed_at_ms: u64,
}

#[derive(Deserialize)]
struct Release01Spec {
    name: String,
    environment: String,
    space: Option<String>,
    topics: Vec<String>,
    grants: Grants,
    limits: Limits,
    allow_http: Vec<String>,
    settings: Vec<(String, String)>,
}

impl From<Release01> for Deployment {
    fn from(old: Release01) -> Self {
        let s = old.spec;
        Deployment {
            spec: DeploySpec {
                name: s.name,
                environment: s.environment,
                space: s.space,
                topics: s.topics,
                grants: s.grants,
                limits: s.limits,
                allow_http: s.allow_http,
                settings: s.settings,
                ..DeploySpec::new("", "")
            },
            module_hash: old.module_hash,
            deployed_at_ms: old.deployed_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;
    use crate::inject::Injection;

    /// What release 0.1 wrote, field for field.
    #[derive(Serialize)]
    struct Written {
        spec: WrittenSpec,
        module_hash: String,
        deployed_at_ms: u64,
    }

    #[derive(Serialize)]
    struct WrittenSpec {
        name: String,
        environment: String,
        space: Option<String>,
        topics: Vec<String>,
        grants: Grants,
        limits: Limits,
        allow_http: Vec<String>,
        settings: Vec<(String, String)>,
    }

    fn written(name: &str) -> Vec<u8> {
        postcard::to_allocvec(&Written {
            spec: WrittenSpec {
                name: name.into(),
                environment: "prod".into(),
                space: Some("team-a".into()),
                topics: vec!["greet:*".into()],
                grants: Grants::default(),
                limits: Limits::default(),
                allow_http: vec!["slack.com".into()],
                settings: vec![("k".into(), "v".into())],
            },
            module_hash: "ab".into(),
            deployed_at_ms: 7,
        })
        .unwrap()
    }

    #[test]
    fn release_0_1_records_read_and_new_ones_round_trip() {
        // A name of 123 characters would start the record with `{` too.
        for name in ["hello".to_owned(), "n".repeat(123)] {
            let read = decode(&written(&name)).unwrap();
            assert_eq!(read.spec.name, name);
            assert_eq!(read.spec.allow_http, ["slack.com"]);
            assert_eq!(read.spec.settings, [("k".to_owned(), "v".to_owned())]);
            assert!(read.spec.inject.is_empty());
            assert_eq!((read.module_hash.as_str(), read.deployed_at_ms), ("ab", 7));

            let mut new = read.clone();
            new.spec.inject = vec![Injection::parse(crate::inject::EXAMPLE).unwrap()];
            assert_eq!(decode(&encode(&new).unwrap()).unwrap(), new);
        }
        assert!(matches!(decode(b"{\"x\""), Err(RuntimeError::Corrupt(_))));
    }

    #[test]
    fn a_record_with_a_field_this_release_does_not_know_is_refused() {
        let record = decode(
            &encode(&Deployment {
                spec: DeploySpec::new("hello", "prod"),
                module_hash: "ab".into(),
                deployed_at_ms: 1,
            })
            .unwrap(),
        )
        .unwrap();
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
