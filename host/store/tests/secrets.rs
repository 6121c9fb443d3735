//! Round trips, inheritance, listings and input validation.

mod common;

use common::*;
use keyhole_store::{
    Provenance, Scope, SecretStore, SecretValue, StoreError, validate_id, validate_name,
};

#[test]
fn env_and_space_round_trips_with_override_and_fallback() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;

    let m = s
        .set_secret(&env("prod"), "DB_URL", &val("postgres://env"))
        .unwrap();
    assert_eq!((m.version, m.scope.clone()), (1, env("prod")));
    assert_eq!(
        s.get_secret(&env("prod"), "DB_URL").unwrap().expose(),
        "postgres://env"
    );

    // Inherited by every space of the env.
    let r = s.resolve("prod", Some("team-a"), "DB_URL").unwrap();
    assert_eq!(r.value.expose(), "postgres://env");
    assert_eq!(
        (r.scope, r.provenance, r.version),
        (env("prod"), Provenance::Environment, 1)
    );

    // Override in one space only.
    s.set_secret(&space("team-a"), "DB_URL", &val("postgres://a"))
        .unwrap();
    let r = s.resolve("prod", Some("team-a"), "DB_URL").unwrap();
    assert_eq!(r.value.expose(), "postgres://a");
    assert_eq!(
        (r.scope, r.provenance),
        (space("team-a"), Provenance::SpaceOverride)
    );
    let r = s.resolve("prod", Some("team-b"), "DB_URL").unwrap();
    assert_eq!(r.value.expose(), "postgres://env");
    assert_eq!(
        s.resolve("prod", None, "DB_URL").unwrap().value.expose(),
        "postgres://env"
    );

    // get_secret is exact-scope: no fallback from space to env.
    assert!(matches!(
        s.get_secret(&space("team-b"), "DB_URL"),
        Err(StoreError::NotFound { .. })
    ));

    // Update bumps the version and keeps created_at.
    let m2 = s
        .set_secret(&env("prod"), "DB_URL", &val("postgres://env2"))
        .unwrap();
    assert_eq!(m2.version, 2);
    assert_eq!(m2.created_at_ms, m.created_at_ms);
    assert!(m2.updated_at_ms >= m.updated_at_ms);

    // Deleting the override falls back to the env value.
    assert!(s.delete_secret(&space("team-a"), "DB_URL").unwrap());
    assert!(!s.delete_secret(&space("team-a"), "DB_URL").unwrap());
    let r = s.resolve("prod", Some("team-a"), "DB_URL").unwrap();
    assert_eq!(r.value.expose(), "postgres://env2");
    assert_eq!((r.provenance, r.version), (Provenance::Environment, 2));

    // Deleting the env value: gone everywhere.
    assert!(s.delete_secret(&env("prod"), "DB_URL").unwrap());
    assert!(matches!(
        s.resolve("prod", Some("team-a"), "DB_URL"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn resolve_checks_space_membership_and_existence() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    s.set_secret(&space("team-s"), "K", &val("staging-space"))
        .unwrap();
    // Found in its own environment (and remembered), the space is still
    // refused in another.
    let r = s.resolve("staging", Some("team-s"), "K").unwrap();
    assert_eq!(r.value.expose(), "staging-space");
    assert!(matches!(
        s.resolve("prod", Some("team-s"), "K"),
        Err(StoreError::SpaceNotInEnvironment { .. })
    ));
    assert!(matches!(
        s.resolve("prod", Some("nope"), "K"),
        Err(StoreError::UnknownSpace(_))
    ));
    assert!(matches!(
        s.resolve("nope", None, "K"),
        Err(StoreError::UnknownEnvironment(_))
    ));
    assert!(matches!(
        s.set_secret(&space("nope"), "K", &val("x")),
        Err(StoreError::UnknownSpace(_))
    ));
    assert!(matches!(
        s.set_secret(&env("nope"), "K", &val("x")),
        Err(StoreError::UnknownEnvironment(_))
    ));
    assert!(matches!(
        s.resolve("prod", None, "bad name"),
        Err(StoreError::InvalidName { .. })
    ));
}

#[test]
fn event_scopes_are_checked_the_same_before_and_after_they_are_remembered() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    for _ in 0..2 {
        s.check_scope("prod", None).unwrap();
        s.check_scope("prod", Some("team-a")).unwrap();
        s.check_scope("staging", Some("team-s")).unwrap();
        assert!(matches!(
            s.check_scope("nope", None),
            Err(StoreError::UnknownEnvironment(_))
        ));
        assert!(matches!(
            s.check_scope("nope", Some("team-a")),
            Err(StoreError::UnknownEnvironment(_))
        ));
        assert!(matches!(
            s.check_scope("staging", Some("team-a")),
            Err(StoreError::SpaceNotInEnvironment { .. })
        ));
        assert!(matches!(
            s.check_scope("prod", Some("nope")),
            Err(StoreError::UnknownSpace(_))
        ));
        assert!(matches!(
            s.check_scope("bad id!", None),
            Err(StoreError::InvalidId { .. })
        ));
    }
}

#[test]
fn environments_and_spaces() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    assert!(matches!(
        s.create_environment("prod"),
        Err(StoreError::AlreadyExists(_))
    ));
    // Space ids are one namespace: the error names the owner, for the
    // caller to show or not.
    match s.create_space("team-a", "staging") {
        Err(StoreError::SpaceExists { space, environment }) => {
            assert_eq!((space.as_str(), environment.as_str()), ("team-a", "prod"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.create_space("x", "nope"),
        Err(StoreError::UnknownEnvironment(_))
    ));
    assert!(matches!(
        s.create_environment("bad id"),
        Err(StoreError::InvalidId { .. })
    ));
    let envs: Vec<String> = s
        .list_environments()
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(envs, ["prod", "staging"]);
    let spaces: Vec<String> = s
        .list_spaces(Some("prod"))
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(spaces, ["team-a", "team-b"]);
    assert_eq!(s.list_spaces(None).unwrap().len(), 3);
    assert_eq!(s.space("team-s").unwrap().unwrap().environment, "staging");
    assert!(s.space("zzz").unwrap().is_none());
    assert!(s.environment("prod").unwrap().is_some());
    assert!(matches!(
        s.list_spaces(Some("nope")),
        Err(StoreError::UnknownEnvironment(_))
    ));
}

#[test]
fn listings_show_provenance_and_never_values() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    s.set_secret(&env("prod"), "A", &val(PLANTED)).unwrap();
    s.set_secret(&env("prod"), "B", &val(PLANTED)).unwrap();
    s.set_secret(&space("team-a"), "B", &val(PLANTED)).unwrap();
    s.set_secret(&space("team-a"), "C", &val(PLANTED)).unwrap();

    let eff = s.list_effective("prod", Some("team-a")).unwrap();
    let got: Vec<(&str, Provenance, Scope)> = eff
        .iter()
        .map(|e| (e.meta.name.as_str(), e.provenance, e.meta.scope.clone()))
        .collect();
    assert_eq!(
        got,
        [
            ("A", Provenance::Environment, env("prod")),
            ("B", Provenance::SpaceOverride, space("team-a")),
            ("C", Provenance::SpaceOverride, space("team-a")),
        ]
    );
    let eff_b = s.list_effective("prod", Some("team-b")).unwrap();
    assert_eq!(eff_b.len(), 2);
    assert!(
        eff_b
            .iter()
            .all(|e| e.provenance == Provenance::Environment)
    );

    let list = s.list_secrets(&space("team-a")).unwrap();
    assert_eq!(
        list.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        ["B", "C"]
    );
    assert!(!format!("{list:?}{eff:?}").contains(PLANTED));
    let json = format!("{:?}", (&list, &eff));
    assert!(!json.contains(PLANTED));
}

#[test]
fn invalid_input_is_rejected_naming_the_rule_and_nothing_is_written() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    let before = snapshot(s);
    let long = "A".repeat(257);
    let cases: &[(&str, &str)] = &[
        ("", "must not be empty"),
        (&long, "at most 256"),
        ("BAD NAME", "may contain only"),
        ("BAD/NAME", "may contain only"),
        ("9LIVES", "must start with a letter or '_'"),
    ];
    for (name, rule) in cases {
        let err = s.set_secret(&env("prod"), name, &val("v")).unwrap_err();
        assert!(matches!(err, StoreError::InvalidName { .. }), "{err:?}");
        assert!(
            err.to_string().contains(rule),
            "{err} should mention {rule}"
        );
        assert!(err.to_string().len() < 200, "message is short: {err}");
        assert!(validate_name(name).is_err());
    }
    for (value, rule) in [
        (String::new(), "must not be empty"),
        ("x".repeat(64 * 1024 + 1), "at most 65536 bytes"),
    ] {
        let err = s
            .set_secret(&env("prod"), "OK", &SecretValue::new(value))
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidValue { .. }), "{err:?}");
        assert!(err.to_string().contains(rule), "{err}");
    }
    let err = s.set_secret(&env("bad:id"), "OK", &val("v")).unwrap_err();
    assert!(matches!(err, StoreError::InvalidId { .. }));
    assert!(validate_id(&"a".repeat(65)).is_err());
    assert_eq!(snapshot(s), before, "nothing written");
    assert!(store_bucket(s).scan(b"secret/").unwrap().is_empty());

    // The limits themselves are accepted.
    s.set_secret(
        &env("prod"),
        &"A".repeat(256),
        &SecretValue::new("x".repeat(64 * 1024)),
    )
    .unwrap();
    assert_eq!(
        s.get_secret(&env("prod"), &"A".repeat(256))
            .unwrap()
            .expose()
            .len(),
        65536
    );
}

