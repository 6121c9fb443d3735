//! The HTTP API over a real loopback socket: authentication, every route,
//! bounded bodies, malformed input that writes nothing, and the OpenAPI
//! document matching what is served.

mod common;

use common::*;
use keyhole_tests::{BIG_MEMORY, EXAMPLE_RUST_LISTENER, SECRET_READER, wasm};
use serde_json::{Value, json};

const VALUE: &str = "api-planted-secret-value-5b2e";

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().or(v["id"].as_str()).unwrap().to_string())
        .collect()
}

fn assert_json_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert!(r.json()["error"].is_string(), "{r:?}");
}

#[test]
fn api_routes_auth_limits_and_openapi() {
    let k = Install::new();
    let token = k.init();
    let server = Server::start(&k, &token, &["--max-module-bytes", "1MiB"]);
    let h = server.http();

    // Authentication.
    let r = h.send("GET", "/healthz", None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    for bad in [None, Some("kh_wrong"), Some(""), Some(&token[..20])] {
        let r = h.send("GET", "/v1/environments", bad, None);
        assert_eq!(r.status, 401, "{bad:?}");
        assert!(r.body.is_empty(), "401 must carry no detail: {:?}", r.body);
        assert_eq!(r.www_authenticate.as_deref(), Some("Bearer"));
    }
    let r = h.send("GET", "/metrics", None, None);
    assert_eq!((r.status, r.body.as_str()), (401, ""));
    assert_eq!(h.get("/v1/environments").json(), json!([]));

    // Environments and spaces.
    assert_eq!(
        h.post_json("/v1/environments", &json!({"id": "prod"}))
            .status,
        201
    );
    assert_json_error(
        &h.post_json("/v1/environments", &json!({"id": "prod"})),
        409,
    );
    assert_json_error(&h.post_json("/v1/environments", &json!({"id": "a.b"})), 400);
    // A path segment that is not UTF-8 once decoded: a JSON error in the
    // API's shape like every other bad input, not axum's plain text.
    for path in [
        "/v1/environments/%FF",
        "/v1/tokens/%FF%FE/rotate",
        "/v1/secrets/env:prod:%C3%28/history",
        "/v1/runs/%FF",
    ] {
        let method = if path.ends_with("rotate") {
            "POST"
        } else {
            "GET"
        };
        let r = h.send(method, path, Some(&token), None);
        assert_json_error(&r, 400);
        assert_eq!(r.json()["code"], "invalid", "{path}: {r:?}");
    }
    // A known route with a method it lacks: 405 with the API's JSON error
    // (was an empty body), token or not; an unknown route stays a 404.
    for token in [Some(token.as_str()), None] {
        for (method, path) in [("PUT", "/v1/environments"), ("PATCH", "/v1/secrets")] {
            let r = h.send(method, path, token, None);
            assert_json_error(&r, 405);
            assert_eq!(
                r.json()["code"],
                "method_not_allowed",
                "{method} {path}: {r:?}"
            );
        }
    }
    let r = h.send("PUT", "/v1/no-such-route", Some(&token), None);
    assert_json_error(&r, 404);
    assert_eq!(r.json()["code"], "unknown_route");
    let r = h.post_json(
        "/v1/spaces",
        &json!({"id": "team-a", "environmentId": "prod"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    assert_json_error(
        &h.post_json("/v1/spaces", &json!({"id": "x", "environmentId": "nope"})),
        404,
    );
    let spaces = h.get("/v1/spaces?environmentId=prod").json();
    assert_eq!(spaces[0]["id"], "team-a");
    assert_eq!(spaces[0]["environmentId"], "prod");

    // Secrets: upsert, ids, metadata only.
    let r = h.post_json(
        "/v1/secrets",
        &json!({"name": "SLACK_TOKEN", "value": VALUE, "environmentId": "prod"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Flatfile's envelope: the scope's effective secrets after the write.
    assert_eq!(r.json()["data"][0]["id"], "env:prod:SLACK_TOKEN");
    assert!(!r.body.contains(VALUE));
    let r = h.post_json(
        "/v1/secrets",
        &json!({"name": "SLACK_TOKEN", "value": format!("{VALUE}-space"), "environmentId": "prod", "spaceId": "team-a"}),
    );
    assert_eq!(r.json()["data"][0]["id"], "space:team-a:SLACK_TOKEN");
    assert_eq!(r.json()["data"][0]["version"], 1);
    let r = h.get("/v1/secrets?environmentId=prod&spaceId=team-a");
    assert!(!r.body.contains(VALUE));
    let list = r.json()["data"].clone();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["provenance"], "space-override");
    assert_eq!(list[0]["id"], "space:team-a:SLACK_TOKEN");
    assert_eq!(
        h.get("/v1/secrets?environmentId=prod").json()["data"][0]["provenance"],
        "environment"
    );
    assert_json_error(&h.get("/v1/secrets"), 400);
    assert_json_error(&h.get("/v1/secrets?environmentId=nope"), 404);
    assert_json_error(&h.get("/v1/secrets?environmentId=prod&bogus=1"), 400);
    let r = h.post_json(
        "/v1/secrets",
        &json!({"name": "9lives", "value": "x", "environmentId": "prod"}),
    );
    assert_json_error(&r, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("must start with a letter")
    );

    // Malformed JSON and unknown fields: JSON 4xx, nothing written.
    assert_json_error(&h.post_raw("/v1/secrets", b"{not json".to_vec()), 400);
    assert_json_error(
        &h.post_json(
            "/v1/secrets",
            &json!({"name": "LEAK", "value": "x", "environmentId": "prod", "extra": 1}),
        ),
        400,
    );
    assert_json_error(
        &h.post_json("/v1/environments", &json!({"id": "x", "bogus": true})),
        400,
    );
    assert_json_error(&h.post_json("/v1/environments", &json!({"name": "y"})), 400);
    assert!(
        !names(&h.get("/v1/secrets?environmentId=prod").json()["data"]).contains(&"LEAK".into())
    );
    assert_eq!(names(&h.get("/v1/environments").json()), ["prod"]);

    // Oversize bodies: 413 with a JSON error, nothing written.
    let big = "x".repeat(2 << 20);
    let r = h.post_json(
        "/v1/secrets",
        &json!({"name": "BIG", "value": big, "environmentId": "prod"}),
    );
    assert_json_error(&r, 413);
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "t", "environmentId": "prod", "payload": {"big": big}}),
    );
    assert_json_error(&r, 413);
    let spec = json!({"name": "hello", "environmentId": "prod", "topics": ["action:*"], "settings": {"greeting": "hi"}});
    let mut huge = wasm(EXAMPLE_RUST_LISTENER);
    huge.resize(2 << 20, 0);
    assert_json_error(&h.deploy(&spec, &huge), 413);
    assert!(
        !names(&h.get("/v1/secrets?environmentId=prod").json()["data"]).contains(&"BIG".into())
    );
    assert_eq!(h.get("/v1/listeners").json(), json!([]));

    // Listeners: multipart deploy, bad specs and modules refused.
    let mut bad = spec.clone();
    bad["timeout"] = json!(5);
    assert_json_error(&h.deploy(&bad, &wasm(EXAMPLE_RUST_LISTENER)), 400);
    assert_json_error(&h.deploy(&spec, b"garbage"), 400);
    let (ctype, body) = multipart(&[("spec", "application/json", spec.to_string().as_bytes())]);
    assert_json_error(
        &h.send("POST", "/v1/listeners", Some(&token), Some((&ctype, body))),
        400,
    );
    assert_eq!(h.get("/v1/listeners").json(), json!([]));
    let r = h.deploy(&spec, &wasm(EXAMPLE_RUST_LISTENER));
    assert_eq!(r.status, 201, "{r:?}");
    let listeners = h.get("/v1/listeners").json();
    assert_eq!(listeners[0]["name"], "hello");
    assert_eq!(listeners[0]["topics"], json!(["action:*"]));
    assert_eq!(listeners[0]["settings"]["greeting"], "hi");
    assert_eq!(listeners[0]["limits"]["timeoutMs"], 5000);
    assert_eq!(listeners[0]["moduleHash"].as_str().unwrap().len(), 64);

    // Events and runs.
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "action:triggered", "environmentId": "prod", "spaceId": "team-a", "payload": {"a": [1, 2]}}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.body.contains(VALUE));
    let ev = r.json();
    assert!(ev["eventId"].as_str().unwrap().starts_with("ev_"));
    let run = &ev["runs"][0];
    assert_eq!(run["listener"], "hello");
    assert_eq!(run["outcome"]["kind"], "ok", "{run}");
    let expected = format!("token has {} characters", VALUE.len() + 6);
    assert!(
        run["outcome"]["value"]
            .as_str()
            .unwrap()
            .contains(&expected)
    );
    assert_eq!(
        h.post_json(
            "/v1/events",
            &json!({"topic": "nothing", "environmentId": "prod"})
        )
        .json()["runs"],
        json!([])
    );
    assert_json_error(
        &h.post_json(
            "/v1/events",
            &json!({"topic": "t", "environmentId": "nope"}),
        ),
        404,
    );
    assert_json_error(
        &h.post_json("/v1/events", &json!({"topic": "", "environmentId": "prod"})),
        400,
    );
    // A store revision no write has reached is not waited for (it could
    // only time out, 503 after 10 s): refused at once. One reached runs.
    let started = std::time::Instant::now();
    let ahead = h.post_json(
        "/v1/events",
        &json!({"topic": "nothing", "environmentId": "prod", "minRevision": 1u64 << 60}),
    );
    assert_json_error(&ahead, 400);
    assert!(ahead.body.contains("ahead of every write"), "{ahead:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        h.post_json(
            "/v1/events",
            &json!({"topic": "nothing", "environmentId": "prod", "minRevision": 1})
        )
        .status,
        200
    );
    let page = h.get("/v1/runs?listener=hello&limit=5").json();
    assert_eq!(page["next"], Value::Null);
    let runs = &page["runs"];
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["eventId"], ev["eventId"]);
    assert_eq!(runs[0]["environmentId"], "prod");
    assert_eq!(runs[0]["spaceId"], "team-a");
    assert_json_error(&h.get("/v1/runs?limit=many"), 400);

    // A batch: refused whole (naming the line) when a line is bad, and
    // nothing of it runs; run in order otherwise.
    let one = |topic: &str| json!({"topic": topic, "environmentId": "prod", "spaceId": "team-a"});
    let ndjson = |lines: &[Value]| {
        lines
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
            .into_bytes()
    };
    let refused = [
        (
            ndjson(&[one("action:a"), json!({"topic": ""})]),
            400,
            "line 2: ",
        ),
        (ndjson(&[one("action:a"), one("")]), 400, "line 2: "),
        (
            b"{\"topic\": \"action:a\", \"environmentId\": \"prod\"}\nnot json\n".to_vec(),
            400,
            "line 2: ",
        ),
        (
            ndjson(&[json!({"topic": "t", "environmentId": "nope"})]),
            404,
            "line 1: ",
        ),
        (b"\n \n".to_vec(), 400, "the batch holds no events"),
    ];
    for (body, status, says) in refused {
        let r = h.post_raw("/v1/events/batch", body);
        assert_json_error(&r, status);
        assert!(
            r.json()["error"].as_str().unwrap().starts_with(says),
            "{r:?}"
        );
    }
    let lines: Vec<Value> = (0..5)
        .map(|i| {
            let mut line = one(&format!("action:b{i}"));
            line["id"] = json!(format!("batch-{i}"));
            line
        })
        .collect();
    let r = h.post_raw("/v1/events/batch", ndjson(&lines));
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.body.contains(VALUE));
    let batch = r.json()["events"].as_array().unwrap().clone();
    assert_eq!(batch.len(), 5);
    for ev in &batch {
        assert_eq!(ev["runs"][0]["listener"], "hello");
        assert_eq!(ev["runs"][0]["outcome"]["kind"], "ok", "{ev}");
    }
    let ran: Vec<Value> = h.get("/v1/runs?listener=hello&limit=20").json()["runs"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ran.len(), 6, "the event before and the 5 of the batch");
    // Answered in the order sent, whatever order they ran in.
    let answered: Vec<&str> = batch
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(
        answered,
        ["batch-0", "batch-1", "batch-2", "batch-3", "batch-4"]
    );
    let mut recorded: Vec<&str> = ran[..5]
        .iter()
        .map(|r| r["eventId"].as_str().unwrap())
        .collect();
    recorded.sort_unstable();
    assert_eq!(recorded, answered);

    // Key rotation, then secrets still resolve.
    let r = h.post_raw("/v1/keys/rotate", Vec::new());
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["target"], "kek");
    assert_eq!(r.json()["newVersion"], 2);
    let r = h.post_json("/v1/keys/rotate", &json!({"scope": "space:team-a"}));
    assert_eq!(r.json()["target"], "space:team-a");
    assert_json_error(
        &h.post_json("/v1/keys/rotate", &json!({"scope": "vault"})),
        400,
    );
    assert_json_error(
        &h.post_json("/v1/keys/rotate", &json!({"scope": "env:nope"})),
        404,
    );
    let r = h.post_json(
        "/v1/events",
        &json!({"topic": "action:x", "environmentId": "prod", "spaceId": "team-a"}),
    );
    assert_eq!(r.json()["runs"][0]["outcome"]["kind"], "ok");

    // Metrics: runtime and API counters in one exposition.
    let m = h.get("/metrics");
    assert_eq!(m.status, 200);
    for want in [
        "keyhole_events_total",
        "keyhole_runs_total",
        "keyhole_api_requests_total",
        "route=\"/v1/events\"",
    ] {
        assert!(m.body.contains(want), "{want} missing from metrics");
    }
    assert_eq!(m.body.matches("# EOF").count(), 1);

    // Deletes.
    let r = h.delete("/v1/secrets/space:team-a:SLACK_TOKEN");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["data"][0]["provenance"], "environment");
    assert_json_error(&h.delete("/v1/secrets/space:team-a:SLACK_TOKEN"), 404);
    assert_json_error(&h.delete("/v1/secrets/garbage"), 400);
    assert_eq!(h.delete("/v1/listeners/hello").status, 204);
    assert_json_error(&h.delete("/v1/listeners/hello"), 404);
    assert_json_error(&h.get("/v1/nothing-here"), 404);

    check_openapi_against_server(&h);

    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

