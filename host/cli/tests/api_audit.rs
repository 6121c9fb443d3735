//! The API's audit trail against a real daemon: every admin action through
//! the API is an entry naming its token, a change that fails says so, every
//! 401 and 403 is a `denied` entry, and `GET /v1/audit` pages through it
//! all (auditor and admin only) without ever showing a value or a token.

mod common;

use common::*;
use keyhole_tests::{EXAMPLE_RUST_LISTENER, wasm};
use serde_json::{Value, json};

const VALUE: &str = "audit-api-planted-value-71c4";

fn entries(page: &Value) -> Vec<Value> {
    page["entries"].as_array().unwrap().clone()
}

/// The admin entries, oldest first, as `(actor, action, target, outcome)`.
fn admin_rows(h: &Http) -> Vec<(String, String, String, String)> {
    let mut page = entries(&h.get("/v1/audit?limit=10000").json());
    page.reverse();
    page.iter()
        .filter(|e| e["kind"] == "admin")
        .map(|e| {
            let f = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (f("actor"), f("action"), f("target"), f("outcome"))
        })
        .collect()
}

fn row(actor: &str, action: &str, target: &str, outcome: &str) -> (String, String, String, String) {
    (actor.into(), action.into(), target.into(), outcome.into())
}

#[test]
fn api_actions_and_refusals_are_audited_and_readable_by_auditors() {
    let k = Install::new();
    let admin = k.init();
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();

    assert_eq!(
        h.post_json("/v1/environments", &json!({"id": "prod"}))
            .status,
        201
    );
    let r = h.post_json(
        "/v1/secrets",
        &json!({"name": "SLACK_TOKEN", "value": VALUE, "environmentId": "prod"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let deployer =
        h.create_token(&json!({"name": "ci", "role": "deployer", "environmentId": "prod"}));
    let auditor = h.create_token(&json!({"name": "reader", "role": "auditor"}));
    let spec = json!({"name": "hello", "environmentId": "prod"});
    let ci = h.with_token(&deployer);
    assert_eq!(ci.deploy(&spec, &wasm(EXAMPLE_RUST_LISTENER)).status, 201);
    // Refused: outside the role, and no valid token at all.
    let r = ci.post_json(
        "/v1/secrets",
        &json!({"name": "X", "value": VALUE, "environmentId": "prod"}),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let r = h.send("GET", "/v1/secrets", Some("kh_not-a-token"), None);
    assert_eq!(r.status, 401);
    // A change that fails: recorded, then recorded as failed.
    assert_eq!(h.delete("/v1/secrets/env:prod:MISSING").status, 404);
    assert_eq!(
        h.post_json("/v1/keys/rotate", &json!({"scope": "env:prod"}))
            .status,
        200
    );
    assert_eq!(ci.delete("/v1/listeners/hello").status, 204);
    assert_eq!(h.delete("/v1/tokens/ci").status, 204);

    let a = h.with_token(&auditor);
    let mut rows = admin_rows(&a);
    // `keyhole init` made the admin token, as the local user.
    let init = rows.remove(0);
    assert!(init.0.starts_with("local:"), "{init:?}");
    assert_eq!(
        (&init.1[..], &init.2[..], &init.3[..]),
        ("token.create", "token:admin (role admin, scope all)", "ok")
    );
    let expected = [
        row("token:admin", "environment.create", "env:prod", "ok"),
        row("token:admin", "secret.set", "env:prod/SLACK_TOKEN", "ok"),
        row(
            "token:admin",
            "token.create",
            "token:ci (role deployer, scope env:prod)",
            "ok",
        ),
        row(
            "token:admin",
            "token.create",
            "token:reader (role auditor, scope all)",
            "ok",
        ),
        row("token:ci", "listener.deploy", "listener:hello", "ok"),
        row("token:ci", "request", "POST /v1/secrets", "denied"),
        row("unauthenticated", "request", "GET /v1/secrets", "denied"),
        row("token:admin", "secret.delete", "env:prod/MISSING", "ok"),
        row("token:admin", "secret.delete", "env:prod/MISSING", "failed"),
        row("token:admin", "keys.rotate", "env:prod", "ok"),
        row("token:ci", "listener.undeploy", "listener:hello", "ok"),
        row("token:admin", "token.revoke", "token:ci", "ok"),
    ];
    assert_eq!(rows, expected);

    // Filters and cursors: two at a time, newest first, by one actor.
    let first = a.get("/v1/audit?actor=token:ci&limit=2").json();
    let got = entries(&first);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["action"], "listener.undeploy");
    assert_eq!(got[1]["action"], "request");
    let next = first["next"].as_u64().expect("a cursor");
    let second = a
        .get(&format!("/v1/audit?actor=token:ci&limit=2&before={next}"))
        .json();
    let got = entries(&second);
    assert_eq!(got.len(), 1, "{second}");
    assert_eq!(got[0]["action"], "listener.deploy");
    let after = a.get(&format!("/v1/audit?after={next}&limit=1")).json();
    assert!(entries(&after)[0]["seq"].as_u64().unwrap() > next);

    let v = a.get("/v1/audit/verify").json();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["entries"].as_u64().unwrap() >= expected.len() as u64);

    // Auditors and admins only; bad input is a 400.
    let r = ci.get("/v1/audit");
    assert_eq!(r.status, 401, "a revoked token");
    let dep2 = h.create_token(&json!({"name": "ci2", "role": "deployer"}));
    let r = h.with_token(&dep2).get("/v1/audit");
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["missingPermission"], "audit:read");
    assert_eq!(a.get("/v1/audit?limit=10001").status, 400);
    assert_eq!(a.get("/v1/audit?since=yesterday").status, 400);
    assert_eq!(a.get("/v1/audit?colour=blue").status, 400);

    // Nothing anywhere shows the value or a token.
    let everything = a.get("/v1/audit?limit=10000").body;
    assert!(server.terminate().success());
    for needle in [VALUE, &admin[..], &deployer[..], &auditor[..], &dep2[..]] {
        assert!(!everything.contains(needle), "{needle} in the audit page");
    }
    let mut dirs = vec![k.data.join("audit")];
    let mut files = 0;
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            files += 1;
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            for needle in [VALUE, &admin[3..], &deployer[3..], &auditor[3..]] {
                assert!(!text.contains(needle), "{needle} in {}", p.display());
            }
        }
    }
    assert!(files > 0, "the audit log has files");
}

