//! Roles and scopes against a real daemon.
//!
//! The matrix: every route the daemon serves (the served OpenAPI document,
//! which a unit test holds equal to `api::routes()`) called with a token of
//! every role is allowed or refused with a 403 naming the permission,
//! exactly as the table below says. The table is written out here by hand,
//! apart from the code's, so a change to either shows up as a failure.
//!
//! Scopes: a token limited to an environment or a space gets a 403 for
//! anything outside it, the same 403 whether the target exists or not, and
//! lists show only what it reaches.

mod common;

use std::collections::BTreeSet;

use common::*;
use keyhole_tests::{EXAMPLE_RUST_LISTENER, wasm};
use serde_json::{Value, json};

const ROLES: [&str; 5] = ["admin", "secrets-writer", "deployer", "auditor", "monitor"];

/// Every operation and the permission it needs (`none`: public; `any`: any
/// valid token), in an order where creating comes before deleting.
const ROUTES: &[(&str, &str, &str)] = &[
    ("GET", "/healthz", "none"),
    ("GET", "/v1/openapi.json", "any"),
    ("GET", "/metrics", "metrics:read"),
    ("GET", "/v1/environments", "scopes:read"),
    ("POST", "/v1/environments", "environments:write"),
    ("GET", "/v1/environments/{id}", "scopes:read"),
    ("DELETE", "/v1/environments/{id}", "environments:write"),
    ("GET", "/v1/spaces", "scopes:read"),
    ("POST", "/v1/spaces", "scopes:write"),
    ("GET", "/v1/spaces/{id}", "scopes:read"),
    ("DELETE", "/v1/spaces/{id}", "scopes:write"),
    ("GET", "/v1/secrets", "secrets:read"),
    ("POST", "/v1/secrets", "secrets:write"),
    ("GET", "/v1/secrets/{id}", "secrets:read"),
    ("DELETE", "/v1/secrets/{id}", "secrets:write"),
    ("GET", "/v1/secrets/config", "secrets:read"),
    ("POST", "/v1/secrets/config", "environments:write"),
    ("GET", "/v1/secrets/{id}/history", "secrets:read"),
    ("POST", "/v1/secrets/{id}/rollback", "secrets:write"),
    ("POST", "/v1/secrets/{id}/undelete", "secrets:write"),
    ("POST", "/v1/secrets/{id}/destroy", "secrets:write"),
    ("POST", "/v1/keys/rotate", "keys:rotate"),
    ("GET", "/v1/listeners", "listeners:read"),
    ("POST", "/v1/listeners", "listeners:deploy"),
    ("GET", "/v1/listeners/{name}", "listeners:read"),
    ("DELETE", "/v1/listeners/{name}", "listeners:deploy"),
    ("POST", "/v1/events", "events:emit"),
    ("POST", "/v1/events/batch", "events:emit"),
    ("GET", "/v1/runs", "runs:read"),
    ("GET", "/v1/runs/{id}", "runs:read"),
    ("GET", "/v1/audit", "audit:read"),
    ("GET", "/v1/audit/verify", "audit:read"),
    ("GET", "/v1/tokens", "tokens:admin"),
    ("POST", "/v1/tokens", "tokens:admin"),
    ("POST", "/v1/tokens/{name}/rotate", "tokens:admin"),
    ("DELETE", "/v1/tokens/{name}", "tokens:admin"),
];

/// The role table, as the README states it.
fn allows(role: &str, permission: &str) -> bool {
    let perms: &[&str] = match role {
        "admin" => return true,
        "secrets-writer" => &[
            "scopes:read",
            "scopes:write",
            "secrets:read",
            "secrets:write",
        ],
        "deployer" => &[
            "listeners:read",
            "listeners:deploy",
            "events:emit",
            "runs:read",
        ],
        "auditor" => &["audit:read", "runs:read"],
        "monitor" => &["metrics:read"],
        other => panic!("unknown role {other}"),
    };
    matches!(permission, "none" | "any") || perms.contains(&permission)
}