/// Every operation the served OpenAPI document lists answers (neither 404
/// nor 405) with a valid token. The reverse (every served route is
/// documented) is checked against the router's route list by the unit test
/// in `src/api/mod.rs`.
fn check_openapi_against_server(h: &Http) {
    let r = h.get("/v1/openapi.json");
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Resources for the operations that take a path parameter.
    h.post_json(
        "/v1/secrets",
        &json!({"name": "DOC_CHECK", "value": "v", "environmentId": "prod"}),
    );
    h.post_json(
        "/v1/spaces",
        &json!({"id": "doc-space-kept", "environmentId": "prod"}),
    );
    let spec = json!({"name": "doc-check", "environmentId": "prod"});
    assert_eq!(h.deploy(&spec, &wasm(EXAMPLE_RUST_LISTENER)).status, 201);
    let r = h.post_json(
        "/v1/tokens",
        &json!({"name": "doc-rotate", "role": "auditor"}),
    );
    assert_eq!(r.status, 201, "{r:?}");
    let kept = json!({"name": "doc-kept", "environmentId": "prod"});
    assert_eq!(h.deploy(&kept, &wasm(EXAMPLE_RUST_LISTENER)).status, 201);

    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let m = method.to_uppercase();
            let r = match (m.as_str(), path.as_str()) {
                ("GET", "/v1/secrets") => h.get("/v1/secrets?environmentId=prod"),
                ("GET", "/v1/runs/{id}") => h.get("/v1/runs/1"),
                ("GET", "/v1/environments/{id}") => h.get("/v1/environments/prod"),
                ("GET", "/v1/spaces/{id}") => h.get("/v1/spaces/doc-space-kept"),
                ("GET", "/v1/secrets/{id}") => h.get("/v1/secrets/env:prod:DOC2"),
                ("GET", "/v1/listeners/{name}") => h.get("/v1/listeners/doc-kept"),
                ("GET", "/v1/secrets/{id}/history") => h.get("/v1/secrets/env:prod:DOC2/history"),
                ("POST", "/v1/secrets/config") => h.post_json(path, &json!({"versionsKept": 10})),
                ("POST", "/v1/secrets/{id}/rollback") => {
                    h.post_json("/v1/secrets/env:prod:DOC2/rollback", &json!({"version": 1}))
                }
                ("POST", "/v1/secrets/{id}/undelete") => {
                    h.post_json("/v1/secrets/env:prod:DOC2/undelete", &json!({}))
                }
                ("POST", "/v1/secrets/{id}/destroy") => h.post_json(
                    "/v1/secrets/env:prod:DOC2/destroy",
                    &json!({"versions": [1]}),
                ),
                ("GET", p) => h.get(p),
                // Paths come in order, so each was created on the way.
                ("DELETE", "/v1/environments/{id}") => h.delete("/v1/environments/doc-env"),
                ("DELETE", "/v1/spaces/{id}") => h.delete("/v1/spaces/doc-space"),
                ("POST", "/v1/environments") => h.post_json(path, &json!({"id": "doc-env"})),
                ("POST", "/v1/spaces") => {
                    h.post_json(path, &json!({"id": "doc-space", "environmentId": "prod"}))
                }
                ("POST", "/v1/secrets") => h.post_json(
                    path,
                    &json!({"name": "DOC2", "value": "v", "environmentId": "prod"}),
                ),
                ("POST", "/v1/keys/rotate") => h.post_json(path, &json!({"scope": "env:prod"})),
                ("POST", "/v1/listeners") => h.deploy(&spec, &wasm(EXAMPLE_RUST_LISTENER)),
                ("POST", "/v1/events") => {
                    h.post_json(path, &json!({"topic": "t", "environmentId": "prod"}))
                }
                ("POST", "/v1/events/batch") => h.post_raw(
                    path,
                    b"{\"topic\": \"t\", \"environmentId\": \"prod\"}".to_vec(),
                ),
                ("DELETE", "/v1/secrets/{id}") => h.delete("/v1/secrets/env:prod:DOC_CHECK"),
                ("DELETE", "/v1/listeners/{name}") => h.delete("/v1/listeners/doc-check"),
                ("POST", "/v1/tokens") => {
                    h.post_json(path, &json!({"name": "doc-token", "role": "auditor"}))
                }
                ("DELETE", "/v1/tokens/{name}") => h.delete("/v1/tokens/doc-token"),
                ("POST", "/v1/tokens/{name}/rotate") => {
                    h.post_raw("/v1/tokens/doc-rotate/rotate", Vec::new())
                }
                other => panic!("documented operation {other:?} has no request in this test"),
            };
            assert!(
                r.status != 404 && r.status != 405 && r.status < 500,
                "{m} {path} answered {r:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 36, "operations checked");
}

/// A component that could never run is invalid input: 400 with a message
/// in the user's terms, no ERROR in the daemon's log, nothing deployed.
#[test]
fn a_module_that_can_never_run_is_a_bad_request() {
    let k = Install::new();
    let token = k.init();
    k.scopes("prod", &[]);
    let log = k.dir.path().join("serve.log");
    let server = Server::start_logging_to(&k, &token, &[], &log);
    let h = server.http();

    let r = h.deploy(
        &json!({"name": "big", "environmentId": "prod"}),
        &wasm(BIG_MEMORY),
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        r.json()["error"],
        "the module needs 601 MiB of memory at start; the most a listener may have is 512 MiB"
    );
    // Over the deployment's own limit (secret-reader starts above 1 MiB).
    let small =
        json!({"name": "small", "environmentId": "prod", "limits": {"memoryBytes": 1 << 20}});
    let r = h.deploy(&small, &wasm(SECRET_READER));
    assert_eq!(r.status, 400, "{r:?}");
    let message = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        message.ends_with("of memory at start; this deployment's memory limit is 1 MiB"),
        "{message}"
    );
    assert_eq!(h.get("/v1/listeners").json(), json!([]));

    assert!(server.terminate().success());
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(!log.contains("ERROR"), "the daemon logged an error: {log}");
}
