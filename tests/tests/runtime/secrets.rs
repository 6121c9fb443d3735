//! `get-secret` from real guests: scope resolution, overrides, grants, live
//! changes, hostile arguments, and scrubbing of revealed values.

use keyhole_runtime::{DeploySpec, Grants, Outcome};
use keyhole_store::Scope;
use keyhole_tests::*;
use serde_json::{Value, json};

fn results(record: &keyhole_runtime::RunRecord) -> Vec<Value> {
    let Outcome::Ok { value } = &record.outcome else {
        panic!("run failed: {:?}", record.outcome)
    };
    let v: Value = serde_json::from_str(value).expect("reader returns JSON");
    v["results"].as_array().unwrap().clone()
}

fn reads(reads: Value) -> String {
    json!({ "reads": reads }).to_string()
}

/// Acceptance: space override, environment fallback, and a changed value seen
/// without redeploying.
#[test]
pub fn secret_reader() {
    let h = Harness::new();
    h.scopes("prod", &["team-a", "team-b"]);
    h.set(
        Scope::Environment("prod".into()),
        "SLACK_TOKEN",
        "xoxb-env-1",
    );
    h.set(Scope::Space("team-a".into()), "SLACK_TOKEN", "xoxb-team-a");
    h.deploy(SECRET_READER, DeploySpec::new("reader", "prod"));
    let p = reads(json!([{ "name": "SLACK_TOKEN" }]));

    let r = results(&h.run_of("reader", "records:created", "prod", Some("team-a"), &p));
    assert_eq!(r[0]["fnv"], fnv("xoxb-team-a"), "space override wins");
    let r = results(&h.run_of("reader", "records:created", "prod", Some("team-b"), &p));
    assert_eq!(
        r[0]["fnv"],
        fnv("xoxb-env-1"),
        "space without override falls back"
    );
    let r = results(&h.run_of("reader", "records:created", "prod", None, &p));
    assert_eq!(
        r[0]["fnv"],
        fnv("xoxb-env-1"),
        "no space reads the environment"
    );

    h.set(
        Scope::Environment("prod".into()),
        "SLACK_TOKEN",
        "xoxb-env-2",
    );
    let r = results(&h.run_of("reader", "records:created", "prod", None, &p));
    assert_eq!(r[0]["fnv"], fnv("xoxb-env-2"), "new value without redeploy");

    assert!(
        h.store()
            .delete_secret(&Scope::Space("team-a".into()), "SLACK_TOKEN")
            .unwrap()
    );
    let r = results(&h.run_of("reader", "records:created", "prod", Some("team-a"), &p));
    assert_eq!(
        r[0]["fnv"],
        fnv("xoxb-env-2"),
        "deleted override falls back"
    );

    // Explicit scopes within the own environment.
    h.set(Scope::Space("team-b".into()), "SLACK_TOKEN", "xoxb-team-b");
    let p = reads(json!([
        { "name": "SLACK_TOKEN", "environment": "prod" },
        { "name": "SLACK_TOKEN", "space": "team-b" },
        { "name": "MISSING" },
        { "name": "9bad" },
    ]));
    let run = h.run_of("reader", "x", "prod", Some("team-a"), &p);
    assert_eq!(
        run.secrets_read,
        ["SLACK_TOKEN"],
        "names read, each once, never values"
    );
    let r = results(&run);
    assert_eq!(r[0]["fnv"], fnv("xoxb-env-2"));
    assert_eq!(r[1]["fnv"], fnv("xoxb-team-b"));
    assert_eq!(r[2]["error"], "not-found");
    assert!(
        r[3]["error"].as_str().unwrap().starts_with("invalid-name"),
        "{}",
        r[3]
    );
}