#[test]
fn a_sealed_daemon_refuses_admin_changes_it_cannot_audit() {
    let k = Install::new();
    let admin = k.init();
    k.scopes("prod", &[]);
    let key = std::fs::read(&k.key).unwrap();
    std::fs::remove_file(&k.key).unwrap();
    let server = Server::start(&k, &admin, &[]);
    let h = server.http();
    let r = h.post_json("/v1/environments", &json!({"id": "staging"}));
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.json()["error"].as_str().unwrap().contains("audit"),
        "{r:?}"
    );
    let r = h.post_json("/v1/tokens", &json!({"name": "t", "role": "auditor"}));
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(h.get("/v1/audit").status, 503);
    assert!(server.terminate().success());
    // Nothing was changed.
    std::fs::write(&k.key, key).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&k.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let envs = k.ok(&["env", "list"]);
    assert!(!envs.contains("staging"), "{envs}");
    assert!(!k.ok(&["token", "list"]).contains("auditor"));
}

/// `serve --audit-keep`: beyond it the oldest segments go, the deletion is
/// an entry of its own, and the chain still verifies.
#[test]
fn audit_retention_is_a_serve_setting() {
    let k = Install::new();
    let admin = k.init();
    let server = Server::start(&k, &admin, &["--audit-keep", "1000"]);
    let h = server.http();
    // Refused requests are cheap entries: 1,500 of them.
    for _ in 0..1_500 {
        assert_eq!(h.send("GET", "/v1/environments", None, None).status, 401);
    }
    let out = k.ok(&["audit", "verify"]);
    assert!(out.contains("audit log verified"), "{out}");
    let all = k.ok(&["audit", "tail", "--json", "--limit", "100000"]);
    let lines: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() < 1_400, "{} entries kept", lines.len());
    assert!(
        lines.iter().any(|e| e["kind"] == "retention"),
        "no retention entry"
    );
    assert!(server.terminate().success());
    let out = k.run(&["serve", "--audit-keep", "10"]);
    assert_eq!(out.code, 2, "{out:?}");
}
