//! Deleting environments and spaces with their listeners, finishing a
//! deletion a crash interrupted when the runtime opens, and what a
//! redeploy reports.

use keyhole_runtime::{DeploySpec, RuntimeError};
use keyhole_store::{Scope, StoreError};
use keyhole_tests::{Harness, PURE_READER, SECRET_READER, wasm};

fn env(id: &str) -> Scope {
    Scope::Environment(id.into())
}

fn names(h: &Harness) -> Vec<String> {
    h.runtime
        .deployments()
        .into_iter()
        .map(|d| d.spec.name)
        .collect()
}

fn listeners_run(h: &Harness, environment: &str) -> Vec<String> {
    h.emit("t", environment, None, "{}")
        .into_iter()
        .map(|r| r.listener)
        .collect()
}

/// prod (spaces team-a, team-b) with 3 secrets and 2 listeners; staging
/// with one of each.
fn populated() -> Harness {
    let h = Harness::new();
    h.scopes("prod", &["team-a", "team-b"]);
    h.scopes("staging", &[]);
    h.set(env("prod"), "SLACK_TOKEN", "prod-token");
    h.set(env("prod"), "OTHER", "x");
    h.set(Scope::Space("team-a".into()), "SLACK_TOKEN", "a-token");
    h.set(env("staging"), "SLACK_TOKEN", "staging-token");
    h.deploy(PURE_READER, DeploySpec::new("reader", "prod"));
    let mut in_a = DeploySpec::new("in-a", "prod");
    in_a.space = Some("team-a".into());
    h.deploy(PURE_READER, in_a);
    h.deploy(PURE_READER, DeploySpec::new("elsewhere", "staging"));
    h
}

#[test]
fn an_environment_goes_with_its_listeners_and_no_event_runs_them() {
    let h = populated();
    let rt = &h.runtime;
    let err = rt.delete_scope(&env("prod"), false).unwrap_err();
    let RuntimeError::NotEmpty { holdings, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(holdings.listeners, ["in-a", "reader"]);
    assert_eq!(
        err.to_string(),
        "environment prod still holds 3 secrets, 2 spaces and 2 listeners"
    );
    assert_eq!(listeners_run(&h, "prod"), ["reader"], "refused: untouched");

    let done = rt.delete_scope(&env("prod"), true).unwrap();
    assert!(done.forced);
    assert_eq!((done.secrets, done.data_keys), (3, 2));
    assert_eq!(done.spaces, ["team-a", "team-b"]);
    assert_eq!(done.listeners, ["in-a", "reader"]);
    assert_eq!(names(&h), ["elsewhere"]);
    let event = keyhole_runtime::Event::new("t", "prod", Some("team-a"));
    assert!(matches!(
        rt.emit_blocking(&event),
        Err(RuntimeError::Store(StoreError::UnknownEnvironment(_)))
    ));
    // Created again: nothing of the old environment runs in it.
    h.scopes("prod", &["team-a"]);
    assert!(listeners_run(&h, "prod").is_empty());
    assert!(h.emit("t", "prod", Some("team-a"), "{}").is_empty());
    assert_eq!(listeners_run(&h, "staging"), ["elsewhere"]);
    let h = h.restart();
    assert_eq!(names(&h), ["elsewhere"]);
    assert!(listeners_run(&h, "prod").is_empty());
}

#[test]
fn a_space_goes_with_its_own_listeners_only() {
    let h = populated();
    let team_a = Scope::Space("team-a".into());
    let err = h.runtime.delete_scope(&team_a, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "space team-a still holds 1 secret and 1 listener"
    );
    let done = h.runtime.delete_scope(&team_a, true).unwrap();
    assert_eq!(
        (done.secrets, done.listeners.as_slice()),
        (1, &["in-a".to_string()][..])
    );
    assert_eq!(names(&h), ["elsewhere", "reader"]);
    assert_eq!(listeners_run(&h, "prod"), ["reader"]);
    // An empty space needs no force.
    let team_b = Scope::Space("team-b".into());
    assert!(!h.runtime.delete_scope(&team_b, false).unwrap().forced);
}

#[test]
fn a_deletion_interrupted_after_its_mark_is_finished_when_the_runtime_opens() {
    let h = populated();
    // The process stopped right after marking: everything is still there,
    // but prod is already gone for events and deploys.
    assert!(h.store().begin_delete(&env("prod"), true).unwrap());
    let event = keyhole_runtime::Event::new("t", "prod", None);
    assert!(h.runtime.emit_blocking(&event).is_err());
    let redeploy = h
        .runtime
        .deploy(DeploySpec::new("late", "prod"), &wasm(PURE_READER));
    assert!(matches!(
        redeploy,
        Err(RuntimeError::Store(StoreError::UnknownEnvironment(_)))
    ));
    assert_eq!(names(&h), ["elsewhere", "in-a", "reader"]);

    let h = h.restart();
    assert_eq!(names(&h), ["elsewhere"]);
    assert!(h.store().pending_deletions().unwrap().is_empty());
    assert!(h.store().environment("prod").unwrap().is_none());
    assert!(h.store().space("team-a").unwrap().is_none());
    let bucket = h.store().backend().bucket("store").unwrap();
    for prefix in ["dek/env=prod/", "dek/space=team-a/", "secret/env=prod/"] {
        assert!(
            bucket.scan(prefix.as_bytes()).unwrap().is_empty(),
            "{prefix}"
        );
    }
    assert_eq!(listeners_run(&h, "staging"), ["elsewhere"]);
}

#[test]
fn an_unforced_deletion_interrupted_while_something_landed_is_cancelled_at_open() {
    let h = populated();
    // Marked unforced, as if the first count found prod empty and a write
    // landed before the mark; then the process stopped.
    assert!(!h.store().begin_delete(&env("prod"), false).unwrap());
    let h = h.restart();
    assert!(h.store().pending_deletions().unwrap().is_empty());
    assert!(
        h.store().environment("prod").unwrap().is_some(),
        "cancelled"
    );
    assert_eq!(listeners_run(&h, "prod"), ["reader"]);
    let got = h
        .store()
        .resolve("prod", Some("team-a"), "SLACK_TOKEN")
        .unwrap();
    assert_eq!(got.value.expose(), "a-token");
}

#[test]
fn a_redeploy_reports_the_module_it_replaced() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    let rt = &h.runtime;
    let first = rt
        .deploy_replacing(DeploySpec::new("l", "prod"), &wasm(PURE_READER))
        .unwrap();
    assert_eq!(first.previous_module_hash, None);
    let second = rt
        .deploy_replacing(DeploySpec::new("l", "prod"), &wasm(SECRET_READER))
        .unwrap();
    assert_eq!(
        second.previous_module_hash.as_deref(),
        Some(first.deployment.module_hash.as_str())
    );
    assert_ne!(second.deployment.module_hash, first.deployment.module_hash);
    let again = rt
        .deploy_replacing(DeploySpec::new("l", "prod"), &wasm(SECRET_READER))
        .unwrap();
    assert_eq!(
        again.previous_module_hash,
        Some(second.deployment.module_hash)
    );
    assert_eq!(
        rt.deployment("l").unwrap().module_hash,
        again.deployment.module_hash
    );
}
