//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        let payload: serde_json::Value = serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
        let name = payload["name"].as_str().unwrap_or("SLACK_TOKEN");
        let value = keyhole::listener::secrets::get_secret(name, None).map_err(|e| format!("{e:?}"))?;
        println!("the secret is {value}");
        eprintln!("stderr also gets {value}");
        if payload["fail"].as_bool() == Some(true) {
            return Err(format!("failing with {value}"));
        }
        Ok(format!("returned {value}"))
    }
}