#[test]
fn errors_and_values_never_print_the_value() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    let v = val(PLANTED);
    assert!(!format!("{v:?} {v}").contains(PLANTED));
    s.set_secret(&env("prod"), "P", &v).unwrap();
    let r = s.resolve("prod", None, "P").unwrap();
    assert!(!format!("{r:?}").contains(PLANTED));
    let errors = [
        s.set_secret(&env("prod"), "bad name", &v).unwrap_err(),
        s.set_secret(&env("prod"), "P", &SecretValue::new(PLANTED.repeat(3000)))
            .unwrap_err(),
        s.get_secret(&env("prod"), "MISSING").unwrap_err(),
        s.resolve("prod", Some("team-s"), "P").unwrap_err(),
        s.create_environment("prod").unwrap_err(),
    ];
    for e in &errors {
        assert!(!format!("{e} {e:?}").contains(PLANTED), "{e}");
    }
    assert!(!format!("{s:?}").contains(PLANTED));
}

/// A store dropped in this process must not make the next open report
/// "in use": the embedded backend's I/O threads may still hold its file lock for a moment
/// after the drop (seen as a flaky `keyhole init`, which opens a fresh
/// directory keyless to look, then again with the key).
#[test]
fn reopening_right_after_a_drop_is_never_locked() {
    for _ in 0..100 {
        let dir = tempfile::tempdir().unwrap();
        let probe = SecretStore::open(dir.path(), keyhole_store::KeySource::None).unwrap();
        drop(probe);
        let key = keyhole_store::KeySource::Inline(SecretStore::generate_key_text());
        let store = SecretStore::open(dir.path(), key).unwrap();
        store.create_environment("prod").unwrap();
    }
}

