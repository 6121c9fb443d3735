//! Least privilege through a running daemon, as an operator drives it with
//! the CLI (and a program with the API): declared secrets (`deploy
//! --secret`), topic-bound secrets (`secrets set --topics`), and grants
//! bound to the module across redeploys (`deploy --keep-grants`).

mod common;

use common::*;
use keyhole_tests::{PURE_SECRET_READER, SECRET_READER, fnv, wasm};
use serde_json::{Value, json};

/// What each read of the one run of `listener` got (secret-reader's
/// results), from `POST /v1/events`.
fn emit(h: &Http, topic: &str, listener: &str, reads: Value) -> Vec<Value> {
    let r = h.post_json(
        "/v1/events",
        &json!({ "topic": topic, "environmentId": "prod", "payload": { "reads": reads } }),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let runs = r.json()["runs"].as_array().unwrap().clone();
    let run = runs
        .iter()
        .find(|r| r["listener"] == listener)
        .unwrap_or_else(|| panic!("no run of {listener}: {runs:?}"));
    let value = run["outcome"]["value"].as_str().expect("the run succeeded");
    let v: Value = serde_json::from_str(value).unwrap();
    v["results"].as_array().unwrap().clone()
}

/// `keyhole init`, a daemon, environments prod and staging.
fn setup() -> (Install, Server) {
    let k = Install::new();
    let token = k.init();
    let server = Server::start(&k, &token, &[]);
    k.scopes("prod", &[]);
    k.scopes("staging", &[]);
    (k, server)
}

fn set(k: &Install, args: &[&str], value: &str) -> String {
    let out = k.run_stdin(args, value);
    assert_eq!(out.code, 0, "{out:?}");
    out.stdout
}

#[test]
fn declared_and_topic_bound_secrets_through_the_daemon() {
    let (k, server) = setup();
    let h = server.http();
    set(
        &k,
        &["secrets", "set", "SLACK_TOKEN", "--env", "prod"],
        "xoxb-1",
    );
    set(&k, &["secrets", "set", "OTHER", "--env", "prod"], "other-1");
    let out = set(
        &k,
        &[
            "secrets", "set", "HOOK", "--env", "prod", "--topics", "action:*",
        ],
        "hook-1",
    );
    assert!(
        out.contains("only during events on topics action:*"),
        "{out}"
    );
    // The binding shows in the listing, the table and the JSON.
    let table = k.ok(&["secrets", "list", "--env", "prod"]);
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    assert!(row("HOOK").ends_with("action:*"), "{table}");
    assert!(row("OTHER").ends_with('*'), "{table}");
    let listed = h.get("/v1/secrets?environmentId=prod").json();
    let topics = |name: &str| {
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["topics"]
            .clone()
    };
    assert_eq!(
        (topics("HOOK"), topics("OTHER")),
        (json!(["action:*"]), json!(["*"]))
    );
    // A value replaced without --topics keeps its binding.
    set(&k, &["secrets", "set", "HOOK", "--env", "prod"], "hook-2");
    let listed = h.get("/v1/secrets?environmentId=prod").json();
    assert_eq!(listed["data"][0]["name"], "HOOK");
    assert_eq!(listed["data"][0]["topics"], json!(["action:*"]));
    // A bad glob: exit 2 from the CLI, 400 from the API; nothing changes.
    let out = k.run_stdin(
        &["secrets", "set", "HOOK", "--env", "prod", "--topics", "a["],
        "x",
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("invalid topic glob \"a[\""), "{out:?}");
    let r = h.post_json(
        "/v1/secrets",
        &json!({ "name": "HOOK", "value": "x", "environmentId": "prod", "topics": ["a["] }),
    );
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("invalid")),
        "{r:?}"
    );

    // Declared secrets.
    let file = SECRET_READER;
    let deploy = |extra: &[&str]| {
        let mut args = vec!["deploy", file, "--name", "reader", "--env", "prod"];
        args.extend_from_slice(extra);
        k.run(&args)
    };
    let out = deploy(&["--secret", "SLACK TOKEN"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("secret pattern \"SLACK TOKEN\""),
        "{out:?}"
    );
    let out = deploy(&["--secret", "SLACK_*", "--secret", "HOOK"]);
    assert_eq!(out.code, 0, "{out:?}");
    k.ok(&["deploy", file, "--name", "open", "--env", "prod"]);
    let text = k.ok(&["listeners", "list"]);
    assert!(text.contains("  secrets:    SLACK_*, HOOK"), "{text}");
    assert!(text.contains("  secrets:    *"), "{text}");
    let views = h.get("/v1/listeners").json();
    assert_eq!(views[0]["name"], "open");
    assert_eq!(views[0]["secrets"], json!(["*"]));
    assert_eq!(views[1]["secrets"], json!(["SLACK_*", "HOOK"]));

    let reads = json!([{ "name": "SLACK_TOKEN" }, { "name": "OTHER" }, { "name": "HOOK" }]);
    let r = emit(&h, "action:triggered", "reader", reads.clone());
    assert_eq!(r[0]["fnv"], fnv("xoxb-1"));
    assert_eq!(r[1]["error"], "access-denied", "undeclared");
    assert_eq!(r[2]["fnv"], fnv("hook-2"), "declared, on a bound topic");
    let r = emit(&h, "records:created", "reader", reads.clone());
    assert_eq!(r[2]["error"], "access-denied", "declared, another topic");
    let r = emit(&h, "records:created", "open", reads);
    assert_eq!(
        (r[1]["fnv"].clone(), r[2]["error"].clone()),
        (json!(fnv("other-1")), json!("access-denied"))
    );

    // The operator reads why, in the audit log and the run record.
    let audit = k.ok(&[
        "audit",
        "tail",
        "--outcome",
        "access_denied",
        "--limit",
        "100",
    ]);
    assert!(
        audit.contains("reader OTHER access_denied (name not declared by the deployment)"),
        "{audit}"
    );
    assert!(
        audit.contains("reader HOOK access_denied (secret bound to other topics)"),
        "{audit}"
    );
    let runs = h.get("/v1/runs?listener=open&limit=1").json();
    let id = runs["runs"][0]["id"].as_u64().unwrap();
    let shown = k.ok(&["runs", "show", &id.to_string(), "--json"]);
    assert!(
        shown.contains("get-secret HOOK: access-denied (secret bound to other topics)"),
        "{shown}"
    );
    assert!(server.terminate().success());
}

