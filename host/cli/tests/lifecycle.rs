//! Deleting environments and spaces, reading one thing by id, redeploying
//! and taken space ids, against a real daemon: statuses, messages, what a
//! scoped token is told, the audit entries, and what the data directory
//! holds afterwards.

mod common;

use common::*;
use keyhole_store::{KeySource, Scope, SecretStore};
use keyhole_tests::{EXAMPLE_RUST_LISTENER, SECRET_READER, wasm};
use serde_json::{Value, json};

const PLANTED: &str = "PLANTED-lifecycle-value-8c2e";

fn set(h: &Http, name: &str, env: &str, space: Option<&str>) {
    let mut body = json!({"name": name, "value": PLANTED, "environmentId": env});
    if let Some(s) = space {
        body["spaceId"] = json!(s);
    }
    assert_eq!(h.post_json("/v1/secrets", &body).status, 200);
}

fn emit(h: &Http, env: &str) -> Resp {
    h.post_json("/v1/events", &json!({"topic": "t", "environmentId": env}))
}

fn error(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_owned()
}

/// `actor`'s audit entries for `action`, oldest first (`h`: an admin).
fn entries(h: &Http, actor: &str, action: &str) -> Vec<Value> {
    let page = h
        .get(&format!("/v1/audit?actor={actor}&limit=10000"))
        .json();
    let mut out: Vec<Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect();
    out.reverse();
    out
}

#[test]
fn an_environment_is_deleted_only_when_empty_or_forced_and_then_nothing_is_left() {
    let k = Install::new();
    let admin = k.init();
    k.scopes("prod", &["team-a", "team-b"]);
    k.scopes("staging", &[]);
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    set(&h, "A", "prod", None);
    set(&h, "B", "prod", None);
    set(&h, "C", "prod", Some("team-a"));
    set(&h, "A", "staging", None);
    let spec = json!({"name": "hello", "environmentId": "prod"});
    assert_eq!(h.deploy(&spec, &wasm(SECRET_READER)).status, 201);
    assert_eq!(emit(&h, "prod").json()["runs"].as_array().unwrap().len(), 1);

    let r = h.delete("/v1/environments/prod");
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(
        error(&r),
        "environment prod still holds 3 secrets, 2 spaces and 1 listener; \
         pass force=true to delete them with it"
    );
    // Refused means untouched.
    assert_eq!(h.get("/v1/environments/prod").status, 200);
    assert_eq!(emit(&h, "prod").json()["runs"].as_array().unwrap().len(), 1);
    assert_eq!(h.delete("/v1/environments/prod?force=yes").status, 400);
    assert_eq!(h.delete("/v1/environments/prod?forse=true").status, 400);

    let r = h.delete("/v1/environments/prod?force=true");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"id": "prod", "forced": true, "secrets": 3, "spaces": ["team-a", "team-b"],
               "listeners": ["hello"], "dataKeys": 2})
    );
    assert!(!r.body.contains(PLANTED));
    assert_eq!(h.get("/v1/environments/prod").status, 404);
    assert_eq!(h.get("/v1/spaces/team-a").status, 404);
    assert_eq!(h.get("/v1/listeners/hello").status, 404);
    assert_eq!(h.get("/v1/secrets/env:prod:A").status, 404);
    assert_eq!(
        emit(&h, "prod").status,
        404,
        "no events to a deleted environment"
    );
    assert_eq!(h.delete("/v1/environments/prod?force=true").status, 404);

    // The same id again: a fresh, empty environment, and no listener of
    // the old one runs in it.
    let r = h.post_json("/v1/environments", &json!({"id": "prod"}));
    assert_eq!(r.status, 201);
    assert_eq!(
        h.get("/v1/secrets?environmentId=prod").json()["data"],
        json!([])
    );
    assert_eq!(emit(&h, "prod").json()["runs"], json!([]));
    // An empty environment goes without force.
    let r = h.delete("/v1/environments/prod");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["forced"], false);

    // Audited: the refusal (recorded, then failed), the forced deletion
    // with what it took, the one that found nothing, the unforced one.
    // (Malformed queries were refused before anything was recorded.)
    let audit = entries(&h, "token:admin", "environment.delete");
    let summary: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["detail"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let held =
        "holds 3 secrets, 2 spaces and 1 listener (spaces: team-a, team-b; listeners: hello)";
    assert_eq!(summary.len(), 6, "{summary:?}");
    assert_eq!(summary[0], ("ok", format!("not forced; {held}").as_str()));
    assert_eq!(summary[1].0, "failed");
    assert!(summary[1].1.contains("still holds"), "{summary:?}");
    assert_eq!(summary[2], ("ok", format!("forced; {held}").as_str()));
    assert_eq!(summary[3], ("ok", "forced"));
    assert_eq!(summary[4].0, "failed");
    assert_eq!(summary[5], ("ok", "not forced; holds nothing"));
    assert!(audit.iter().all(|e| e["target"] == "env:prod"));
    assert!(server.terminate().success());

    // With the master key, the data directory holds nothing of prod's:
    // no secret record and no data key of prod, team-a or team-b.
    let store = SecretStore::open(&k.data, KeySource::File(k.key.clone())).unwrap();
    assert!(!store.is_sealed());
    let bucket = store.backend().bucket("store").unwrap();
    for (key, _) in bucket.scan(b"").unwrap() {
        let key = String::from_utf8(key).unwrap();
        let prod_like = ["env=prod/", "space=team-a/", "space=team-b/"];
        assert!(
            !(key.starts_with("secret/") || key.starts_with("dek/"))
                || !prod_like.iter().any(|p| key.contains(p)),
            "{key} left behind"
        );
    }
    assert_eq!(
        store
            .get_secret(&Scope::Environment("staging".into()), "A")
            .unwrap()
            .expose(),
        PLANTED
    );
}

