//! Topic-bound secrets through the store's public API: read only on
//! matching topics, kept across value replacements, rotations and
//! restarts, cleared on request, listed; a space override has its own.
//! (Tampering with a stored binding: `src/tamper_tests.rs`.)

mod common;

use common::*;
use keyhole_store::{Provenance, StoreError};

fn topics(ts: &[&str]) -> Vec<String> {
    ts.iter().map(|t| t.to_string()).collect()
}

fn bound(e: Result<keyhole_store::Resolved, StoreError>) -> bool {
    matches!(e, Err(StoreError::TopicBound { .. }))
}

#[test]
fn a_bound_secret_is_read_only_during_matching_events() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    let action = topics(&["action:*", "records:created"]);
    let m = s
        .set_secret_with_topics(&env("prod"), "HOOK", &val("hook-1"), Some(&action))
        .unwrap();
    assert_eq!(m.topics, action);
    let on = |topic: &str| s.resolve_on_topic("prod", None, "HOOK", topic);
    assert_eq!(on("action:triggered").unwrap().value.expose(), "hook-1");
    assert_eq!(on("records:created").unwrap().value.expose(), "hook-1");
    // Refused on other topics, twice (the second from the cache) and
    // outside any event; the refusal names no value.
    for _ in 0..2 {
        let e = on("records:deleted").unwrap_err();
        assert!(matches!(e, StoreError::TopicBound { .. }), "{e:?}");
        assert!(!e.to_string().contains("hook-1"), "{e}");
    }
    assert!(bound(s.resolve("prod", None, "HOOK")));
    // The host's exact read ignores the binding; unbound secrets are
    // readable on every topic.
    assert_eq!(
        s.get_secret(&env("prod"), "HOOK").unwrap().expose(),
        "hook-1"
    );
    s.set_secret(&env("prod"), "PLAIN", &val("p")).unwrap();
    assert!(s.resolve_on_topic("prod", None, "PLAIN", "any").is_ok());
    assert!(s.resolve("prod", None, "PLAIN").is_ok());
}

#[test]
fn replacing_a_value_keeps_its_binding_unless_told_otherwise() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    let action = topics(&["action:*"]);
    s.set_secret_with_topics(&env("prod"), "HOOK", &val("v1"), Some(&action))
        .unwrap();
    // A plain replacement keeps the binding.
    let m = s.set_secret(&env("prod"), "HOOK", &val("v2")).unwrap();
    assert_eq!((m.version, m.topics.clone()), (2, action.clone()));
    assert!(bound(s.resolve_on_topic("prod", None, "HOOK", "other")));
    // A new binding replaces it, normalized (sorted, no duplicates).
    let m = s
        .set_secret_with_topics(
            &env("prod"),
            "HOOK",
            &val("v3"),
            Some(&topics(&["b:*", "a:*", "b:*"])),
        )
        .unwrap();
    assert_eq!(m.topics, topics(&["a:*", "b:*"]));
    // An empty list, or one with `*`, clears it.
    for clear in [topics(&[]), topics(&["x", "*"])] {
        s.set_secret_with_topics(&env("prod"), "HOOK", &val("v4"), Some(&action))
            .unwrap();
        let m = s
            .set_secret_with_topics(&env("prod"), "HOOK", &val("v5"), Some(&clear))
            .unwrap();
        assert!(m.topics.is_empty(), "{clear:?}");
        assert!(s.resolve_on_topic("prod", None, "HOOK", "other").is_ok());
    }
    // A bad glob is refused before anything is written.
    let e = s
        .set_secret_with_topics(&env("prod"), "HOOK", &val("v6"), Some(&topics(&["a["])))
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidTopics { .. }), "{e:?}");
    assert_eq!(s.get_secret(&env("prod"), "HOOK").unwrap().expose(), "v5");
}

#[test]
fn a_space_override_carries_its_own_binding() {
    let fx = Fixture::new().with_layout();
    let s = &fx.store;
    s.set_secret(&env("prod"), "TOKEN", &val("env")).unwrap();
    s.set_secret_with_topics(
        &space("team-a"),
        "TOKEN",
        &val("team-a"),
        Some(&topics(&["action:*"])),
    )
    .unwrap();
    let read = |space: &str, topic: &str| s.resolve_on_topic("prod", Some(space), "TOKEN", topic);
    let r = read("team-a", "action:x").unwrap();
    assert_eq!(
        (r.value.expose(), r.provenance),
        ("team-a", Provenance::SpaceOverride)
    );
    // The override decides: refused, not passed over for the environment's.
    assert!(bound(read("team-a", "records:created")));
    assert_eq!(
        read("team-b", "records:created").unwrap().value.expose(),
        "env"
    );
    let listed = s.list_effective("prod", Some("team-a")).unwrap();
    assert_eq!(listed[0].meta.topics, topics(&["action:*"]));
    let listed = s.list_effective("prod", None).unwrap();
    assert!(listed[0].meta.topics.is_empty());
}

#[test]
fn bindings_survive_rotations_and_restarts() {
    let fx = Fixture::new().with_layout();
    let action = topics(&["action:*"]);
    fx.store
        .set_secret_with_topics(&env("prod"), "HOOK", &val("hook"), Some(&action))
        .unwrap();
    fx.store.rotate_dek(&env("prod")).unwrap();
    fx.store.rotate_kek().unwrap();
    let fx = fx.reopen_with_file();
    let s = &fx.store;
    assert_eq!(
        s.resolve_on_topic("prod", None, "HOOK", "action:go")
            .unwrap()
            .value
            .expose(),
        "hook"
    );
    assert!(bound(s.resolve_on_topic("prod", None, "HOOK", "other")));
    assert_eq!(s.list_secrets(&env("prod")).unwrap()[0].topics, action);
}
