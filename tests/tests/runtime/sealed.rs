//! A sealed store fails events before any listener runs, and a failure of
//! the store that a guest does meet reaches it without the host's paths.

use std::path::Path;

use keyhole_runtime::{
    DeploySpec, Event, Outcome, RunRecord, Runtime, RuntimeConfig, RuntimeError,
};
use keyhole_store::{KeySource, Scope, SecretStore, StoreError};
use keyhole_tests::*;
use serde_json::{Value, json};

const READ_K: &str = r#"{"reads": [{"name": "K"}]}"#;

/// `prod` with `K` set and the `secret-reader` guest deployed as `reader`.
fn reader_install() -> Harness {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.set(Scope::Environment("prod".into()), "K", "value-one");
    h.deploy(SECRET_READER, DeploySpec::new("reader", "prod"));
    h
}

/// Opens the runtime on `dir`'s data directory with `key`, as a restart
/// would.
fn open_with_key(dir: &Path, key: KeySource) -> Runtime {
    let data = dir.join("data");
    let store = SecretStore::open(&data, key).expect("open store");
    Runtime::open(store, &data, RuntimeConfig::default()).expect("open runtime")
}

fn sealed_reason(result: Result<Vec<RunRecord>, RuntimeError>) -> String {
    match result {
        Err(RuntimeError::Store(StoreError::Sealed { reason })) => reason,
        other => panic!("expected the sealed error, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn a_sealed_store_fails_events_before_any_listener_runs() {
    use std::os::unix::fs::PermissionsExt;
    for how in ["missing", "readable by others"] {
        let h = reader_install();
        assert_eq!(
            h.emit("t", "prod", None, READ_K).len(),
            1,
            "{how}: runs unsealed"
        );
        let key = h.dir.path().join("master.key");
        let expect = if how == "missing" {
            std::fs::rename(&key, h.dir.path().join("elsewhere.key")).unwrap();
            format!("master key not available at {}", key.display())
        } else {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            format!(
                "key file {} is readable by others (mode 0644); run: chmod 600 {}",
                key.display(),
                key.display()
            )
        };
        let Harness { dir, runtime } = h;
        runtime.flush().unwrap();
        drop(runtime);
        let rt = open_with_key(dir.path(), KeySource::File(key.clone()));
        assert!(rt.store().is_sealed(), "{how}");
        let before = rt.runs(None, 100).unwrap().len();

        let event = Event::new("t", "prod", None).with_payload(READ_K);
        assert_eq!(sealed_reason(rt.emit_blocking(&event)), expect, "{how}");
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        assert_eq!(
            sealed_reason(tokio.block_on(rt.emit(event))),
            expect,
            "{how}"
        );
        // A bad event is still the caller's error first.
        assert!(matches!(
            rt.emit_blocking(&Event::new("t", "nowhere", None)),
            Err(RuntimeError::Store(StoreError::UnknownEnvironment(_)))
        ));
        assert_eq!(
            rt.runs(None, 100).unwrap().len(),
            before,
            "{how}: nothing ran"
        );
    }
}

/// A guest whose read fails because the store cannot unwrap a key: here
/// another host on the same backend rotated the master key into a key file
/// of its own and then the data key, so this host's key file lacks the
/// version the new data key is wrapped under. The store's error names this
/// host's key file; the guest is told only that the store is unavailable,
/// and the run record's notes say why.
#[test]
fn a_store_failure_reaches_the_guest_without_a_path() {
    let h = reader_install();
    let ok = h.run_of("reader", "t", "prod", None, READ_K);
    assert_eq!(results(&ok)[0]["fnv"], fnv("value-one"));

    let own_key = h.dir.path().join("master.key");
    let other_key = h.dir.path().join("other-host.key");
    std::fs::copy(&own_key, &other_key).unwrap();
    let other = SecretStore::open_on(
        h.store().backend().clone(),
        KeySource::File(other_key.clone()),
    )
    .unwrap();
    other.rotate_kek().unwrap();
    other
        .rotate_dek(&Scope::Environment("prod".into()))
        .unwrap();

    let run = h.run_of("reader", "t", "prod", None, READ_K);
    let error = results(&run)[0]["error"].as_str().unwrap().to_owned();
    assert_eq!(error, "unavailable: secret store unavailable");
    let dir = h.dir.path().to_str().unwrap();
    assert!(!error.contains(dir), "{error}");
    let notes = run.notes.join("\n");
    assert!(
        notes.contains("get-secret K:") && notes.contains(own_key.to_str().unwrap()),
        "the operator learns why: {notes}"
    );
    // Many failing calls in one run make one note, not one each.
    let many = json!({ "reads": vec![json!({"name": "K"}); 50] }).to_string();
    let run = h.run_of("reader", "t", "prod", None, &many);
    assert_eq!(run.notes.len(), 1, "{:?}", run.notes);
}

fn results(record: &RunRecord) -> Vec<Value> {
    let Outcome::Ok { value } = &record.outcome else {
        panic!("run failed: {:?}", record.outcome)
    };
    let v: Value = serde_json::from_str(value).expect("reader returns JSON");
    v["results"].as_array().unwrap().clone()
}
