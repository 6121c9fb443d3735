//! Deploy-time checks and restarts.

use keyhole_runtime::{DeploySpec, Outcome, RuntimeError};
use keyhole_store::Scope;
use keyhole_tests::*;

fn refused(h: &Harness, bytes: &[u8]) -> String {
    let err = h
        .runtime
        .deploy(DeploySpec::new("bad", "prod"), bytes)
        .unwrap_err();
    err.to_string()
}

/// Acceptance: bad uploads are rejected with a message naming the cause, and
/// nothing is stored.
#[test]
pub fn wrong_world() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    let msg = refused(&h, b"definitely not wasm");
    assert!(msg.contains("not a WebAssembly binary"), "{msg}");
    let msg = refused(&h, b"\0asm\x01\0\0\0");
    assert!(
        msg.contains("core WebAssembly module, not a component"),
        "{msg}"
    );
    let mut truncated = wasm(SECRET_READER);
    truncated.truncate(truncated.len() / 2);
    let msg = refused(&h, &truncated);
    assert!(msg.starts_with("invalid component"), "{msg}");
    let msg = refused(&h, &wasm(WRONG_WORLD));
    assert!(msg.contains("not a keyhole listener"), "{msg}");
    let msg = refused(&h, &wasm(HTTP_CALLER));
    assert!(
        msg.contains("import `wasi:http/") && msg.contains("--allow-http"),
        "{msg}"
    );

    let err = h
        .runtime
        .deploy(DeploySpec::new("x", "nowhere"), &wasm(SECRET_READER))
        .unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    let mut spec = DeploySpec::new("x", "prod");
    spec.limits.memory_bytes = 1 << 40;
    let err = h.runtime.deploy(spec, &wasm(SECRET_READER)).unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidSpec(_)), "{err}");
    let mut spec = DeploySpec::new("x", "prod");
    spec.topics = vec!["[".into()];
    assert!(h.runtime.deploy(spec, &wasm(SECRET_READER)).is_err());

    assert!(h.runtime.deployments().is_empty());
    assert_eq!(
        std::fs::read_dir(h.data_dir().join("modules"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(h.data_dir().join("artifacts"))
            .unwrap()
            .count(),
        0
    );
}

/// Acceptance: after a restart deployed listeners run without recompiling;
/// a damaged artifact is recompiled from the stored module, never loaded.
#[test]
fn restart_reuses_artifacts() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", "t1");
    h.deploy(PURE_READER, DeploySpec::new("a", "prod"));
    h.deploy(PURE_READER, DeploySpec::new("b", "prod"));
    assert_eq!(h.runtime.stats().compiled, 1, "same module compiled once");

    let h = h.restart();
    let stats = h.runtime.stats();
    assert_eq!(
        (
            stats.compiled,
            stats.loaded_from_artifact,
            stats.deployments
        ),
        (0, 1, 2)
    );
    let runs = h.emit("x", "prod", None, "{}");
    assert!(
        runs.iter()
            .all(|r| r.outcome == Outcome::Ok { value: fnv("t1") })
    );

    // Flip one byte of the artifact: it must be recompiled, not trusted.
    let dir = h.data_dir().join("artifacts");
    let path = std::fs::read_dir(&dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    let h = h.restart();
    assert_eq!(h.runtime.stats().compiled, 1);
    assert_eq!(h.runtime.stats().loaded_from_artifact, 0);
    let runs = h.emit("x", "prod", None, "{}");
    assert!(
        runs.iter()
            .all(|r| r.outcome == Outcome::Ok { value: fnv("t1") })
    );
}

#[test]
fn topic_and_space_filters_choose_listeners() {
    let h = Harness::new();
    h.scopes("prod", &["team-a", "team-b"]);
    h.scopes("staging", &[]);
    h.set(Scope::Environment("prod".into()), "SLACK_TOKEN", "t");
    let mut actions = DeploySpec::new("actions", "prod");
    actions.topics = vec!["action:*".into()];
    h.deploy(PURE_READER, actions);
    let mut team_a = DeploySpec::new("team-a-only", "prod");
    team_a.space = Some("team-a".into());
    h.deploy(PURE_READER, team_a);
    h.deploy(PURE_READER, DeploySpec::new("everything", "prod"));

    let names = |runs: Vec<keyhole_runtime::RunRecord>| {
        runs.into_iter().map(|r| r.listener).collect::<Vec<_>>()
    };
    assert_eq!(
        names(h.emit("action:triggered", "prod", None, "{}")),
        ["actions", "everything"]
    );
    assert_eq!(
        names(h.emit("records:created", "prod", Some("team-a"), "{}")),
        ["everything", "team-a-only"]
    );
    assert_eq!(
        names(h.emit("records:created", "prod", Some("team-b"), "{}")),
        ["everything"]
    );
    assert!(h.emit("action:triggered", "staging", None, "{}").is_empty());

    let bad = keyhole_runtime::Event::new("x", "prod", None).with_payload("{not json");
    assert!(
        h.runtime
            .emit_blocking(&bad)
            .unwrap_err()
            .to_string()
            .contains("not valid JSON")
    );
    let wrong_space = keyhole_runtime::Event::new("x", "staging", Some("team-a"));
    assert!(h.runtime.emit_blocking(&wrong_space).is_err());

    h.runtime.undeploy("everything").unwrap();
    assert_eq!(
        names(h.emit("records:created", "prod", Some("team-b"), "{}")),
        Vec::<String>::new()
    );
    assert!(h.runtime.undeploy("everything").is_err());
}

/// Each environment's listeners run in name order, only its own, however
/// the names of several environments interleave; redeploying a name to
/// another environment moves it; a restart rebuilds the same index.
#[test]
fn each_environment_runs_its_own_listeners_in_name_order() {
    let mut h = Harness::new();
    h.scopes("prod", &[]);
    h.scopes("staging", &[]);
    for env in ["prod", "staging"] {
        h.set(Scope::Environment(env.into()), "SLACK_TOKEN", "t");
    }
    for (name, env) in [
        ("d", "prod"),
        ("a", "staging"),
        ("c", "prod"),
        ("b", "prod"),
        ("e", "staging"),
    ] {
        h.deploy(PURE_READER, DeploySpec::new(name, env));
    }
    let names = |h: &Harness, env: &str| {
        h.emit("x", env, None, "{}")
            .into_iter()
            .map(|r| r.listener)
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&h, "prod"), ["b", "c", "d"]);
    assert_eq!(names(&h, "staging"), ["a", "e"]);

    h.deploy(PURE_READER, DeploySpec::new("c", "staging"));
    assert_eq!(names(&h, "prod"), ["b", "d"]);
    assert_eq!(names(&h, "staging"), ["a", "c", "e"]);

    h = h.restart();
    assert_eq!(names(&h, "prod"), ["b", "d"]);
    assert_eq!(names(&h, "staging"), ["a", "c", "e"]);
    assert_eq!(h.runtime.stats().deployments, 5);

    for name in ["b", "d"] {
        h.runtime.undeploy(name).unwrap();
    }
    assert!(names(&h, "prod").is_empty());
    assert_eq!(names(&h, "staging"), ["a", "c", "e"]);
    assert_eq!(h.runtime.deployments().len(), 3);
}