/// A request for `(method, path)` that succeeds for a caller allowed to
/// make it; `tag` keeps each role's resources apart.
fn call(h: &Http, method: &str, path: &str, tag: &str) -> Resp {
    let spec = json!({"name": format!("matrix-{tag}"), "environmentId": "prod"});
    match (method, path) {
        ("GET", "/v1/secrets") => h.get("/v1/secrets?environmentId=prod"),
        ("GET", "/healthz") => h.send("GET", path, None, None),
        ("GET", "/v1/runs/{id}") => h.get("/v1/runs/1"),
        ("GET", "/v1/environments/{id}") => h.get("/v1/environments/prod"),
        ("GET", "/v1/spaces/{id}") => h.get("/v1/spaces/team-a"),
        ("GET", "/v1/secrets/{id}") => h.get("/v1/secrets/env:prod:MATRIX"),
        ("GET", "/v1/listeners/{name}") => h.get(&format!("/v1/listeners/matrix-{tag}")),
        ("GET", "/v1/secrets/{id}/history") => h.get("/v1/secrets/env:prod:MATRIX/history"),
        ("GET", p) => h.get(p),
        ("DELETE", "/v1/environments/{id}") => h.delete(&format!("/v1/environments/env-{tag}")),
        ("DELETE", "/v1/spaces/{id}") => h.delete(&format!("/v1/spaces/space-{tag}")),
        ("POST", "/v1/environments") => h.post_json(path, &json!({"id": format!("env-{tag}")})),
        ("POST", "/v1/spaces") => h.post_json(
            path,
            &json!({"id": format!("space-{tag}"), "environmentId": "prod"}),
        ),
        ("POST", "/v1/secrets") => h.post_json(
            path,
            &json!({"name": "MATRIX", "value": "v", "environmentId": "prod"}),
        ),
        ("DELETE", "/v1/secrets/{id}") => h.delete("/v1/secrets/env:prod:MATRIX"),
        ("POST", "/v1/secrets/config") => h.post_json(path, &json!({"versionsKept": 10})),
        ("POST", "/v1/secrets/{id}/rollback") => h.post_json(
            "/v1/secrets/env:prod:MATRIX/rollback",
            &json!({"version": 1}),
        ),
        ("POST", "/v1/secrets/{id}/undelete") => {
            h.post_json("/v1/secrets/env:prod:MATRIX/undelete", &json!({}))
        }
        ("POST", "/v1/secrets/{id}/destroy") => h.post_json(
            "/v1/secrets/env:prod:MATRIX/destroy",
            &json!({"versions": [1]}),
        ),
        ("POST", "/v1/keys/rotate") => h.post_json(path, &json!({"scope": "env:prod"})),
        ("POST", "/v1/listeners") => h.deploy(&spec, &wasm(EXAMPLE_RUST_LISTENER)),
        ("DELETE", "/v1/listeners/{name}") => h.delete(&format!("/v1/listeners/matrix-{tag}")),
        ("POST", "/v1/events") => {
            h.post_json(path, &json!({"topic": "t", "environmentId": "prod"}))
        }
        ("POST", "/v1/events/batch") => h.post_raw(
            path,
            b"{\"topic\": \"t\", \"environmentId\": \"prod\"}\n".to_vec(),
        ),
        ("POST", "/v1/tokens") => h.post_json(
            path,
            &json!({"name": format!("victim-{tag}"), "role": "auditor"}),
        ),
        ("POST", "/v1/tokens/{name}/rotate") => {
            h.post_raw(&format!("/v1/tokens/victim-{tag}/rotate"), Vec::new())
        }
        ("DELETE", "/v1/tokens/{name}") => h.delete(&format!("/v1/tokens/victim-{tag}")),
        other => panic!("no request for {other:?}"),
    }
}