#[test]
fn spaces_are_deleted_within_the_caller_s_scope() {
    let k = Install::new();
    let admin = k.init();
    k.scopes("prod", &["team-a", "team-b"]);
    k.scopes("staging", &["team-s"]);
    let created = |args: &[&str]| token_from(&k.ok(args));
    let sw_prod = created(&[
        "token",
        "create",
        "sw-prod",
        "--role",
        "secrets-writer",
        "--env",
        "prod",
    ]);
    let sw_a = created(&[
        "token",
        "create",
        "sw-a",
        "--role",
        "secrets-writer",
        "--env",
        "prod",
        "--space",
        "team-a",
    ]);
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    set(&h, "A", "prod", Some("team-a"));
    let spec = json!({"name": "in-a", "environmentId": "prod", "spaceId": "team-a"});
    assert_eq!(h.deploy(&spec, &wasm(EXAMPLE_RUST_LISTENER)).status, 201);

    let t = h.with_token(&sw_prod);
    // Outside its environment, existing or not: the same 403.
    let elsewhere = t.delete("/v1/spaces/team-s?force=true");
    let nowhere = t.delete("/v1/spaces/no-such-space?force=true");
    for r in [&elsewhere, &nowhere] {
        assert_eq!(r.status, 403, "{r:?}");
        assert_eq!(r.json()["missingPermission"], "scopes:write");
    }
    assert_eq!(
        error(&elsewhere).replace("team-s", "X"),
        error(&nowhere).replace("no-such-space", "X")
    );
    assert_eq!(t.delete("/v1/environments/prod?force=true").status, 403);
    // A space-scoped token may not delete even its own space.
    let r = h.with_token(&sw_a).delete("/v1/spaces/team-a?force=true");
    assert_eq!(r.status, 403, "{r:?}");

    let r = t.delete("/v1/spaces/team-a");
    assert_eq!(r.status, 409);
    assert_eq!(
        error(&r),
        "space team-a still holds 1 secret and 1 listener; pass force=true to delete them with it"
    );
    let r = t.delete("/v1/spaces/team-a?force=true");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"id": "team-a", "forced": true, "secrets": 1, "spaces": [], "listeners": ["in-a"], "dataKeys": 1})
    );
    assert_eq!(
        t.delete("/v1/spaces/team-b").status,
        200,
        "empty: no force needed"
    );
    assert_eq!(h.get("/v1/listeners/in-a").status, 404);
    assert_eq!(
        h.get("/v1/environments/prod").status,
        200,
        "its environment stays"
    );
    let audit = entries(&h, "token:sw-prod", "space.delete");
    let details: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap(),
                e["detail"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        details,
        [
            (
                "ok",
                "not forced; holds 1 secret and 1 listener (listeners: in-a)"
            ),
            (
                "failed",
                "space team-a still holds 1 secret and 1 listener; pass force=true to delete them with it (409)"
            ),
            (
                "ok",
                "forced; holds 1 secret and 1 listener (listeners: in-a)"
            ),
            ("ok", "not forced; holds nothing"),
        ],
        "the refusal (recorded, then failed), the forced and the empty deletion"
    );
    assert!(
        audit
            .iter()
            .all(|e| e["target"].as_str().unwrap().starts_with("space:team-"))
    );
    assert!(server.terminate().success());
}

