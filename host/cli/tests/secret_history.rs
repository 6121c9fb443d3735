//! A secret's versions through a running daemon, as an operator drives
//! them with the CLI and a program with the API: check-and-set writes
//! (`--expect-version`, `expectedVersion`, `If-Match`), history with who
//! wrote each version, rollback read by a listener, soft delete and
//! undelete, destroy, and the offline compaction after it. No answer,
//! output or log carries a value.

mod common;

use common::*;
use keyhole_tests::{SECRET_READER, fnv, wasm};
use serde_json::{Value, json};

const V1: &str = "kh-history-one-7c2e";
const V2: &str = "kh-history-two-19ad";
const V3: &str = "kh-history-three-5b0f";

/// What the reader's run read for API_KEY.
fn read(h: &Http) -> String {
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "prod", "payload": {"reads": [{"name": "API_KEY"}]}}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let run = &r.json()["runs"][0];
    let v: Value = serde_json::from_str(run["outcome"]["value"].as_str().unwrap()).unwrap();
    let result = &v["results"][0];
    result["fnv"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| result.to_string())
}

fn set(k: &Install, extra: &[&str], value: &str) -> Out {
    let mut args = vec!["secrets", "set", "API_KEY", "--env", "prod"];
    args.extend_from_slice(extra);
    k.run_stdin(&args, value)
}

