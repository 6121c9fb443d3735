//! keyhole's secrets API answers the requests Flatfile's API client
//! (`@flatfile/api`, `api.secrets.list | upsert | delete`) sends, in
//! Flatfile's envelope: `GET /v1/secrets?environmentId=…&spaceId=…`,
//! `POST /v1/secrets` with `{name, value, environmentId, spaceId?,
//! actorId?}`, `DELETE /v1/secrets/{secretId}`, each answered
//! `{"data": [Secret]}`, with the client's own headers. The one deliberate
//! difference: no answer carries a value.

mod common;

use common::*;
use serde_json::{Value, json};

const VALUE: &str = "flatfile-planted-6d1e0a";

/// A request as the Flatfile client sends it: bearer token, JSON, and the
/// headers its generated client adds.
fn flatfile(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let b = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}/v1{path}", server.base))
        .header("Authorization", format!("Bearer {}", server.token))
        .header("X-Disable-Hooks", "true")
        .header("X-Fern-Language", "JavaScript")
        .header("X-Fern-SDK-Name", "@flatfile/api")
        .header("Content-Type", "application/json");
    let mut resp = match body {
        Some(b2) => agent.run(b.body(b2.to_string().into_bytes()).unwrap()),
        None => agent.run(b.body(()).unwrap()),
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string().unwrap();
    assert!(!text.contains(VALUE), "a value in an answer: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

fn names(v: &Value) -> Vec<&str> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array in {v}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

#[test]
fn the_requests_of_flatfiles_client_get_flatfiles_answers() {
    let k = Install::new();
    let token = k.init();
    k.scopes("us_env_1", &["us_sp_1"]);
    let server = Server::start(&k, &token, &[]);

    // api.secrets.upsert({ name, value, environmentId })
    let (status, env) = flatfile(
        &server,
        "POST",
        "/secrets",
        Some(json!({"name": "API_KEY", "value": VALUE, "environmentId": "us_env_1"})),
    );
    assert_eq!(status, 200, "{env}");
    assert_eq!(names(&env), ["API_KEY"]);
    let secret = &env["data"][0];
    assert_eq!(secret["id"], "env:us_env_1:API_KEY");
    assert_eq!(secret["environmentId"], "us_env_1");
    assert!(secret.get("value").is_none(), "{secret}");

    // api.secrets.upsert({ name, value, environmentId, spaceId, actorId })
    let (status, space) = flatfile(
        &server,
        "POST",
        "/secrets",
        Some(json!({
            "name": "API_KEY",
            "value": format!("{VALUE}-space"),
            "environmentId": "us_env_1",
            "spaceId": "us_sp_1",
            "actorId": "us_usr_1",
        })),
    );
    assert_eq!(status, 200, "{space}");
    assert_eq!(space["data"][0]["spaceId"], "us_sp_1");
    assert_eq!(space["data"][0]["provenance"], "space-override");

    // api.secrets.upsert({ name, value, spaceId }): the space implies its
    // environment.
    let (status, _) = flatfile(
        &server,
        "POST",
        "/secrets",
        Some(json!({"name": "ONLY_SPACE", "value": VALUE, "spaceId": "us_sp_1"})),
    );
    assert_eq!(status, 200);

    // api.secrets.list({ environmentId, spaceId }) and ({ spaceId })
    let (status, list) = flatfile(
        &server,
        "GET",
        "/secrets?environmentId=us_env_1&spaceId=us_sp_1",
        None,
    );
    assert_eq!(status, 200, "{list}");
    assert_eq!(names(&list), ["API_KEY", "ONLY_SPACE"]);
    let (_, by_space) = flatfile(&server, "GET", "/secrets?spaceId=us_sp_1", None);
    assert_eq!(by_space, list);
    let (_, env_only) = flatfile(
        &server,
        "GET",
        "/secrets?environmentId=us_env_1&actorId=us_usr_1",
        None,
    );
    assert_eq!(names(&env_only), ["API_KEY"]);
    assert_eq!(env_only["data"][0]["provenance"], "environment");

    // api.secrets.delete(secretId): the scope's secrets after it.
    let id = space["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, after) = flatfile(&server, "DELETE", &format!("/secrets/{id}"), None);
    assert_eq!(status, 200, "{after}");
    assert_eq!(names(&after), ["API_KEY", "ONLY_SPACE"]);
    assert_eq!(after["data"][0]["provenance"], "environment");

    // Errors in Flatfile's terms too: a JSON error, never a value.
    let (status, err) = flatfile(&server, "GET", "/secrets", None);
    assert_eq!(status, 400);
    assert_eq!(err["code"], "invalid");
    let (status, err) = flatfile(&server, "GET", "/secrets?spaceId=us_sp_nope", None);
    assert_eq!(status, 404);
    assert_eq!(err["code"], "unknown_space");
    assert_eq!(err["subject"], "us_sp_nope");
    assert!(server.terminate().success());
}
