//! The web console's guards, over plain HTTP against `keyhole serve` (the
//! browser walk is `console_browser.rs`): CSRF and origin checks on every
//! form, sign-in refusals and their audit entries, session expiry and
//! revocation, roles (an action the role lacks is not shown, and refused
//! when posted anyway), the content policy and cookie flags, and no value
//! in any page or the daemon's log.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::{Install, Server, token_from};
use keyhole_tests::{SECRET_READER, wasm};
use serde_json::json;

/// The admin's client, once it has made environment `prod`.
fn with_prod(server: &Server) -> common::Http {
    let admin = server.http();
    let r = admin.post_json("/v1/environments", &json!({"id": "prod"}));
    assert_eq!(r.status, 201, "{r:?}");
    admin
}

/// An installation with a daemon, the admin token and `extra` serve flags.
fn daemon(extra: &[&str]) -> (Install, Server, String) {
    let k = Install::new();
    let token = token_from(&k.init());
    let server = Server::start(&k, &token, extra);
    (k, server, token)
}

#[test]
fn forms_need_this_origin_and_the_session_csrf_token() {
    let (_k, server, token) = daemon(&[]);
    let mut b = Browser::new(&server.base);
    let signed = b.sign_in(&token);
    assert_eq!(
        (signed.status, signed.location.as_deref()),
        (303, Some("/"))
    );
    let csrf = b.get("/environments").csrf();
    let base = server.base.clone();

    let no_token = b.post("/environments", &[("id", "a")]);
    assert_eq!(no_token.status, 403, "{}", no_token.body);
    assert!(no_token.body.contains("form token is missing or stale"));
    let wrong = "0".repeat(64);
    assert_eq!(
        b.post("/environments", &[("csrf", &wrong), ("id", "b")])
            .status,
        403
    );
    let elsewhere = b.send(
        "POST",
        "/environments",
        Some("http://evil.example"),
        Some(&[("csrf", &csrf), ("id", "c")]),
    );
    assert_eq!(elsewhere.status, 403);
    assert!(elsewhere.body.contains("another site"));
    let no_origin = b.send(
        "POST",
        "/environments",
        None,
        Some(&[("csrf", &csrf), ("id", "d")]),
    );
    assert_eq!(no_origin.status, 403);
    // The same form from this origin, with the token, works.
    let ok = b.send(
        "POST",
        "/environments",
        Some(&base),
        Some(&[("csrf", &csrf), ("id", "e")]),
    );
    assert_eq!(
        (ok.status, ok.location.as_deref()),
        (303, Some("/environments/e?done=env-created"))
    );
    let envs = server.http().get("/v1/environments").json();
    let ids: Vec<&str> = envs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["e"], "only the good form changed anything");

    // The sign-in form's own token is a double-submit cookie.
    let mut fresh = Browser::new(&server.base);
    let csrf = fresh.get("/signin").csrf();
    fresh.cookies.clear();
    let r = fresh.post("/signin", &[("csrf", &csrf), ("token", &token)]);
    assert_eq!(r.status, 403, "no sign-in cookie");
    assert!(!fresh.cookies.keys().any(|k| k.contains("session")));
}

#[test]
fn a_wrong_token_cannot_sign_in_and_is_audited() {
    let (_k, server, _token) = daemon(&[]);
    let mut b = Browser::new(&server.base);
    let r = b.sign_in("kh_0000000000000000000000000000000000000000000000000000000000000000");
    assert_eq!(r.status, 401);
    assert!(r.body.contains("That token was not accepted"));
    assert!(!b.cookies.contains_key("keyhole_session"));
    let page = b.get("/environments");
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/signin"))
    );
    let audit = server.http().get("/v1/audit?outcome=denied").json();
    let denied = audit["entries"].as_array().unwrap();
    assert!(
        denied
            .iter()
            .any(|e| e["actor"] == "unauthenticated" && e["target"] == "POST /signin"),
        "{denied:?}"
    );
}

#[test]
fn sessions_expire_when_idle_and_end_with_their_token() {
    let (_k, server, token) = daemon(&["--console-idle-timeout", "1500ms"]);
    let mut b = Browser::new(&server.base);
    b.sign_in(&token);
    assert_eq!(b.get("/environments").status, 200);
    std::thread::sleep(Duration::from_millis(2_000));
    let r = b.get("/environments");
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/signin?expired=1"))
    );
    assert!(
        b.get("/signin?expired=1")
            .body
            .contains("Your session ended")
    );

    // A revoked token's session ends on its next request.
    let ops = server
        .http()
        .create_token(&serde_json::json!({"name": "ops", "role": "admin"}));
    let mut o = Browser::new(&server.base);
    o.sign_in(&ops);
    assert_eq!(o.get("/tokens").status, 200);
    assert_eq!(server.http().delete("/v1/tokens/ops").status, 204);
    let r = o.get("/tokens");
    assert_eq!(
        (r.status, r.location.as_deref()),
        (303, Some("/signin?expired=1"))
    );

    // Signing out ends the session at the daemon, not only in the browser.
    let mut s = Browser::new(&server.base);
    s.sign_in(&token);
    let kept = s.cookies.clone();
    let csrf = s.get("/environments").csrf();
    let out = s.post("/signout", &[("csrf", &csrf)]);
    assert_eq!(
        (out.status, out.location.as_deref()),
        (303, Some("/signin"))
    );
    s.cookies = kept;
    assert_eq!(s.get("/environments").status, 303, "the old cookie is dead");
}