/// Deploys and undeploys of one name racing on several threads leave the
/// stored deployments and the live ones agreeing (what a restart loads is
/// what ran before it).
#[test]
fn racing_deploys_of_one_name_leave_store_and_memory_agreeing() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.scopes("staging", &[]);
    let module = wasm(PURE_READER);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (rt, module) = (&h.runtime, &module);
            s.spawn(move || {
                for i in 0..50 {
                    let env = if (t + i) % 2 == 0 { "prod" } else { "staging" };
                    if (t * 7 + i) % 3 == 0 {
                        let _ = rt.undeploy("contested");
                    } else {
                        rt.deploy(DeploySpec::new("contested", env), module)
                            .unwrap();
                    }
                }
            });
        }
    });
    let live = |h: &Harness| {
        h.runtime
            .deployments()
            .into_iter()
            .map(|d| (d.spec.name, d.spec.environment))
            .collect::<Vec<_>>()
    };
    let before = live(&h);
    let h = h.restart();
    assert_eq!(live(&h), before);
}

/// A write cut short by a crash leaves a temporary file; the next start
/// removes it and loads the real artifact.
#[test]
fn a_restart_removes_temporaries_a_crash_left() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    h.deploy(PURE_READER, DeploySpec::new("kept", "prod"));
    let strays = [
        "artifacts/cut-short.4242.0.tmp",
        "modules/cut-short.4242.1.tmp",
    ];
    for stray in strays {
        std::fs::write(h.data_dir().join(stray), b"half a file").unwrap();
    }
    let h = h.restart();
    for stray in strays {
        assert!(!h.data_dir().join(stray).exists(), "{stray} is still there");
    }
    assert_eq!(h.runtime.stats().loaded_from_artifact, 1);
}

/// Acceptance: a component that could never be instantiated (600 MiB of
/// initial memory, over the 512 MiB any listener may have) is refused as
/// invalid input, in the user's terms, and nothing is stored; so is one
/// whose initial memory is over its own deployment's memory limit.
#[test]
pub fn big_memory() {
    let h = Harness::new();
    h.scopes("prod", &[]);
    let err = h
        .runtime
        .deploy(DeploySpec::new("big", "prod"), &wasm(BIG_MEMORY))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the module needs 601 MiB of memory at start; the most a listener may have is 512 MiB"
    );
    assert!(matches!(err, RuntimeError::ExceedsLimits(_)), "{err:?}");

    // secret-reader starts with a little over 1 MiB (Rust's 1 MiB stack
    // and its data): under a 1 MiB limit every run would fail.
    let err = h
        .runtime
        .deploy(limited("small", 1_000, 1), &wasm(SECRET_READER))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("the module needs 1.")
            && msg.ends_with(" MiB of memory at start; this deployment's memory limit is 1 MiB"),
        "{msg}"
    );
    assert!(matches!(err, RuntimeError::ExceedsLimits(_)), "{err:?}");
    h.deploy(SECRET_READER, limited("small", 1_000, 2));

    assert_eq!(h.runtime.deployments().len(), 1);
    assert_eq!(
        std::fs::read_dir(h.data_dir().join("modules"))
            .unwrap()
            .count(),
        1,
        "only secret-reader's module is stored"
    );
}
