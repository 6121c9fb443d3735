//! A minimal keyhole listener: greets the event and proves it can read
//! `SLACK_TOKEN` without ever seeing it in its code, config or environment.

// Generates Rust bindings for keyhole's `listener` world: the `Guest` trait
// to implement, the `Event` type, and `keyhole::listener::secrets::get_secret`.
wit_bindgen::generate!({ path: "../../wit", world: "listener" });

use keyhole::listener::secrets::{Scope, SecretError, get_secret};

struct HelloListener;

impl Guest for HelloListener {
    fn handle(event: Event) -> Result<String, String> {
        // No scope: the event's space (if any), falling back to its environment.
        let token = match get_secret("SLACK_TOKEN", None) {
            Ok(token) => token,
            Err(SecretError::NotFound) => return Err("set SLACK_TOKEN first".into()),
            Err(other) => return Err(format!("cannot read SLACK_TOKEN: {other:?}")),
        };
        // An explicit scope: the environment's own value, ignoring any space
        // override. Reading another environment needs a grant at deploy time.
        let env_scope = Scope { environment: Some(event.environment.clone()), space: None };
        let from_env = get_secret("SLACK_TOKEN", Some(&env_scope)).is_ok();

        // Anything printed is captured into the run record; keyhole replaces
        // secret values with [redacted:NAME] before storing it.
        println!("handling {} on {}", event.id, event.topic);
        Ok(format!(
            "hello from {}{}: token has {} characters (environment value present: {from_env})",
            event.environment,
            event.space.map(|s| format!("/{s}")).unwrap_or_default(),
            token.chars().count(),
        ))
    }
}

export!(HelloListener);