#[test]
fn versions_through_the_cli_and_the_api() {
    let k = Install::new();
    let token = k.init();
    let log = k.dir.path().join("serve.log");
    let server = Server::start_logged(&k, &token, &[], &log);
    let h = server.http();
    k.scopes("prod", &[]);
    let r = h.deploy(
        &json!({"name": "reader", "environmentId": "prod", "topics": ["t"]}),
        &wasm(SECRET_READER),
    );
    assert_eq!(r.status, 201, "{r:?}");

    // Check-and-set through the CLI: create-only, then over version 1.
    let out = set(&k, &["--expect-version", "0"], V1);
    assert_eq!(out.code, 0, "{out:?}");
    let out = set(&k, &["--expect-version", "0"], V2);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("is at version 1, not 0"), "{out:?}");
    assert!(out.stderr.contains("keyhole secrets history"), "{out:?}");
    let out = set(&k, &["--expect-version", "1"], V2);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("(version 2)"), "{out:?}");

    // Through the API: a stale expectation is a 409 that writes nothing,
    // in the body or as If-Match.
    let stale =
        json!({"name": "API_KEY", "value": V3, "environmentId": "prod", "expectedVersion": 1});
    let r = h.post_json("/v1/secrets", &stale);
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["code"], "version_mismatch");
    let body = json!({"name": "API_KEY", "value": V3, "environmentId": "prod"});
    let r = h.post_json_with("/v1/secrets", &body, &[("if-match", "\"1\"")]);
    assert_eq!(r.status, 409, "{r:?}");
    let r = h.post_json_with("/v1/secrets", &body, &[("if-match", "\"2\"")]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(read(&h), fnv(V3));

    // History: three versions, who wrote them, never a value.
    let r = h.get("/v1/secrets/env:prod:API_KEY/history");
    assert_eq!(r.status, 200, "{r:?}");
    let versions = r.json()["data"].as_array().unwrap().clone();
    let states: Vec<(u64, &str)> = versions
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(1, "kept"), (2, "kept"), (3, "current")]);
    // The CLI talks to the daemon with the admin token, as the API does.
    assert!(
        versions.iter().all(|v| v["by"] == "token:admin"),
        "{versions:?}"
    );
    let out = k.ok(&["secrets", "history", "API_KEY", "--env", "prod"]);
    assert!(
        out.contains("current") && out.contains("token:admin"),
        "{out}"
    );

    // Rollback: a new version with version 1's value, which the listener reads.
    let r = h.post_json(
        "/v1/secrets/env:prod:API_KEY/rollback",
        &json!({"version": 1}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["data"][0]["version"], 4);
    assert_eq!(read(&h), fnv(V1));
    let out = k.ok(&[
        "secrets",
        "rollback",
        "API_KEY",
        "--env",
        "prod",
        "--version",
        "2",
    ]);
    assert!(out.contains("now version 5"), "{out}");
    assert_eq!(read(&h), fnv(V2));
    let r = h.post_json(
        "/v1/secrets/env:prod:API_KEY/rollback",
        &json!({"version": 42}),
    );
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (404, json!("unknown_version"))
    );

    // Soft delete, undelete.
    k.ok(&["secrets", "rm", "API_KEY", "--env", "prod"]);
    assert!(read(&h).contains("not-found"), "deleted");
    let r = h.post_json("/v1/secrets/env:prod:API_KEY/undelete", &json!({}));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(read(&h), fnv(V2));
    let r = h.post_json("/v1/secrets/env:prod:API_KEY/undelete", &json!({}));
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (409, json!("wrong_state"))
    );

    // Destroy: version 1, then everything.
    let r = h.post_json(
        "/v1/secrets/env:prod:API_KEY/destroy",
        &json!({"versions": [5]}),
    );
    assert_eq!(
        (r.status, r.json()["code"].clone()),
        (409, json!("wrong_state"))
    );
    let r = h.post_json(
        "/v1/secrets/env:prod:API_KEY/destroy",
        &json!({"versions": [1]}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["destroyed"], json!([1]));
    let r = h.post_json(
        "/v1/secrets/env:prod:API_KEY/rollback",
        &json!({"version": 1}),
    );
    assert_eq!(r.status, 404, "{r:?}");
    let out = k.ok(&["secrets", "destroy", "API_KEY", "--env", "prod", "--all"]);
    assert!(out.contains("v2, v3, v4, v5"), "{out}");
    assert!(read(&h).contains("not-found"));
    let r = h.get("/v1/secrets/env:prod:API_KEY/history");
    assert!(
        r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "destroyed"),
        "{r:?}"
    );
    let r = h.post_json("/v1/secrets/env:prod:API_KEY/destroy", &json!({}));
    assert_eq!(r.status, 400, "neither versions nor all");

    // How many versions are kept: the store's setting, or the secret's.
    let r = h.get("/v1/secrets/config");
    assert_eq!(r.json()["versionsKept"], 10, "{r:?}");
    let out = k.ok(&["secrets", "config", "--versions", "4"]);
    assert!(out.contains("keeps 4 versions"), "{out}");
    let r = h.post_json("/v1/secrets/config", &json!({"versionsKept": 0}));
    assert_eq!(r.status, 400, "{r:?}");
    let count = |name: &str| {
        h.get(&format!("/v1/secrets/env:prod:{name}/history"))
            .json()["data"]
            .as_array()
            .unwrap()
            .len()
    };
    for i in 0..6 {
        let args = ["secrets", "set", "OTHER", "--env", "prod"];
        assert_eq!(k.run_stdin(&args, &format!("other {i}")).code, 0);
    }
    assert_eq!(count("OTHER"), 4, "the store's setting");
    let keeping = |n: &'static str, value: &str| {
        let args = [
            "secrets",
            "set",
            "OTHER",
            "--env",
            "prod",
            "--keep-versions",
            n,
        ];
        k.run_stdin(&args, value)
    };
    assert_eq!(keeping("2", "other 7").code, 0);
    assert_eq!(count("OTHER"), 2, "the secret's own setting");
    // The count is its own change in the audit log, beside the value's.
    let audit = h.get("/v1/audit?target=env:prod/OTHER&limit=1000").json();
    let kept: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "secret.keep")
        .collect();
    assert_eq!(kept.len(), 1, "{audit}");
    assert_eq!(kept[0]["outcome"], "ok");
    assert_eq!(kept[0]["detail"], "keeps 2 versions");
    // A count out of range is refused before the write it goes with:
    // through the CLI and the API, nothing is written.
    // Every version and its state (history is oldest first).
    let versions = || h.get("/v1/secrets/env:prod:OTHER/history").json()["data"].clone();
    let before = versions();
    let out = keeping("0", "other refused");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("1 to 1000"), "{out:?}");
    let r = h.post_json(
        "/v1/secrets",
        &json!({"name": "OTHER", "value": "other refused", "environmentId": "prod",
                "keepVersions": 1001}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(versions(), before, "a refused count wrote the value");

    // The audit log has each change; nothing anywhere holds a value.
    let audit = h.get("/v1/audit?target=env:prod/API_KEY&limit=1000").json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["outcome"] == "ok")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "secret.set",
        "secret.rollback",
        "secret.delete",
        "secret.undelete",
        "secret.destroy",
    ] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }

    // Compaction, which makes destroyed bytes leave the data directory's
    // files (host/store/tests/history.rs checks the bytes), is offline.
    let out = k.run(&["compact"]);
    assert_eq!(out.code, 4, "refused while the daemon runs: {out:?}");
    assert!(out.stderr.contains("in use"), "{out:?}");
    assert!(server.terminate().success());
    let out = k.ok(&["compact"]);
    assert!(out.contains("gone from its files"), "{out}");
    let server = Server::start(&k, &token, &[]);
    let h = server.http();
    let r = h.get("/v1/secrets/env:prod:OTHER/history");
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2, "{r:?}");
    let compactions = h.get("/v1/audit?target=data%20directory").json();
    let e = &compactions["entries"][0];
    assert_eq!(e["action"], "store.compact", "{compactions}");
    assert!(e["actor"].as_str().unwrap().starts_with("local:"), "{e}");
    assert!(server.terminate().success());

    let log = std::fs::read_to_string(&log).unwrap();
    for v in [V1, V2, V3] {
        assert!(!log.contains(v), "a value reached the log");
        assert!(!audit.to_string().contains(v));
    }
}
