//! keyhole serves listeners of both WIT versions side by side:
//! `keyhole:listener@0.1.0` (`wit/v0.1.0`) and `@0.2.0` (`wit/`), whose
//! `get-secret-info` returns a value with where it came from. What a 0.2.0
//! listener reports matches the store's own listing.

use keyhole_runtime::{DeploySpec, Outcome};
use keyhole_store::{Provenance, Scope};
use keyhole_tests::*;
use serde_json::{Value, json};

fn results(record: &keyhole_runtime::RunRecord) -> (Vec<Value>, Value) {
    let Outcome::Ok { value } = &record.outcome else {
        panic!("run failed: {:?}", record.outcome)
    };
    let v: Value = serde_json::from_str(value).expect("the listener returns JSON");
    (v["results"].as_array().unwrap().clone(), v["wit"].clone())
}

fn reads(names: &[&str]) -> String {
    let reads: Vec<Value> = names.iter().map(|n| json!({ "name": n })).collect();
    json!({ "reads": reads }).to_string()
}

fn setup() -> Harness {
    let h = Harness::new();
    h.scopes("prod", &["team-a", "team-b"]);
    h.scopes("staging", &[]);
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", "env-v1");
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", "env-v2");
    h.set(Scope::Space("team-a".into()), "SLACK_TOKEN", "team-a-v1");
    h.set(
        Scope::Environment("staging".into()),
        "SLACK_TOKEN",
        "staging",
    );
    h.deploy(SECRET_READER_V0_1, DeploySpec::new("old", "prod"));
    h.deploy(SECRET_INFO_READER, DeploySpec::new("new", "prod"));
    h
}

/// A 0.1.0 listener keeps working beside a 0.2.0 one, reading the same
/// values.
#[test]
pub fn secret_reader_v0_1() {
    let h = setup();
    for (space, want) in [
        (Some("team-a"), "team-a-v1"),
        (Some("team-b"), "env-v2"),
        (None, "env-v2"),
    ] {
        let p = reads(&["SLACK_TOKEN", "MISSING"]);
        let (old, wit) = results(&h.run_of("old", "t", "prod", space, &p));
        assert_eq!(wit, "0.1.0");
        assert_eq!(old[0]["fnv"], fnv(want), "{space:?}");
        assert_eq!(old[1]["error"], "not-found");
        let (new, wit) = results(&h.run_of("new", "t", "prod", space, &p));
        assert_eq!(wit, "0.2.0");
        assert_eq!(new[0]["fnv"], old[0]["fnv"]);
    }
}

/// `get-secret-info` says where each value came from, as `secrets list`
/// does, and is refused, audited and scrubbed like `get-secret`.
#[test]
pub fn secret_info_reader() {
    let h = setup();
    for space in [Some("team-a"), Some("team-b"), None] {
        let listed = h.store().list_effective("prod", space).unwrap();
        let meta = listed
            .iter()
            .find(|m| m.meta.name == "SLACK_TOKEN")
            .unwrap();
        let p = reads(&["SLACK_TOKEN"]);
        let record = h.run_of("new", "t", "prod", space, &p);
        let (r, _) = results(&record);
        let want_kind = match meta.provenance {
            Provenance::SpaceOverride => "space",
            Provenance::Environment => "environment",
        };
        assert_eq!(r[0]["kind"], want_kind, "{space:?}: {r:?}");
        assert_eq!(r[0]["version"], meta.meta.version, "{space:?}: {r:?}");
        assert_eq!(r[0]["environment"], "prod");
        let want_space = (want_kind == "space").then(|| space.unwrap());
        assert_eq!(r[0]["space"], json!(want_space), "{space:?}: {r:?}");
        // The record names what was read, never the value.
        let text = serde_json::to_string(&record).unwrap();
        for v in ["env-v1", "env-v2", "team-a-v1"] {
            assert!(!text.contains(v), "a value in the run record");
        }
    }
    assert_eq!(
        (results(&h.run_of("new", "t", "prod", None, &reads(&["SLACK_TOKEN"]))).0)[0]["version"],
        2,
        "the environment's value is at version 2"
    );
    // The same refusals as get-secret: another environment, a bad name.
    let p = json!({"reads": [
        {"name": "SLACK_TOKEN", "environment": "staging"},
        {"name": "bad name"},
        {"name": "NOPE"},
    ]})
    .to_string();
    let (r, _) = results(&h.run_of("new", "t", "prod", None, &p));
    assert_eq!(r[0]["error"], "access-denied");
    assert!(r[1]["error"].as_str().unwrap().starts_with("invalid-name"));
    assert_eq!(r[2]["error"], "not-found");
}
