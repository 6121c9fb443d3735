//! The audit log from real guests: one entry per `get-secret` call with
//! where the value came from, never the value; and a log that cannot write
//! turns reads into `unavailable` (nothing revealed) until it heals.

use keyhole_audit::{AuditQuery, Entry, ReadOutcome};
use keyhole_runtime::{DeploySpec, Grants, Outcome, RuntimeConfig};
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

/// Every read of a run, oldest first: (name, outcome, resolved scope,
/// provenance, version).
type Read = (String, ReadOutcome, Option<(String, String, u64)>);

/// The `SecretRead` entries of one event, oldest first.
pub(crate) fn secret_reads(h: &Harness, event_id: &str) -> Vec<Entry> {
    let audit = h.runtime.audit().expect("audited");
    let query = AuditQuery {
        limit: 1000,
        ..Default::default()
    };
    let mut out: Vec<Entry> = audit
        .query(&query)
        .unwrap()
        .into_iter()
        .map(|r| r.entry)
        .filter(|e| matches!(e, Entry::SecretRead { event_id: id, .. } if *id == event_id))
        .collect();
    out.reverse();
    out
}

fn reads_of(h: &Harness, event_id: &str) -> Vec<Read> {
    secret_reads(h, event_id)
        .into_iter()
        .filter_map(|e| match e {
            Entry::SecretRead {
                name,
                outcome,
                resolved,
                deployment,
                module_sha256,
                ..
            } => {
                assert_eq!(deployment, "reader");
                assert_eq!(module_sha256.len(), 64);
                Some((
                    name,
                    outcome,
                    resolved.map(|r| (r.scope, r.provenance, r.version)),
                ))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn every_get_secret_call_is_one_entry_with_its_provenance() {
    let h = Harness::new();
    h.scopes("prod", &["team-a", "team-b"]);
    h.scopes("staging", &[]);
    let planted = "xoxb-AUDIT-PLANTED-93c1";
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", planted);
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", planted);
    h.set(
        Scope::Space("team-a".into()),
        "SLACK_TOKEN",
        &format!("{planted}-a"),
    );
    let mut spec = DeploySpec::new("reader", "prod");
    spec.grants = Grants::default();
    h.deploy(SECRET_READER, spec);
    let payload = json!({ "reads": [
        { "name": "SLACK_TOKEN", "space": "team-a" },
        { "name": "SLACK_TOKEN", "space": "team-b" },
        { "name": "SLACK_TOKEN" },
        { "name": "MISSING" },
        { "name": "9bad" },
        { "name": "SLACK_TOKEN", "environment": "staging" },
    ]})
    .to_string();
    let run = h.run_of("reader", "x", "prod", Some("team-a"), &payload);
    let r = results(&run);
    assert_eq!(r[0]["fnv"], fnv(&format!("{planted}-a")));
    let reads = reads_of(&h, &run.event_id);
    let owned = |s: &str, p: &str, v: u64| Some((s.to_string(), p.to_string(), v));
    assert_eq!(
        reads,
        vec![
            (
                "SLACK_TOKEN".into(),
                ReadOutcome::Ok,
                owned("space:team-a", "space-override", 1)
            ),
            (
                "SLACK_TOKEN".into(),
                ReadOutcome::Ok,
                owned("env:prod", "environment", 2)
            ),
            (
                "SLACK_TOKEN".into(),
                ReadOutcome::Ok,
                owned("space:team-a", "space-override", 1)
            ),
            ("MISSING".into(), ReadOutcome::NotFound, None),
            ("9bad".into(), ReadOutcome::InvalidName, None),
            ("SLACK_TOKEN".into(), ReadOutcome::AccessDenied, None),
        ],
        "one entry per call, two spaces give two entries"
    );
    let audit = h.runtime.audit().unwrap();
    assert!(audit.verify().unwrap().ok());
    h.runtime.flush().unwrap();
    assert!(
        !contains(&all_bytes(&h.data_dir().join("audit")), planted),
        "a value reached the audit log"
    );
}

#[test]
fn a_failing_audit_log_fails_closed_and_recovers() {
    // A small log, so a new segment file is needed every few entries.
    let h = Harness::with_config(RuntimeConfig {
        max_audit_entries: 64,
        ..RuntimeConfig::default()
    });
    h.scopes("prod", &[]);
    let planted = "xoxb-FAIL-CLOSED-5e7a";
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", planted);
    h.deploy(SECRET_READER, DeploySpec::new("reader", "prod"));
    let payload = json!({ "reads": [{ "name": "SLACK_TOKEN" }] }).to_string();
    let read = |h: &Harness| h.run_of("reader", "x", "prod", None, &payload);
    assert_eq!(results(&read(&h))[0]["fnv"], fnv(planted));

    // Break the disk under the log: its directory is replaced by a file,
    // so the next segment cannot be created.
    let dir = h.data_dir().join("audit");
    let away = h.data_dir().join("audit.away");
    std::fs::rename(&dir, &away).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    // The writer finds out at its next batch: give it the time to try.
    let refused = (0..300)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            read(&h)
        })
        .find(|run| results(run)[0]["error"] == "unavailable: audit log unavailable")
        .expect("reads fail closed once the log cannot write");
    let text = serde_json::to_string(&refused).unwrap();
    assert!(!text.contains(&fnv(planted)) && !text.contains(planted));
    assert!(
        refused
            .notes
            .iter()
            .any(|n| n.contains("audit log unavailable")),
        "the record says why: {:?}",
        refused.notes
    );
    assert!(h.runtime.audit().unwrap().failing().is_some());

    // Heal it: service comes back by itself, and nothing accepted is lost.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&away, &dir).unwrap();
    let healed = (0..500).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        results(&read(&h))[0]["fnv"] == fnv(planted)
    });
    assert!(healed, "reads did not recover");
    let audit = h.runtime.audit().unwrap();
    audit.sync(std::time::Duration::from_secs(10)).unwrap();
    let report = audit.verify().unwrap();
    assert!(report.ok(), "{report:?}");
}
