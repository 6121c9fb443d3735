//! Least privilege from real guests, part one: declared secrets
//! (`DeploySpec::secrets`) and topic-bound secrets. Every denial is the
//! same `access-denied` a guest gets for a scope it was not granted, and
//! the run record's notes and the audit entry's reason say which rule
//! denied it. (Grants bound to the module: `grant_binding.rs`.)

use keyhole_audit::{Entry, ReadOutcome};
use keyhole_runtime::{DeploySpec, Outcome, RunRecord, RuntimeError};
use keyhole_store::{Scope, SecretValue};
use keyhole_tests::*;
use serde_json::{Value, json};

pub(crate) fn results(record: &RunRecord) -> Vec<Value> {
    let Outcome::Ok { value } = &record.outcome else {
        panic!("run failed: {:?}", record.outcome)
    };
    let v: Value = serde_json::from_str(value).expect("reader returns JSON");
    v["results"].as_array().unwrap().clone()
}

pub(crate) fn reads(reads: Value) -> String {
    json!({ "reads": reads }).to_string()
}

/// The audit entries of one event's reads, oldest first: (name, outcome,
/// reason).
pub(crate) fn audited(h: &Harness, event_id: &str) -> Vec<(String, ReadOutcome, Option<String>)> {
    crate::audit::secret_reads(h, event_id)
        .into_iter()
        .filter_map(|e| match e {
            Entry::SecretRead {
                name,
                outcome,
                reason,
                ..
            } => Some((name, outcome, reason)),
            _ => None,
        })
        .collect()
}

fn prod() -> Scope {
    Scope::Environment("prod".into())
}

/// Acceptance: a declared name is read, an undeclared one is
/// access-denied before any lookup (so whether it exists makes no
/// difference), a glob declares every name it matches; the denial is the
/// one a scope not granted gets, and the notes and audit say why.
#[test]
fn declared_secrets_limit_the_names_a_listener_reads() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.scopes("staging", &[]);
    for (name, value) in [
        ("SLACK_TOKEN", "xoxb-1"),
        ("SLACK_HOOK", "hook-1"),
        ("DB_URL", "postgres://x"),
        ("OTHER", "other-1"),
    ] {
        h.set(prod(), name, value);
    }
    h.set(Scope::Environment("staging".into()), "DB_URL", "staging");
    let mut spec = DeploySpec::new("reader", "prod");
    spec.secrets = vec!["SLACK_*".into(), "DB_URL".into()];
    h.deploy(SECRET_READER, spec);
    h.deploy(SECRET_READER, DeploySpec::new("open", "prod"));
    let p = reads(json!([
        { "name": "SLACK_TOKEN" },
        { "name": "SLACK_HOOK" },
        { "name": "DB_URL" },
        { "name": "OTHER" },
        { "name": "NO_SUCH_NAME" },
        { "name": "SLACK_MISSING" },
        { "name": "DB_URL", "environment": "staging" },
    ]));
    let runs = h.emit("x", "prod", None, &p);
    let run = runs.iter().find(|r| r.listener == "reader").unwrap();
    let r = results(run);
    assert_eq!(r[0]["fnv"], fnv("xoxb-1"), "declared by a glob");
    assert_eq!(r[1]["fnv"], fnv("hook-1"));
    assert_eq!(r[2]["fnv"], fnv("postgres://x"), "declared by name");
    assert_eq!(r[3]["error"], "access-denied", "undeclared");
    assert_eq!(
        r[4]["error"], "access-denied",
        "existence makes no difference"
    );
    assert_eq!(r[5]["error"], "not-found", "declared, not set");
    assert_eq!(r[6]["error"], "access-denied", "scope not granted");
    assert_eq!(run.secrets_read, ["SLACK_TOKEN", "SLACK_HOOK", "DB_URL"]);
    for name in ["OTHER", "NO_SUCH_NAME"] {
        let note =
            format!("get-secret {name}: access-denied (name not declared by the deployment)");
        assert!(run.notes.contains(&note), "{:?}", run.notes);
    }
    let undeclared = Some("name not declared by the deployment".to_string());
    let entries = audited(&h, &run.event_id);
    let of = |n: &'static str| entries.iter().filter(move |(name, ..)| name == n);
    for name in ["OTHER", "NO_SUCH_NAME"] {
        let denied: Vec<_> = of(name).collect();
        assert_eq!(denied.len(), 2, "one per listener: {entries:?}");
        assert!(denied.contains(&&(name.into(), ReadOutcome::AccessDenied, undeclared.clone())));
    }
    assert!(
        of("DB_URL").any(
            |e| e.1 == ReadOutcome::AccessDenied && e.2.as_deref() == Some("scope not granted")
        ),
        "{entries:?}"
    );
    // Without declared secrets, every name in the scope (today's rule).
    let open = results(runs.iter().find(|r| r.listener == "open").unwrap());
    assert_eq!(open[3]["fnv"], fnv("other-1"));
    assert_eq!(open[4]["error"], "not-found");
}