/// A 403 naming `permission`, for token `name`.
fn assert_forbidden(r: &Resp, permission: &str, name: &str) {
    assert_eq!(r.status, 403, "{r:?}");
    let body = r.json();
    assert_eq!(body["missingPermission"], permission, "{r:?}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains(permission) && error.contains(&format!("token `{name}`")),
        "{error}"
    );
}

#[test]
fn every_role_on_every_route() {
    let k = Install::new();
    let admin = k.init();
    k.scopes("prod", &["team-a"]);
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();

    // The table above is every served route, with the permission the
    // document (and so the route table) says it needs.
    let doc = h.get("/v1/openapi.json").json();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let perm = op["x-permission"].as_str().unwrap().to_string();
            documented.insert((method.to_uppercase(), path.clone(), perm));
        }
    }
    let table: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|(m, p, perm)| (m.to_string(), p.to_string(), perm.to_string()))
        .collect();
    assert_eq!(table, documented);

    for role in ROLES {
        let name = format!("matrix-{role}");
        let token = h.create_token(&json!({"name": name, "role": role}));
        // Refused uploads close their connection: no reuse.
        let t = Http::without_keep_alive(&h.base, &token);
        for (method, path, perm) in ROUTES {
            let r = call(&t, method, path, role);
            if allows(role, perm) {
                assert!(
                    r.status < 400 || [404, 409].contains(&r.status),
                    "{role} {method} {path}: {r:?}"
                );
            } else {
                assert_forbidden(&r, perm, &name);
            }
        }
    }
    // What the allowed calls did, they did; the refused ones left nothing.
    let envs = h.get("/v1/environments").json();
    let envs: Vec<&str> = envs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(envs, ["prod"], "env-admin was created, then deleted");
    let spaces = h.get("/v1/spaces").json();
    assert_eq!(ids(&spaces, "id"), ["team-a"], "each role's space deleted");
    let tokens = h.get("/v1/tokens").json();
    let victims: Vec<&Value> = tokens
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"].as_str().unwrap().starts_with("victim-"))
        .collect();
    assert!(victims.is_empty(), "{victims:?}");

    // Every refusal above is in the audit log, by the refused token.
    let page = h.get("/v1/audit?outcome=denied&limit=10000").json();
    let denied: BTreeSet<(String, String)> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["action"], "request", "{e}");
            let detail = e["detail"].as_str().unwrap();
            assert!(detail.contains("lacks permission"), "{e}");
            (
                e["actor"].as_str().unwrap().to_string(),
                e["target"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ROLES
        .iter()
        .flat_map(|role| {
            ROUTES
                .iter()
                .filter(|(_, _, perm)| !allows(role, perm))
                .map(move |(m, p, _)| (format!("token:matrix-{role}"), format!("{m} {p}")))
        })
        .collect();
    assert_eq!(denied, expected);
    assert!(server.terminate().success());
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    let mut out: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|v| v[field].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[test]
fn scoped_tokens_stay_in_their_scope() {
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
    let dep = created(&[
        "token", "create", "dep-prod", "--role", "deployer", "--env", "prod",
    ]);
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    for (env, space) in [("prod", None), ("prod", Some("team-a")), ("staging", None)] {
        let mut body = json!({"name": "SEEDED", "value": "v", "environmentId": env});
        if let Some(s) = space {
            body["spaceId"] = json!(s);
        }
        assert_eq!(h.post_json("/v1/secrets", &body).status, 200);
    }

    // An environment-scoped secrets writer.
    let t = h.with_token(&sw_prod);
    assert_eq!(ids(&t.get("/v1/environments").json(), "id"), ["prod"]);
    assert_eq!(ids(&t.get("/v1/spaces").json(), "id"), ["team-a", "team-b"]);
    assert_forbidden(
        &t.get("/v1/spaces?environmentId=staging"),
        "scopes:read",
        "sw-prod",
    );
    assert_eq!(t.get("/v1/secrets?environmentId=prod").status, 200);
    let r = t.get("/v1/secrets?environmentId=staging");
    assert_forbidden(&r, "secrets:read", "sw-prod");
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .ends_with("for env staging")
    );
    let set = |t: &Http, env: &str, space: Option<&str>| {
        let mut body = json!({"name": "PROBE", "value": "v", "environmentId": env});
        if let Some(s) = space {
            body["spaceId"] = json!(s);
        }
        t.post_json("/v1/secrets", &body)
    };
    assert_forbidden(&set(&t, "staging", None), "secrets:write", "sw-prod");
    // A space of another environment and a space that does not exist get
    // the same answer (not a 400 "not in environment" and a 404).
    let elsewhere = set(&t, "prod", Some("team-s"));
    let missing = set(&t, "prod", Some("no-such-space"));
    assert_forbidden(&elsewhere, "secrets:write", "sw-prod");
    assert_forbidden(&missing, "secrets:write", "sw-prod");
    assert_eq!(
        elsewhere.body.replace("team-s", "X"),
        missing.body.replace("no-such-space", "X")
    );
    assert_eq!(set(&t, "prod", Some("team-a")).status, 200);
    for id in [
        "space:team-s:SEEDED",
        "space:nope:SEEDED",
        "env:staging:SEEDED",
    ] {
        assert_forbidden(
            &t.delete(&format!("/v1/secrets/{id}")),
            "secrets:write",
            "sw-prod",
        );
    }
    assert_eq!(t.delete("/v1/secrets/space:team-a:MISSING").status, 404);
    assert_forbidden(
        &t.post_json(
            "/v1/spaces",
            &json!({"id": "new", "environmentId": "staging"}),
        ),
        "scopes:write",
        "sw-prod",
    );
    assert_eq!(
        t.post_json(
            "/v1/spaces",
            &json!({"id": "team-c", "environmentId": "prod"})
        )
        .status,
        201
    );
    assert_forbidden(
        &t.post_json("/v1/environments", &json!({"id": "mine"})),
        "environments:write",
        "sw-prod",
    );
    // Nothing outside the scope changed.
    let staging = h
        .get("/v1/secrets?environmentId=staging&spaceId=team-s")
        .json()["data"]
        .clone();
    assert_eq!(ids(&staging, "name"), ["SEEDED"]);

    // A space-scoped secrets writer: its space, and its merged view.
    let t = h.with_token(&sw_a);
    let merged = t.get("/v1/secrets?environmentId=prod&spaceId=team-a");
    assert_eq!(merged.status, 200, "{merged:?}");
    assert_eq!(ids(&merged.json()["data"], "name"), ["PROBE", "SEEDED"]);
    assert_forbidden(
        &t.get("/v1/secrets?environmentId=prod"),
        "secrets:read",
        "sw-a",
    );
    assert_forbidden(
        &t.get("/v1/secrets?environmentId=prod&spaceId=team-b"),
        "secrets:read",
        "sw-a",
    );
    assert_eq!(set(&t, "prod", Some("team-a")).status, 200);
    assert_forbidden(&set(&t, "prod", Some("team-b")), "secrets:write", "sw-a");
    assert_forbidden(&set(&t, "prod", None), "secrets:write", "sw-a");
    assert_forbidden(
        &t.delete("/v1/secrets/env:prod:SEEDED"),
        "secrets:write",
        "sw-a",
    );
    assert_eq!(ids(&t.get("/v1/spaces").json(), "id"), ["team-a"]);
    assert_forbidden(
        &t.post_json("/v1/spaces", &json!({"id": "x", "environmentId": "prod"})),
        "scopes:write",
        "sw-a",
    );

    // An environment-scoped deployer.
    let module = wasm(EXAMPLE_RUST_LISTENER);
    let spec = |name: &str, env: &str| json!({"name": name, "environmentId": env});
    assert_eq!(h.deploy(&spec("stage-l", "staging"), &module).status, 201);
    let t = h.with_token(&dep);
    assert_forbidden(
        &t.deploy(&spec("mine", "staging"), &module),
        "listeners:deploy",
        "dep-prod",
    );
    let mut granted = spec("mine", "prod");
    granted["grants"] = json!({"environments": ["staging"]});
    assert_forbidden(&t.deploy(&granted, &module), "listeners:deploy", "dep-prod");
    granted["grants"] = json!({"spaces": ["team-s"]});
    assert_forbidden(&t.deploy(&granted, &module), "listeners:deploy", "dep-prod");
    // Replacing another environment's listener of the same name.
    assert_forbidden(
        &t.deploy(&spec("stage-l", "prod"), &module),
        "listeners:deploy",
        "dep-prod",
    );
    granted["grants"] = json!({"spaces": ["team-a"]});
    assert_eq!(t.deploy(&granted, &module).status, 201);
    assert_eq!(ids(&t.get("/v1/listeners").json(), "name"), ["mine"]);
    let theirs = t.delete("/v1/listeners/stage-l");
    let nobody = t.delete("/v1/listeners/nobody");
    assert_forbidden(&theirs, "listeners:deploy", "dep-prod");
    assert_forbidden(&nobody, "listeners:deploy", "dep-prod");
    assert_forbidden(
        &t.post_json(
            "/v1/events",
            &json!({"topic": "t", "environmentId": "staging"}),
        ),
        "events:emit",
        "dep-prod",
    );
    assert_forbidden(
        &t.post_json(
            "/v1/events",
            &json!({"topic": "t", "environmentId": "prod", "spaceId": "team-s"}),
        ),
        "events:emit",
        "dep-prod",
    );
    // A batch is refused whole when one line is outside the scope: the
    // line in scope does not run either.
    let batch = b"{\"topic\": \"t\", \"environmentId\": \"prod\"}\n\
                  {\"topic\": \"t\", \"environmentId\": \"staging\"}\n";
    let r = t.post_raw("/v1/events/batch", batch.to_vec());
    assert_forbidden(&r, "events:emit", "dep-prod");
    assert!(
        r.json()["error"].as_str().unwrap().starts_with("line 2: "),
        "{r:?}"
    );
    let none = t.get("/v1/runs").json();
    assert_eq!(none["runs"].as_array().map(Vec::len), Some(0), "{none}");
    let r = t.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "prod"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["runs"][0]["listener"], "mine");
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "staging"}),
    );
    assert_eq!(r.json()["runs"][0]["listener"], "stage-l");
    // Runs: its environment's only; an auditor sees all.
    let runs = t.get("/v1/runs").json();
    assert_eq!(ids(&runs["runs"], "environmentId"), ["prod"]);
    // Another environment's listener is as unknown as one never deployed.
    for name in ["stage-l", "never-was"] {
        let r = t.get(&format!("/v1/runs?listener={name}"));
        assert_eq!(r.status, 404, "{r:?}");
        assert_eq!(r.json()["error"], format!("no listener named {name}"));
    }
    let auditor = h.create_token(&json!({"name": "audit", "role": "auditor"}));
    let all = h.with_token(&auditor).get("/v1/runs").json();
    assert_eq!(ids(&all["runs"], "environmentId"), ["prod", "staging"]);

    // Scopes are checked when a token is made.
    let r = h.post_json(
        "/v1/tokens",
        &json!({"name": "boss", "role": "admin", "environmentId": "prod"}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    let r = h.post_json(
        "/v1/tokens",
        &json!({"name": "lost", "role": "deployer", "environmentId": "nope"}),
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = h.post_json(
        "/v1/tokens",
        &json!({"name": "half", "role": "deployer", "spaceId": "team-a"}),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(server.terminate().success());
}