#[test]
fn data_survives_reopen_and_second_open_is_locked() {
    let fx = Fixture::new().with_layout();
    fx.store
        .set_secret(&env("prod"), "K", &val("persisted"))
        .unwrap();
    let second = SecretStore::open(
        fx.data.path(),
        keyhole_store::KeySource::File(fx.key_path.clone()),
    );
    match second {
        Err(e @ StoreError::Locked { .. }) => {
            assert!(
                e.to_string()
                    .contains("is in use by another keyhole process"),
                "{e}"
            );
        }
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    let fx = fx.reopen_with_file();
    assert!(!fx.store.is_sealed());
    assert_eq!(
        fx.store.get_secret(&env("prod"), "K").unwrap().expose(),
        "persisted"
    );
    assert_eq!(fx.store.list_spaces(None).unwrap().len(), 3);
}

#[test]
fn inline_keys_work_and_key_file_inside_data_dir_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let key = SecretStore::generate_key_text();
    let s = SecretStore::open(data.path(), keyhole_store::KeySource::Inline(key.clone())).unwrap();
    assert!(!s.is_sealed());
    s.create_environment("e").unwrap();
    s.set_secret(&env("e"), "K", &val("v")).unwrap();
    assert!(matches!(s.rotate_kek(), Err(StoreError::Unsupported(_))));
    drop(s);
    let s = open_retrying(
        data.path(),
        keyhole_store::KeySource::Inline(format!("v1 {key}\n")),
    );
    assert_eq!(s.get_secret(&env("e"), "K").unwrap().expose(), "v");

    let data2 = tempfile::tempdir().unwrap();
    let inside = data2.path().join("master.key");
    SecretStore::init_key_file(&inside).unwrap();
    assert!(matches!(
        SecretStore::open(data2.path(), keyhole_store::KeySource::File(inside)),
        Err(StoreError::KeyFile { .. })
    ));
}
