//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

use std::io::Write;

struct Listener;
export!(Listener);

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        let payload: serde_json::Value =
            serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
        let name = payload["name"].as_str().unwrap_or("CUT_SECRET");
        let filler = payload["filler"].as_u64().unwrap_or(0) as usize;
        let value = keyhole::listener::secrets::get_secret(name, None)
            .map_err(|e| format!("{e:?}"))?;
        // One write: the filler, then the value, so the host's byte cap
        // lands `cap - filler` bytes into the value.
        let mut text = vec![b'.'; filler];
        text.extend_from_slice(value.as_bytes());
        text.push(b'\n');
        let written = match payload["stream"].as_str() {
            Some("stderr") => std::io::stderr().write_all(&text),
            _ => std::io::stdout().write_all(&text),
        };
        written.map_err(|e| e.to_string())?;
        Ok(format!("wrote {} bytes", text.len()))
    }
}
