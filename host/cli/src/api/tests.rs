use std::collections::BTreeSet;

use super::*;

/// (method, path) of every operation in the OpenAPI document.
fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let served: BTreeSet<(String, String)> = routes(1)
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(served, documented());
}

/// Each operation's `x-permission` in the document is what its route
/// needs (`none` for public, `any` for any valid token).
#[test]
fn the_document_names_each_route_s_permission() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    for r in routes(1) {
        let op = &doc["paths"][r.path][r.method.as_str().to_lowercase()];
        let want = match r.access {
            Access::Public => "none",
            Access::AnyToken => "any",
            Access::Needs(p) => p.name(),
        };
        assert_eq!(op["x-permission"], want, "{} {}", r.method, r.path);
        if let Access::Needs(_) = r.access {
            assert_eq!(
                op["responses"]["403"]["$ref"], "#/components/responses/Forbidden",
                "{} {}",
                r.method, r.path
            );
        }
    }
}

/// The answers any operation of a kind can give are documented on
/// every operation of that kind (a fuzzer, schemathesis, found a 409
/// the document did not list): 503 wherever the store, its backend or
/// the audit log is involved (sealed, unreachable, failing); 400, 408
/// and 413 wherever a body is read; 409 wherever a write may lose to
/// others (`contended`), which is every write but an event's.
#[test]
fn each_kind_of_operation_documents_the_answers_of_its_kind() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().expect("responses");
            let mut want = Vec::new();
            if !["/healthz", "/metrics", "/v1/openapi.json"].contains(&path.as_str()) {
                want.push("503");
            }
            if op.get("requestBody").is_some() {
                want.extend(["400", "408", "413"]);
            }
            if ["post", "delete"].contains(&method.as_str()) && !path.starts_with("/v1/events") {
                want.push("409");
            }
            for status in want {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
        }
    }
}

#[test]
fn only_healthz_is_public_in_code_and_document() {
    let public: Vec<&str> = routes(1)
        .iter()
        .filter(|r| r.access == Access::Public)
        .map(|r| r.path)
        .collect();
    assert_eq!(public, ["/healthz"]);
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["security"],
        serde_json::json!([])
    );
    assert!(doc["security"].as_array().is_some_and(|s| !s.is_empty()));
}