#[test]
fn grants_are_bound_to_the_module_across_redeploys() {
    let (k, server) = setup();
    let h = server.http();
    set(
        &k,
        &["secrets", "set", "DB_URL", "--env", "staging"],
        "staging-db",
    );
    let across = json!([{ "name": "DB_URL", "environment": "staging" }]);
    let deploy = |file: &str, extra: &[&str]| {
        let mut args = vec!["deploy", file, "--name", "reader", "--env", "prod"];
        args.extend_from_slice(extra);
        k.run(&args)
    };
    let hash = |file: &str| keyhole_runtime::module_sha256(&wasm(file))[..16].to_string();
    let (a, b) = (hash(SECRET_READER), hash(PURE_SECRET_READER));

    // `--keep-grants` with nothing to keep, or beside grants of its own.
    let out = deploy(SECRET_READER, &["--keep-grants"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("no listener named reader is deployed"),
        "{out:?}"
    );
    let out = deploy(SECRET_READER, &["--keep-grants", "--grant-env", "staging"]);
    assert_eq!(out.code, 2, "{out:?}");

    // Module A, granted staging, reads across.
    let out = deploy(SECRET_READER, &["--grant-env", "staging"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!out.stdout.contains("notice"), "{out:?}");
    assert_eq!(
        emit(&h, "t", "reader", across.clone())[0]["fnv"],
        fnv("staging-db")
    );

    // Module B under the same name, stating no grants: denied, and told.
    let out = deploy(PURE_SECRET_READER, &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let notice = format!(
        "notice: the previous deployment of reader (module sha256:{a}) had grants (env staging); \
         they were not carried over to module sha256:{b}, which has none. To keep them, deploy \
         again with --keep-grants"
    );
    assert!(out.stdout.contains(&notice), "{out:?}");
    assert_eq!(
        emit(&h, "t", "reader", across.clone())[0]["error"],
        "access-denied"
    );

    // A again, then B keeping A's grants: allowed, and the audit says so.
    assert_eq!(deploy(SECRET_READER, &["--grant-env", "staging"]).code, 0);
    let out = deploy(PURE_SECRET_READER, &["--keep-grants"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("kept the previous deployment's grants"),
        "{out:?}"
    );
    assert_eq!(
        emit(&h, "t", "reader", across.clone())[0]["fnv"],
        fnv("staging-db")
    );
    let audit = k.ok(&["audit", "tail", "--limit", "100"]);
    let kept =
        format!("listener.deploy listener:reader ok (kept grants of sha256:{a} for sha256:{b})");
    assert!(audit.contains(&kept), "{audit}");
    let dropped = format!(
        "listener.deploy listener:reader ok (grants of sha256:{a} not carried over to sha256:{b})"
    );
    assert!(audit.contains(&dropped), "{audit}");
    let view = &h.get("/v1/listeners").json()[0];
    assert_eq!(view["grants"]["environments"], json!(["staging"]));
    assert_eq!(view["grantsSha256"], view["moduleHash"]);

    // A deployer scoped to prod may not keep a grant of staging: it could
    // not have given it.
    let ci = h.create_token(&json!({ "name": "ci", "role": "deployer", "environmentId": "prod" }));
    let out = k
        .cmd()
        .env("KEYHOLE_TOKEN", &ci)
        .args([
            "deploy",
            SECRET_READER,
            "--name",
            "reader",
            "--env",
            "prod",
            "--keep-grants",
        ])
        .output()
        .unwrap();
    let out = Out::from(out);
    assert_eq!(out.code, 6, "{out:?}");
    assert!(out.stderr.contains("staging"), "{out:?}");
    // Over the API: the same 403, and a 400 for keepGrants with grants.
    let t = Http::without_keep_alive(&h.base, &ci);
    let spec = json!({ "name": "reader", "environmentId": "prod", "keepGrants": true });
    assert_eq!(t.deploy(&spec, &wasm(SECRET_READER)).status, 403);
    let spec = json!({ "name": "reader", "environmentId": "prod", "keepGrants": true,
                       "secrets": ["DB_URL"] });
    let r = h.deploy(&spec, &wasm(SECRET_READER));
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (400, Some("invalid")),
        "{r:?}"
    );
    assert_eq!(
        emit(&h, "t", "reader", across)[0]["fnv"],
        fnv("staging-db"),
        "unchanged"
    );
    assert!(server.terminate().success());
}