/// Acceptance: another environment is access-denied without a grant, and
/// readable with one. Denial does not reveal whether the name exists.
#[test]
fn cross_environment_needs_a_grant() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.scopes("staging", &["qa"]);
    h.set(
        Scope::Environment("staging".into()),
        "DB_PASSWORD",
        "staging-pw",
    );
    h.set(Scope::Space("qa".into()), "DB_PASSWORD", "qa-pw");
    h.deploy(SECRET_READER, DeploySpec::new("nogrant", "prod"));
    let mut granted = DeploySpec::new("granted", "prod");
    granted.grants = Grants {
        environments: vec!["staging".into()],
        spaces: vec![],
    };
    h.deploy(SECRET_READER, granted);
    let mut space_only = DeploySpec::new("spacegrant", "prod");
    space_only.grants = Grants {
        environments: vec![],
        spaces: vec!["qa".into()],
    };
    h.deploy(SECRET_READER, space_only);

    let p = reads(json!([
        { "name": "DB_PASSWORD", "environment": "staging" },
        { "name": "NO_SUCH_NAME", "environment": "staging" },
        { "name": "DB_PASSWORD", "space": "qa" },
    ]));
    let runs = h.emit("x", "prod", None, &p);
    let by = |n: &str| results(runs.iter().find(|r| r.listener == n).unwrap());

    let r = by("nogrant");
    assert_eq!(r[0]["error"], "access-denied");
    assert_eq!(
        r[1]["error"], "access-denied",
        "denial says nothing about existence"
    );
    assert_eq!(r[2]["error"], "access-denied");

    let r = by("granted");
    assert_eq!(r[0]["fnv"], fnv("staging-pw"));
    assert_eq!(r[1]["error"], "not-found");
    assert_eq!(
        r[2]["fnv"],
        fnv("qa-pw"),
        "a space named alone reads from its own environment"
    );

    let r = by("spacegrant");
    assert_eq!(r[0]["error"], "access-denied");
    assert_eq!(r[2]["fnv"], fnv("qa-pw"));
}

/// A scope id tells a listener nothing about which spaces exist: a space of
/// another environment and a space that exists nowhere get the same answer,
/// whether the name exists or not, named alone or with an environment.
/// Reads of the own environment's spaces and of granted spaces still work.
#[test]
fn space_ids_reveal_nothing_about_existence() {
    let h = Harness::new();
    h.scopes("prod", &["team-a"]);
    h.scopes("staging", &["qa"]);
    h.set(Scope::Space("team-a".into()), "DB_PASSWORD", "team-a-pw");
    h.set(Scope::Space("qa".into()), "DB_PASSWORD", "qa-pw");
    h.deploy(SECRET_READER, DeploySpec::new("nogrant", "prod"));
    let mut space_only = DeploySpec::new("spacegrant", "prod");
    space_only.grants = Grants {
        environments: vec![],
        spaces: vec!["qa".into()],
    };
    h.deploy(SECRET_READER, space_only);

    // Each scope once with the foreign space `qa`, once with `no-such`.
    let scopes = [
        json!({}),
        json!({ "environment": "prod" }),
        json!({ "environment": "staging" }),
        json!({ "environment": "no-such-env" }),
    ];
    let mut list = Vec::new();
    for scope in &scopes {
        for space in ["qa", "no-such"] {
            for name in ["DB_PASSWORD", "NO_SUCH_NAME"] {
                let mut read = scope.clone();
                read["space"] = json!(space);
                read["name"] = json!(name);
                list.push(read);
            }
        }
    }
    // The own environment's space, and a granted one.
    list.push(json!({ "name": "DB_PASSWORD", "space": "team-a" }));
    list.push(json!({ "name": "NO_SUCH_NAME", "space": "team-a" }));
    list.push(json!({ "name": "DB_PASSWORD", "environment": "prod", "space": "team-a" }));
    list.push(json!({ "name": "DB_PASSWORD", "space": "qa" }));
    let runs = h.emit("x", "prod", None, &reads(json!(list)));
    let by = |n: &str| results(runs.iter().find(|r| r.listener == n).unwrap());

    let r = by("nogrant");
    for (i, scope) in scopes.iter().enumerate() {
        let group = &r[i * 4..i * 4 + 4];
        for name in 0..2 {
            assert_eq!(
                group[name]["error"],
                group[2 + name]["error"],
                "scope {scope} with name {}: a foreign space (left) and a missing one (right) differ",
                group[name]["name"]
            );
        }
    }
    assert_eq!(
        r[0]["error"], "access-denied",
        "a foreign space named alone"
    );
    assert_eq!(
        r[2]["error"], "access-denied",
        "a missing space named alone"
    );
    assert_eq!(r[4]["error"], "not-found", "own environment, foreign space");
    assert_eq!(r[8]["error"], "access-denied", "another environment");
    assert_eq!(r[16]["fnv"], fnv("team-a-pw"), "own space named alone");
    assert_eq!(r[17]["error"], "not-found");
    assert_eq!(r[18]["fnv"], fnv("team-a-pw"), "own environment and space");
    assert_eq!(r[19]["error"], "access-denied");

    let r = by("spacegrant");
    assert_eq!(r[0]["fnv"], fnv("qa-pw"), "a granted space named alone");
    assert_eq!(r[1]["error"], "not-found");
    assert_eq!(
        r[2]["error"], "access-denied",
        "a missing space named alone"
    );
    assert_eq!(r[19]["fnv"], fnv("qa-pw"));
}