#[test]
fn one_thing_by_id_found_missing_or_out_of_scope() {
    let k = Install::new();
    let admin = k.init();
    k.scopes("prod", &["team-a"]);
    k.scopes("staging", &["team-s"]);
    let created = |args: &[&str]| token_from(&k.ok(args));
    let sw_prod = created(&[
        "token",
        "create",
        "sw",
        "--role",
        "secrets-writer",
        "--env",
        "prod",
    ]);
    let dep = created(&[
        "token", "create", "dep", "--role", "deployer", "--env", "prod",
    ]);
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    set(&h, "A", "prod", None);
    set(&h, "A", "prod", Some("team-a"));
    set(&h, "A", "staging", None);
    let limits = json!({"timeoutMs": 1500, "memoryBytes": 33554432});
    for (name, env) in [("here", "prod"), ("there", "staging")] {
        let spec = json!({"name": name, "environmentId": env, "limits": limits});
        assert_eq!(h.deploy(&spec, &wasm(EXAMPLE_RUST_LISTENER)).status, 201);
    }

    // Admin: found and missing.
    let e = h.get("/v1/environments/prod");
    assert_eq!((e.status, e.json()["id"].clone()), (200, json!("prod")));
    assert_eq!(h.get("/v1/environments/nope").status, 404);
    assert_eq!(h.get("/v1/environments/bad%20id").status, 400);
    let s = h.get("/v1/spaces/team-a").json();
    assert_eq!(
        (s["id"].as_str(), s["environmentId"].as_str()),
        (Some("team-a"), Some("prod"))
    );
    assert_eq!(h.get("/v1/spaces/nope").status, 404);
    let r = h.get("/v1/secrets/space:team-a:A");
    assert_eq!(r.status, 200);
    assert!(
        !r.body.contains(PLANTED) && !r.body.contains("value"),
        "{}",
        r.body
    );
    let data = &r.json()["data"];
    assert_eq!(data["id"], "space:team-a:A");
    assert_eq!(data["environmentId"], "prod");
    assert_eq!(data["provenance"], "space-override");
    assert_eq!(data["version"], 1);
    assert_eq!(
        h.get("/v1/secrets/env:prod:A").json()["data"]["provenance"],
        "environment"
    );
    assert_eq!(h.get("/v1/secrets/env:prod:NOPE").status, 404);
    assert_eq!(h.get("/v1/secrets/env:nope:A").status, 404);
    assert_eq!(h.get("/v1/secrets/prod:A").status, 400);
    let l = h.get("/v1/listeners/here").json();
    assert_eq!(l["limits"]["timeoutMs"], 1500);
    assert_eq!(l["limits"]["memoryBytes"], 33554432);
    assert_eq!(l["moduleHash"].as_str().unwrap().len(), 64);
    assert_eq!(h.get("/v1/listeners/nope").status, 404);

    // Scoped: inside its scope as the admin sees it; outside, the same
    // 403 whether the thing exists or not.
    let t = h.with_token(&sw_prod);
    assert_eq!(t.get("/v1/environments/prod").status, 200);
    assert_eq!(t.get("/v1/spaces/team-a").status, 200);
    assert_eq!(t.get("/v1/secrets/env:prod:A").status, 200);
    assert_eq!(t.get("/v1/secrets/env:prod:NOPE").status, 404);
    let pairs = [
        ("/v1/environments/staging", "/v1/environments/nope"),
        ("/v1/spaces/team-s", "/v1/spaces/nope"),
        ("/v1/secrets/env:staging:A", "/v1/secrets/env:nope:A"),
        ("/v1/secrets/space:team-s:A", "/v1/secrets/space:nope:A"),
    ];
    let d = h.with_token(&dep);
    for (exists, missing) in pairs
        .iter()
        .map(|(a, b)| (t.get(a), t.get(b)))
        .chain([(d.get("/v1/listeners/there"), d.get("/v1/listeners/nope"))])
    {
        assert_eq!(
            (exists.status, missing.status),
            (403, 403),
            "{exists:?} {missing:?}"
        );
        let strip = |r: &Resp| {
            error(r)
                .replace("staging", "X")
                .replace("team-s", "X")
                .replace("there", "X")
                .replace("nope", "X")
        };
        assert_eq!(strip(&exists), strip(&missing));
    }
    assert_eq!(d.get("/v1/listeners/here").json()["name"], "here");
    assert!(server.terminate().success());
}

#[test]
fn redeploys_report_the_previous_hash_and_taken_space_ids_name_their_owner_only_within_reach() {
    let k = Install::new();
    let admin = k.init();
    k.scopes("prod", &["team-a"]);
    k.scopes("staging", &[]);
    let sw_staging = token_from(&k.ok(&[
        "token",
        "create",
        "sw-st",
        "--role",
        "secrets-writer",
        "--env",
        "staging",
    ]));
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();

    let spec = json!({"name": "hello", "environmentId": "prod"});
    let first = h.deploy(&spec, &wasm(EXAMPLE_RUST_LISTENER)).json();
    assert_eq!(first["previousModuleHash"], Value::Null);
    assert_eq!(first["name"], "hello");
    let second = h.deploy(&spec, &wasm(SECRET_READER)).json();
    assert_eq!(second["previousModuleHash"], first["moduleHash"]);
    assert_ne!(second["moduleHash"], first["moduleHash"]);
    let third = h.deploy(&spec, &wasm(SECRET_READER)).json();
    assert_eq!(third["previousModuleHash"], second["moduleHash"]);
    assert_eq!(
        h.get("/v1/listeners/hello").json()["moduleHash"],
        second["moduleHash"]
    );

    let body = json!({"id": "team-a", "environmentId": "staging"});
    let r = h.post_json("/v1/spaces", &body);
    assert_eq!(r.status, 409);
    assert_eq!(
        error(&r),
        "space \"team-a\" already exists in environment \"prod\""
    );
    let r = h.with_token(&sw_staging).post_json("/v1/spaces", &body);
    assert_eq!(r.status, 409);
    assert_eq!(error(&r), "space id team-a is taken");
    assert!(!r.body.contains("prod"));
    assert!(server.terminate().success());
}
