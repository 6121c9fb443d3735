//! The web console's forms under hostile input, from a signed-in admin
//! with a good form token, so every check past the CSRF guard is reached:
//! each form and each path parameter gets empty, huge, control, markup,
//! traversal, number-edge and non-UTF-8 values, bodies of the wrong type,
//! and fields missing or twice. Every answer is a page in the user's terms
//! (never a 5xx, never a bare body), markup comes back escaped, no page
//! shows the planted value, and afterwards nothing was changed by a bad
//! form, the daemon logged no ERROR and holds the value in none of its
//! files.

mod common;

use common::browser::{Browser, Page};
use common::{Install, Server, token_from};
use keyhole_tests::{SECRET_READER, all_bytes, contains, wasm};
use serde_json::json;

/// The stored secret's value: no page, log or file may show it.
const PLANT: &str = "kh-hostile-form-plant-51c7d2e9";
/// Typed into fields: a field's error may quote what was typed into it
/// (`invalid secret name "…"`), except a secret value field.
const TYPED: &str = "kh-hostile-typed-3e8a0b6f";

/// Values a hostile or careless visitor puts in a field.
fn hostile_values() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "x".repeat(70_000),
        "\0".into(),
        "a\u{7}b\r\nc\t".into(),
        "../../v1/tokens".into(),
        "<script>alert(1)</script>".into(),
        "é中😀".into(),
        "-1".into(),
        "18446744073709551616".into(),
        "1e3".into(),
        "%FF%FE".into(),
        TYPED.into(),
    ]
}

