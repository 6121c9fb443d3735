//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

use keyhole::listener::secrets::{Scope, ScopeKind, SecretError, get_secret_info};
use serde_json::{Value, json};

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

fn describe(e: &SecretError) -> String {
    match e {
        SecretError::NotFound => "not-found".into(),
        SecretError::AccessDenied => "access-denied".into(),
        SecretError::InvalidName(m) => format!("invalid-name: {m}"),
        SecretError::Unavailable(m) => format!("unavailable: {m}"),
    }
}

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        let payload: Value = serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
        let mut results = Vec::new();
        for r in payload["reads"].as_array().cloned().unwrap_or_default() {
            let name = r["name"].as_str().unwrap_or_default();
            let environment = r["environment"].as_str().map(String::from);
            let space = r["space"].as_str().map(String::from);
            let scope =
                (environment.is_some() || space.is_some()).then_some(Scope { environment, space });
            results.push(match get_secret_info(name, scope.as_ref()) {
                Ok(info) => json!({
                    "name": name,
                    "fnv": fnv(&info.value),
                    "kind": match info.kind {
                        ScopeKind::Environment => "environment",
                        ScopeKind::Space => "space",
                    },
                    "environment": info.environment,
                    "space": info.space,
                    "version": info.version,
                }),
                Err(e) => json!({"name": name, "error": describe(&e)}),
            });
        }
        Ok(json!({"results": results, "wit": "0.2.0"}).to_string())
    }
}
