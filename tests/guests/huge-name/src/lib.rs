//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

use keyhole::listener::secrets::{Scope, SecretError, get_secret};

fn describe(r: Result<String, SecretError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(SecretError::InvalidName(m)) => format!("invalid-name: {m}"),
        Err(e) => format!("{e:?}"),
    }
}

impl Guest for Listener {
    fn handle(_event: Event) -> Result<String, String> {
        let huge = "A".repeat(10 << 20);
        let by_name = describe(get_secret(&huge, None));
        let scope = Scope { environment: Some(huge.clone()), space: None };
        let by_scope = describe(get_secret("SLACK_TOKEN", Some(&scope)));
        Ok(format!("{by_name}\n{by_scope}"))
    }
}