/// What every answer to bad input must be: a page, not a fault, with the
/// markup it was given escaped and no secret value in it.
fn assert_answered(what: &str, page: &Page) {
    assert!(page.status < 500, "{what}: {} {}", page.status, page.body);
    assert!(
        !page.body.contains("<script>alert(1)"),
        "{what}: markup not escaped: {}",
        page.body
    );
    assert!(!page.body.contains(PLANT), "{what}: the value in the page");
    if what.contains(" value=") {
        assert!(
            !page.body.contains(TYPED),
            "{what}: the typed value in the page"
        );
    }
    if page.status >= 400 {
        assert!(
            page.body.contains(r#"role="alert""#),
            "{what}: {} without a message: {:?}",
            page.status,
            page.body
        );
    }
}

/// An answer to a request with the session and a good form token: past
/// the guards, so the form itself was read (no CSRF refusal, no
/// sign-in).
fn assert_past_the_guard(what: &str, page: &Page) {
    assert_answered(what, page);
    assert_ne!(page.status, 403, "{what}: {}", page.body);
    assert!(
        !page
            .location
            .as_deref()
            .is_some_and(|l| l.starts_with("/signin")),
        "{what}: sent to sign in"
    );
}

#[test]
fn hostile_forms_get_a_page_in_the_users_terms_and_change_nothing() {
    let k = Install::new();
    let token = token_from(&k.init());
    let log = k.dir.path().join("serve.log");
    let server = Server::start_logged(&k, &token, &[], &log);
    let h = server.http();
    for (path, body) in [
        ("/v1/environments", json!({"id": "prod"})),
        (
            "/v1/spaces",
            json!({"id": "team-a", "environmentId": "prod"}),
        ),
        (
            "/v1/secrets",
            json!({"name": "TOKEN", "value": PLANT, "environmentId": "prod"}),
        ),
        (
            "/v1/secrets",
            json!({"name": "TOKEN", "value": format!("{PLANT}-2"), "environmentId": "prod"}),
        ),
    ] {
        let r = h.post_json(path, &body);
        assert!(r.status < 300, "{path}: {r:?}");
    }
    let spec = json!({"name": "reader", "environmentId": "prod", "topics": ["greet:*"]});
    assert_eq!(h.deploy(&spec, &wasm(SECRET_READER)).status, 201);
    let before = state(&h);

    let mut b = Browser::new(&server.base);
    assert_eq!(b.sign_in(&token).status, 303);
    let csrf = b.get("/environments").csrf();
    let origin = server.base.clone();

    // Each form, each field hostile in turn, the others sensible.
    let forms: &[(&str, &[(&str, &str)])] = &[
        ("/environments", &[("id", "fresh")]),
        (
            "/environments/prod/secrets",
            &[("name", "OTHER"), ("value", "v"), ("topics", "")],
        ),
        ("/environments/prod/spaces", &[("id", "team-b")]),
        (
            "/spaces/team-a/secrets",
            &[("name", "OTHER"), ("value", "v")],
        ),
        ("/secrets/env:prod:TOKEN/rollback", &[("version", "1")]),
        ("/secrets/env:prod:TOKEN/destroy", &[("version", "1")]),
        (
            "/listeners/reader/test",
            &[("topic", "greet:hello"), ("payload", "{}")],
        ),
        (
            "/tokens",
            &[
                ("name", "newcomer"),
                ("role", "reader"),
                ("environment", ""),
                ("space", ""),
                ("expires_in", ""),
            ],
        ),
    ];
    let mut answered = 0;
    for (path, fields) in forms {
        for (i, (field, _)) in fields.iter().enumerate() {
            for value in hostile_values() {
                let mut sent: Vec<(&str, &str)> = vec![("csrf", &csrf)];
                sent.extend(fields.iter().copied());
                sent[i + 1] = (field, &value);
                let page = b.post(path, &sent);
                let shown: String = value.chars().take(40).collect();
                assert_past_the_guard(&format!("POST {path} {field}={shown:?}"), &page);
                answered += 1;
            }
            // The field missing, and the field twice.
            let mut missing: Vec<(&str, &str)> = vec![("csrf", &csrf)];
            missing.extend(fields.iter().copied().filter(|(f, _)| f != field));
            assert_past_the_guard(
                &format!("POST {path} without {field}"),
                &b.post(path, &missing),
            );
            let mut twice: Vec<(&str, &str)> = vec![("csrf", &csrf)];
            twice.extend(fields.iter().copied());
            twice.push((field, "again"));
            assert_past_the_guard(&format!("POST {path} {field} twice"), &b.post(path, &twice));
            answered += 2;
        }
        // Bodies no form makes: bytes that are not UTF-8, JSON, nothing.
        let bad_bodies: [(&str, Vec<u8>); 4] = [
            (
                "application/x-www-form-urlencoded",
                [
                    b"csrf=".as_slice(),
                    csrf.as_bytes(),
                    b"&id=\xff\xfe&name=%FF%FE%00",
                ]
                .concat(),
            ),
            ("application/json", br#"{"id":"json"}"#.to_vec()),
            ("text/plain", b"id=plain".to_vec()),
            ("application/x-www-form-urlencoded", Vec::new()),
        ];
        for (content_type, body) in bad_bodies {
            let page = b.send_bytes("POST", path, Some(&origin), Some((content_type, body)));
            assert_answered(&format!("POST {path} as {content_type}"), &page);
            answered += 1;
        }
    }

    // A secret value typed into a form that is refused for another
    // field is not shown back on the refusal.
    for (path, name_field) in [
        ("/environments/prod/secrets", ("name", "")),
        ("/environments/prod/secrets", ("name", "bad name!")),
        ("/spaces/team-a/secrets", ("name", "")),
    ] {
        let page = b.post(path, &[("csrf", &csrf), name_field, ("value", TYPED)]);
        assert_eq!(page.status, 400, "{path}: {}", page.body);
        assert!(
            !page.body.contains(TYPED),
            "{path}: the typed value shown back"
        );
        answered += 1;
    }

    // A form past the body limit (2 MB) by 16 KiB: 413, a page that says
    // so, and nothing of the value in it. Only a little past it: the daemon
    // answers without reading the rest and closes, and a client still
    // writing megabytes then fails its write (a broken pipe) before it
    // reads the answer.
    let huge = format!("{TYPED}{}", "v".repeat((2 << 20) + (16 << 10)));
    let page = b.post(
        "/environments/prod/secrets",
        &[("csrf", &csrf), ("name", "HUGE"), ("value", &huge)],
    );
    assert_eq!(page.status, 413, "{}", page.body);
    assert!(
        page.body.contains("larger than the console accepts"),
        "{}",
        page.body
    );
    assert_past_the_guard("POST a 2 MB secret value=", &page);
    answered += 1;

    // The deploy form (multipart): bodies that are not multipart, a
    // module that is not wasm, hostile fields, too many fields.
    let module = wasm(SECRET_READER);
    for (what, field, value) in [
        ("junk module", "name", "junk"),
        ("hostile name", "name", "<script>alert(1)</script>"),
        ("huge topics", "topics", &"t:".repeat(40_000)),
        ("memory not a number", "memory_mib", "-1"),
        ("timeout overflow", "timeout_ms", "18446744073709551616"),
        ("settings not KEY=VALUE", "settings", "no equals sign"),
        ("a space of another world", "space", "../../v1/tokens"),
    ] {
        let junk: &[u8] = if what == "junk module" {
            b"\0asm junk"
        } else {
            &module
        };
        let mut parts: Vec<(&str, &str, &[u8])> = vec![
            ("csrf", "text/plain", csrf.as_bytes()),
            ("environment", "text/plain", b"prod"),
            ("name", "text/plain", b"deployed"),
        ];
        parts.retain(|(n, _, _)| *n != field);
        parts.push((field, "text/plain", value.as_bytes()));
        parts.push(("module", "application/wasm", junk));
        let (content_type, body) = common::multipart(&parts);
        let page = b.send_bytes(
            "POST",
            "/listeners",
            Some(&origin),
            Some((&content_type, body)),
        );
        assert_past_the_guard(&format!("POST /listeners ({what})"), &page);
        answered += 1;
    }
    let many: Vec<(String, &str, &[u8])> = (0..40)
        .map(|i| (format!("f{i}"), "text/plain", b"x".as_slice()))
        .collect();
    let many: Vec<(&str, &str, &[u8])> =
        many.iter().map(|(n, t, v)| (n.as_str(), *t, *v)).collect();
    for (content_type, body) in [
        common::multipart(&many),
        (
            "multipart/form-data; boundary=nope".to_owned(),
            b"garbage".to_vec(),
        ),
        ("multipart/form-data".to_owned(), b"--x\r\n".to_vec()),
        (
            "application/x-www-form-urlencoded".to_owned(),
            b"name=x".to_vec(),
        ),
    ] {
        let page = b.send_bytes(
            "POST",
            "/listeners",
            Some(&origin),
            Some((&content_type, body)),
        );
        assert_answered(&format!("POST /listeners as {content_type}"), &page);
        answered += 1;
    }

    // The sign-in form, which anyone can reach: no hostile body signs in.
    let mut stranger = Browser::new(&server.base);
    for value in hostile_values() {
        let csrf = stranger.get("/signin").csrf();
        let page = stranger.post("/signin", &[("csrf", &csrf), ("token", &value)]);
        assert_answered("POST /signin with a hostile token", &page);
        let csrf = stranger.get("/signin").csrf();
        let page = stranger.post(
            "/signin",
            &[("csrf", &csrf), ("token", &token), ("token", &value)],
        );
        assert_answered("POST /signin with the token twice", &page);
        answered += 2;
    }
    let page = stranger.send_bytes(
        "POST",
        "/signin",
        Some(&origin),
        Some((
            "application/json",
            format!(r#"{{"token":"{token}"}}"#).into_bytes(),
        )),
    );
    assert_answered("POST /signin as JSON", &page);
    assert!(
        !stranger.cookies.contains_key("keyhole_session"),
        "a hostile sign-in opened a session"
    );

    // Hostile path parameters, on pages and on forms.
    let segments = [
        "%00",
        "..",
        "..%2F..%2Fv1%2Ftokens",
        "%2e%2e",
        "%FF%FE",
        "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "-1",
        "18446744073709551616",
        "nope",
    ];
    // Long: as is, and three times as long once percent-encoded on its way
    // to the API (past any address's length).
    let long = "a".repeat(5_000);
    let dashes = "-".repeat(22_000);
    for seg in segments
        .iter()
        .copied()
        .chain([long.as_str(), dashes.as_str()])
    {
        for page in [
            format!("/environments/{seg}"),
            format!("/spaces/{seg}"),
            format!("/spaces/{seg}/secrets"),
            format!("/spaces/{seg}/listeners"),
            format!("/secrets/{seg}/history"),
            format!("/listeners/{seg}"),
            format!("/runs/{seg}"),
            format!("/runs?listener={seg}"),
            format!("/runs?before={seg}"),
            format!("/audit?secret={seg}"),
            format!("/audit?before={seg}"),
            format!("/audit?outcome={seg}"),
        ] {
            assert_past_the_guard(&format!("GET {page:.80}"), &b.get(&page));
            answered += 1;
        }
        for form in [
            format!("/environments/{seg}/secrets"),
            format!("/environments/prod/secrets/{seg}/delete"),
            format!("/spaces/{seg}/secrets/TOKEN/revert"),
            format!("/secrets/{seg}/rollback"),
            format!("/secrets/{seg}/undelete"),
            format!("/listeners/{seg}/delete"),
            format!("/listeners/{seg}/test"),
            format!("/tokens/{seg}/revoke"),
        ] {
            let fields = [
                ("csrf", csrf.as_str()),
                ("version", "1"),
                ("name", "X"),
                ("value", "v"),
                ("topic", "greet:hi"),
            ];
            assert_past_the_guard(&format!("POST {form:.80}"), &b.post(&form, &fields));
            answered += 1;
        }
    }
    assert!(answered > 400, "{answered} requests");

    // Destroying is for good: a destroy form that is neither of the page's
    // two (one version; every version with `all=1`) is refused, never read
    // as "every version" (the states below show nothing was destroyed).
    for fields in [
        &[("all", "0")][..],
        &[("all", "")],
        &[("all", "1"), ("version", "3")],
        &[("version", "3"), ("all", "0")],
        &[],
    ] {
        let mut sent = vec![("csrf", csrf.as_str())];
        sent.extend_from_slice(fields);
        let page = b.post("/secrets/env:prod:TOKEN/destroy", &sent);
        assert_eq!(page.status, 400, "{fields:?}: {}", page.body);
        assert_past_the_guard(&format!("POST destroy {fields:?}"), &page);
    }

    // The version forms with good fields work (with the form parsed
    // through `serde(flatten)`, every number was refused as text).
    let back = b.post(
        "/secrets/env:prod:TOKEN/rollback",
        &[("csrf", &csrf), ("version", "1")],
    );
    assert_eq!(
        (back.status, back.location.as_deref()),
        (
            303,
            Some("/secrets/env%3Aprod%3ATOKEN/history?done=rolled-back")
        ),
        "{}",
        back.body
    );
    let gone = b.post(
        "/secrets/env:prod:TOKEN/destroy",
        &[("csrf", &csrf), ("version", "2")],
    );
    assert_eq!(gone.status, 303, "{}", gone.body);
    let history = h.get("/v1/secrets/env:prod:TOKEN/history").json();
    let states: Vec<(u64, &str)> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [(1, "kept"), (2, "destroyed"), (3, "current")]);

    // Nothing changed but what a form asked for: every name in a new line
    // is one a form sent (a field is hostile only to its own rules: `-1`
    // is a good environment id, any text a good secret value), and
    // nothing was removed but versions of the secret the version forms
    // worked on. A traversal that reached another route would show here.
    let after = state(&h);
    let mut sent: Vec<String> = hostile_values();
    sent.extend(
        forms
            .iter()
            .flat_map(|(_, f)| f.iter().map(|(_, v)| v.to_string())),
    );
    sent.extend(["X", "prod", "team-a", "TOKEN"].map(String::from));
    for line in after.iter().filter(|v| !before.contains(v)) {
        let (kind, rest) = line.split_once(' ').unwrap();
        let names: Vec<&str> = match kind {
            // `secret env:prod:NAME vN`
            "secret" => rest.split(' ').next().unwrap().split(':').skip(1).collect(),
            _ => vec![rest],
        };
        assert!(
            names.iter().all(|n| sent.iter().any(|s| s == n)),
            "{line} was made by no form; now: {after:?}"
        );
    }
    for gone in before.iter().filter(|v| !after.contains(v)) {
        assert!(
            gone.starts_with("secret env:prod:TOKEN "),
            "a bad form removed {gone}; now: {after:?}"
        );
    }
    // The daemon is still up, and logged no fault.
    assert_eq!(h.get("/healthz").status, 200);
    drop(server);
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log_text.contains(PLANT),
        "the daemon's log holds the value"
    );
    for line in log_text.lines() {
        assert!(
            !line.contains("ERROR") && !line.contains("panicked"),
            "the daemon logged a fault: {line}"
        );
    }
    assert!(!contains(&all_bytes(&k.dir.path().join("data")), PLANT));
}

/// The installation's state as lines: environments, spaces, secrets with
/// their versions, listeners, tokens.
fn state(h: &common::Http) -> Vec<String> {
    let mut out = Vec::new();
    for e in h.get("/v1/environments").json().as_array().unwrap() {
        let id = e["id"].as_str().unwrap();
        out.push(format!("environment {id}"));
        for s in h
            .get(&format!("/v1/spaces?environmentId={id}"))
            .json()
            .as_array()
            .unwrap()
        {
            let space = s["id"].as_str().unwrap();
            out.push(format!("space {space}"));
            let path = format!("/v1/secrets?environmentId={id}&spaceId={space}");
            for x in h.get(&path).json()["data"].as_array().unwrap() {
                out.push(format!(
                    "secret {} v{}",
                    x["id"].as_str().unwrap(),
                    x["version"]
                ));
            }
        }
        let path = format!("/v1/secrets?environmentId={id}");
        for x in h.get(&path).json()["data"].as_array().unwrap() {
            out.push(format!(
                "secret {} v{}",
                x["id"].as_str().unwrap(),
                x["version"]
            ));
        }
    }
    for l in h.get("/v1/listeners").json().as_array().unwrap() {
        out.push(format!("listener {}", l["name"].as_str().unwrap()));
    }
    for t in h.get("/v1/tokens").json().as_array().unwrap() {
        out.push(format!("token {}", t["name"].as_str().unwrap()));
    }
    out.sort();
    out.dedup();
    out
}