/// Acceptance: bad patterns are refused at deploy, in the user's terms,
/// and nothing is stored.
#[test]
fn bad_secret_patterns_are_refused_at_deploy() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    for (pattern, says) in [
        ("SLACK TOKEN", "may contain only"),
        ("1PASSWORD", "must start with a letter or '_'"),
        ("SLACK_[", "unclosed character class"),
        ("", "1-256 characters"),
    ] {
        let mut spec = DeploySpec::new("reader", "prod");
        spec.secrets = vec![pattern.into()];
        let e = h.runtime.deploy(spec, &wasm(SECRET_READER)).unwrap_err();
        assert!(matches!(e, RuntimeError::InvalidSpec(_)), "{e:?}");
        assert!(e.to_string().contains(says), "{pattern:?}: {e}");
    }
    assert!(h.runtime.deployments().is_empty());
}

/// Acceptance: a topic-bound secret is read during a matching event and
/// access-denied during any other; a space override carries its own
/// binding.
#[test]
fn topic_bound_secrets_are_read_only_on_matching_topics() {
    let h = Harness::new();
    h.scopes("prod", &["team-a"]);
    let set = |scope: Scope, name: &str, value: &str, topics: &[&str]| {
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        h.store()
            .set_secret_with_topics(&scope, name, &SecretValue::new(value.into()), Some(&topics))
            .unwrap();
    };
    set(prod(), "HOOK", "hook-env", &["action:*"]);
    set(
        Scope::Space("team-a".into()),
        "HOOK",
        "hook-a",
        &["records:*"],
    );
    h.set(prod(), "PLAIN", "plain");
    h.deploy(SECRET_READER, DeploySpec::new("reader", "prod"));
    let p = reads(json!([{ "name": "HOOK" }, { "name": "PLAIN" }]));

    let run = h.run_of("reader", "action:triggered", "prod", None, &p);
    let r = results(&run);
    assert_eq!(r[0]["fnv"], fnv("hook-env"));
    assert_eq!(r[1]["fnv"], fnv("plain"));
    assert!(run.notes.is_empty(), "{:?}", run.notes);

    let run = h.run_of("reader", "records:created", "prod", None, &p);
    let r = results(&run);
    assert_eq!(r[0]["error"], "access-denied");
    assert_eq!(r[1]["fnv"], fnv("plain"), "unbound: every topic");
    assert_eq!(run.secrets_read, ["PLAIN"]);
    assert_eq!(
        run.notes,
        ["get-secret HOOK: access-denied (secret bound to other topics)"]
    );
    let entries = audited(&h, &run.event_id);
    assert_eq!(
        entries[0],
        (
            "HOOK".into(),
            ReadOutcome::AccessDenied,
            Some("secret bound to other topics".into())
        )
    );

    // The space's override has its own binding, and it decides.
    let r = results(&h.run_of("reader", "records:created", "prod", Some("team-a"), &p));
    assert_eq!(r[0]["fnv"], fnv("hook-a"));
    let r = results(&h.run_of("reader", "action:triggered", "prod", Some("team-a"), &p));
    assert_eq!(r[0]["error"], "access-denied");
    // An explicit scope does not get around a binding.
    let explicit = reads(json!([{ "name": "HOOK", "environment": "prod" }]));
    let r = results(&h.run_of("reader", "records:created", "prod", None, &explicit));
    assert_eq!(r[0]["error"], "access-denied");
}
