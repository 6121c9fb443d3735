//! See README.md.
wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "listener" });

struct Listener;
export!(Listener);

use keyhole::listener::secrets::{SecretError, get_secret};
use serde_json::{Value, json};

fn fnv(s: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        let payload: Value = serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
        let mut results = Vec::new();
        for r in payload["reads"].as_array().cloned().unwrap_or_default() {
            let name = r["name"].as_str().unwrap_or_default();
            results.push(match get_secret(name, None) {
                Ok(v) => json!({"name": name, "fnv": fnv(&v)}),
                Err(SecretError::NotFound) => json!({"name": name, "error": "not-found"}),
                Err(e) => json!({"name": name, "error": format!("{e:?}")}),
            });
        }
        Ok(json!({"results": results, "wit": "0.1.0"}).to_string())
    }
}
