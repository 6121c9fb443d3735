//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, OutgoingRequest, Scheme};

fn get(url: &str) -> Result<u16, String> {
    let (scheme, rest) = url.split_once("://").ok_or("url needs a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|_| "scheme")?;
    req.set_authority(Some(authority)).map_err(|_| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|_| "path")?;
    let resp = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    resp.subscribe().block();
    let resp = resp.get().ok_or("no response")?.map_err(|_| "taken")?.map_err(|e| format!("{e:?}"))?;
    Ok(resp.status())
}

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        let payload: serde_json::Value = serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
        let mut url = payload["url"].as_str().ok_or("payload needs url")?.to_owned();
        // `{"secret": NAME}`: put that secret's value where the URL says `{secret}`.
        if let Some(name) = payload["secret"].as_str() {
            let value = keyhole::listener::secrets::get_secret(name, None)
                .map_err(|e| format!("{e:?}"))?;
            url = url.replace("{secret}", &value);
        }
        get(&url).map(|s| format!("status {s}"))
    }
}