/// Acceptance: a 10 MiB name (and scope id) is refused with `invalid-name`
/// and the host never allocates anything near that size.
#[test]
pub fn huge_name() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", "v");
    h.deploy(HUGE_NAME, DeploySpec::new("huge", "prod"));
    // Warm up once so one-time allocations (lazy statics) are not counted.
    h.emit("x", "prod", None, "{}");
    let (runs, largest) =
        crate::alloc_probe::largest_allocation(|| h.emit("x", "prod", None, "{}"));
    let Outcome::Ok { value } = &runs[0].outcome else {
        panic!("{:?}", runs[0].outcome)
    };
    let lines: Vec<&str> = value.lines().collect();
    assert!(
        lines[0].starts_with("invalid-name: secret name is 10485760 bytes"),
        "{value}"
    );
    assert!(
        lines[1].starts_with("invalid-name: environment id is 10485760 bytes"),
        "{value}"
    );
    assert!(
        largest < 1 << 20,
        "host allocated {largest} bytes in one go"
    );
}

/// Acceptance: a listener that prints and returns its secret leaves only
/// `[redacted:NAME]` in the run record, and nowhere in the data directory.
#[test]
pub fn leaky() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    let planted = "xoxb-PLANTED-7d1e5a90";
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", planted);
    h.deploy(LEAKY, DeploySpec::new("leaky", "prod"));
    for payload in [
        r#"{"name":"SLACK_TOKEN"}"#,
        r#"{"name":"SLACK_TOKEN","fail":true}"#,
    ] {
        let run = h.run_of("leaky", "x", "prod", None, payload);
        let text = serde_json::to_string(&run).unwrap();
        assert!(
            !text.contains(planted),
            "value leaked into the run record: {text}"
        );
        assert!(
            run.stdout.contains("the secret is [redacted:SLACK_TOKEN]"),
            "{}",
            run.stdout
        );
        assert!(
            run.stderr.contains("[redacted:SLACK_TOKEN]"),
            "{}",
            run.stderr
        );
        match &run.outcome {
            Outcome::Ok { value } => assert_eq!(value, "returned [redacted:SLACK_TOKEN]"),
            Outcome::GuestError { message } => {
                assert_eq!(message, "failing with [redacted:SLACK_TOKEN]")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(run.secrets_read, vec!["SLACK_TOKEN".to_string()]);
    }
    let stored = h.runtime.runs(Some("leaky"), 10).unwrap();
    assert_eq!(stored.len(), 2);
    h.runtime.flush().unwrap();
    assert!(
        !contains(&all_bytes(&h.data_dir()), planted),
        "planted value found in the data directory"
    );
}

/// A returned value longer than the record keeps is cut, with a note, and
/// the record stays small: run records are a log, not a data channel.
#[test]
fn a_long_returned_value_is_cut_in_the_record() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.deploy(SECRET_READER, DeploySpec::new("reader", "prod"));
    // 3,000 not-found reads: about 130 KB of JSON returned.
    let many: Vec<Value> = (0..3000)
        .map(|i| json!({ "name": format!("MISSING_{i:05}") }))
        .collect();
    let run = h.run_of(
        "reader",
        "records:created",
        "prod",
        None,
        &reads(json!(many)),
    );
    let Outcome::Ok { value } = &run.outcome else {
        panic!("run failed: {:?}", run.outcome)
    };
    let limit = keyhole_runtime::dispatch::OUTCOME_TEXT_LIMIT;
    let (kept, note) = value.split_at(limit);
    assert!(
        kept.starts_with('{') && kept.contains(r#""name":"MISSING_00000""#),
        "{}",
        &kept[..200]
    );
    assert!(
        note.starts_with("…[") && note.ends_with(" more bytes not recorded]"),
        "{note}"
    );
    let dropped: usize = note
        .trim_start_matches("…[")
        .trim_end_matches(" more bytes not recorded]")
        .parse()
        .unwrap();
    assert!(dropped > 50_000, "{dropped}");
}