#[test]
fn a_role_without_a_permission_sees_no_action_and_is_refused() {
    let (_k, server, _token) = daemon(&[]);
    let admin = with_prod(&server);
    let writer =
        admin.create_token(&serde_json::json!({"name": "writer", "role": "secrets-writer"}));
    let mut b = Browser::new(&server.base);
    b.sign_in(&writer);

    // secrets-writer: may set secrets and create spaces, not environments.
    let envs = b.get("/environments");
    assert_eq!(envs.status, 200);
    assert!(
        !envs.body.contains(r#"action="/environments""#),
        "no create form"
    );
    let settings = b.get("/environments/prod");
    assert!(
        settings
            .body
            .contains(r#"action="/environments/prod/secrets""#)
    );
    assert!(
        !settings.body.contains(r#"href="/tokens""#),
        "no Tokens area"
    );
    let csrf = settings.csrf();
    let r = b.post("/environments", &[("csrf", &csrf), ("id", "sneaky")]);
    assert_eq!(r.status, 403);
    assert!(r.body.contains("environments:write"), "{}", r.body);
    let r = b.post(
        "/tokens",
        &[("csrf", &csrf), ("name", "mine"), ("role", "admin")],
    );
    assert_eq!(r.status, 403);
    assert_eq!(admin.get("/v1/environments/sneaky").status, 404);
    assert!(
        admin.get("/v1/tokens").body.contains("writer")
            && !admin.get("/v1/tokens").body.contains("mine")
    );
    // Both refusals are in the audit log under the token's name.
    let denied = admin
        .get("/v1/audit?actor=token:writer&outcome=denied")
        .json();
    assert!(denied["entries"].as_array().unwrap().len() >= 2, "{denied}");
    // A page the role may not read at all is a refusal page, not a 500.
    let audit = b.get("/audit");
    assert_eq!(audit.status, 403);
}

#[test]
fn pages_carry_the_content_policy_and_cookie_flags_and_never_a_value() {
    let k = Install::new();
    let token = token_from(&k.init());
    let log = k.dir.path().join("serve.log");
    let server = Server::start_logged(&k, &token, &[], &log);
    let mut b = Browser::new(&server.base);

    let signin = b.get("/signin");
    assert_eq!(
        signin.header("content-security-policy"),
        ["default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"]
    );
    assert_eq!(signin.header("x-frame-options"), ["DENY"]);
    assert_eq!(signin.header("cache-control"), ["no-store"]);
    assert!(!signin.body.contains("<script") && !signin.body.contains("style="));
    let r = b.sign_in(&token);
    let cookie = r
        .header("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("keyhole_session="))
        .expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: {cookie}"
    );
    let css = b.get("/assets/console.css");
    assert_eq!(css.header("content-type"), ["text/css; charset=utf-8"]);

    let plant = "kh-console-plant-4b9e1f0a7c";
    let csrf = b.get("/environments").csrf();
    b.post("/environments", &[("csrf", &csrf), ("id", "prod")]);
    b.post(
        "/environments/prod/spaces",
        &[("csrf", &csrf), ("id", "s1")],
    );
    let saved = b.post(
        "/environments/prod/secrets",
        &[
            ("csrf", &csrf),
            ("name", "TOKEN"),
            ("value", plant),
            ("topics", ""),
        ],
    );
    assert_eq!(saved.status, 303);
    let over = b.post(
        "/spaces/s1/secrets",
        &[("csrf", &csrf), ("name", "TOKEN"), ("value", plant)],
    );
    assert_eq!(over.status, 303);
    // Bad input is a page in the user's terms, never a 500.
    let bad = b.post(
        "/environments/prod/secrets",
        &[("csrf", &csrf), ("name", "bad name!"), ("value", plant)],
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(!bad.body.contains(plant));
    let missing = b.get("/environments/nope");
    assert_eq!(missing.status, 404);
    for path in [
        "/environments",
        "/environments/prod",
        "/spaces/s1/secrets",
        "/audit",
        "/runs",
        "/listeners",
        "/tokens",
    ] {
        let p = b.get(path);
        assert_eq!(p.status, 200, "{path}");
        assert!(!p.body.contains(plant), "{path} shows the value");
    }
    drop(server);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains(plant),
        "the daemon's log holds the value"
    );
}

/// Redeploying a listener from the console: when the grants of the
/// deployment it replaces are not carried over the page says so (the
/// API's answer does), and with "keep the grants" checked they are kept.
#[test]
fn a_console_redeploy_says_when_grants_are_dropped_and_keeps_them_when_asked() {
    let k = Install::new();
    let token = token_from(&k.init());
    let server = Server::start(&k, &token, &[]);
    let h = server.http();
    for env in ["prod", "shared"] {
        assert_eq!(
            h.post_json("/v1/environments", &json!({"id": env})).status,
            201
        );
    }
    let granted = json!({"name": "reader", "environmentId": "prod", "topics": ["t"],
                         "grants": {"environments": ["shared"]}});
    let module = wasm(SECRET_READER);
    let grants = || h.get("/v1/listeners/reader").json()["grants"]["environments"].clone();

    let mut b = Browser::new(&server.base);
    assert_eq!(b.sign_in(&token).status, 303);
    let csrf = b.get("/listeners").csrf();
    let mut redeploy = |keep: bool| {
        let mut parts: Vec<(&str, &str, &[u8])> = vec![
            ("csrf", "text/plain", csrf.as_bytes()),
            ("environment", "text/plain", b"prod"),
            ("name", "text/plain", b"reader"),
            ("topics", "text/plain", b"t"),
        ];
        if keep {
            parts.push(("keep_grants", "text/plain", b"1"));
        }
        parts.push(("module", "application/wasm", &module));
        let (content_type, body) = common::multipart(&parts);
        let origin = server.base.clone();
        let page = b.send_bytes(
            "POST",
            "/listeners",
            Some(&origin),
            Some((&content_type, body)),
        );
        assert_eq!(page.status, 303, "{}", page.body);
        let to = page.location.unwrap();
        (to.clone(), b.get(&to).body)
    };

    assert_eq!(h.deploy(&granted, &module).status, 201);
    let (to, shown) = redeploy(false);
    assert_eq!(to, "/listeners/reader?done=deployed-grants-dropped");
    assert!(shown.contains("without the grants"), "{shown}");
    assert_eq!(grants(), json!([]));

    assert_eq!(h.deploy(&granted, &module).status, 201);
    let (to, _) = redeploy(true);
    assert_eq!(to, "/listeners/reader?done=deployed");
    assert_eq!(grants(), json!(["shared"]));
    assert!(server.terminate().success());
}

/// A token of one space opens that space's Secrets page (it may not read
/// the environment's secrets: the inherited column is left empty, not the
/// page refused) and can save a secret there; each visit leaves no
/// `denied` entry in the audit log.
#[test]
fn a_space_token_opens_its_spaces_secrets_page() {
    let (_k, server, _token) = daemon(&[]);
    let admin = with_prod(&server);
    let space = json!({"id": "team-a", "environmentId": "prod"});
    assert_eq!(admin.post_json("/v1/spaces", &space).status, 201);
    let writer = admin.create_token(&json!({"name": "team-a-writer", "role": "secrets-writer",
                                            "environmentId": "prod", "spaceId": "team-a"}));
    let mut b = Browser::new(&server.base);
    assert_eq!(b.sign_in(&writer).status, 303);
    let page = b.get("/spaces/team-a/secrets");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf();
    let saved = b.post(
        "/spaces/team-a/secrets",
        &[("csrf", &csrf), ("name", "TEAM_KEY"), ("value", "v")],
    );
    assert_eq!(saved.status, 303, "{}", saved.body);
    assert!(b.get("/spaces/team-a/secrets").body.contains("TEAM_KEY"));
    let denied = admin.get("/v1/audit?outcome=denied").json();
    assert_eq!(denied["entries"], json!([]), "{denied}");
}

/// "Updated by" names whoever made the current version: not someone
/// whose write then failed (a stale expected version), and the author of
/// a rollback rather than of the last `set`.
#[test]
fn updated_by_names_who_made_the_current_version() {
    let (_k, server, token) = daemon(&[]);
    let admin = with_prod(&server);
    let writer = |name: &str| {
        let t = admin.create_token(&json!({"name": name, "role": "secrets-writer"}));
        admin.with_token(&t)
    };
    let (alice, bob) = (writer("alice"), writer("bob"));
    let set = |h: &common::Http, value: &str, expected: Option<u64>| {
        let mut body = json!({"name": "X", "value": value, "environmentId": "prod"});
        if let Some(v) = expected {
            body["expectedVersion"] = json!(v);
        }
        h.post_json("/v1/secrets", &body).status
    };
    assert_eq!(set(&alice, "one", None), 200);
    assert_eq!(set(&bob, "two", None), 200);
    assert_eq!(set(&alice, "three", Some(1)), 409, "a stale version");
    let mut b = Browser::new(&server.base);
    assert_eq!(b.sign_in(&token).status, 303);
    let row = |page: &str| {
        let at = page.find("<code>X</code>").expect("the secret's row");
        page[at..at + page[at..].find("</tr>").unwrap()].to_owned()
    };
    let shown = row(&b.get("/environments/prod").body);
    assert!(
        shown.contains("token:bob") && !shown.contains("token:alice"),
        "{shown}"
    );

    let r = alice.post_json("/v1/secrets/env:prod:X/rollback", &json!({"version": 1}));
    assert_eq!(r.status, 200, "{r:?}");
    let shown = row(&b.get("/environments/prod").body);
    assert!(shown.contains("token:alice"), "{shown}");
}
