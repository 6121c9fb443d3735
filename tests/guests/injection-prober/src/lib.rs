//! See README.md.
wit_bindgen::generate!({ path: "../../../wit", world: "listener" });

struct Listener;
export!(Listener);

use keyhole::listener::secrets::SecretError;
use serde_json::{Value, json};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One request; the response's status, headers (hex values) and body (hex).
fn send(url: &str, method: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> Result<(u16, Vec<(String, Vec<u8>)>, Vec<u8>), String> {
    let (scheme, rest) = url.split_once("://").ok_or("url needs a scheme")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let fields = Fields::from_list(headers).map_err(|e| format!("headers: {e:?}"))?;
    let req = OutgoingRequest::new(fields);
    req.set_method(&if method == "POST" { Method::Post } else { Method::Get }).map_err(|_| "method")?;
    req.set_scheme(Some(&if scheme == "https" { Scheme::Https } else { Scheme::Http })).map_err(|_| "scheme")?;
    req.set_authority(Some(authority)).map_err(|_| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|_| "path")?;
    let outgoing = req.body().map_err(|_| "request body")?;
    let pending = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    {
        let stream = outgoing.write().map_err(|_| "body stream")?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| format!("writing body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("finishing body: {e:?}"))?;
    pending.subscribe().block();
    let resp = pending.get().ok_or("no response")?.map_err(|_| "taken")?.map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let headers = resp.headers().entries();
    let incoming = resp.consume().map_err(|_| "response body")?;
    let mut out = Vec::new();
    {
        let stream = incoming.stream().map_err(|_| "response stream")?;
        // Bounded by the host's response size cap.
        loop {
            match stream.blocking_read(64 << 10) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(wasi::io::streams::StreamError::Closed) => break,
                Err(e) => return Err(format!("reading response: {e:?}")),
            }
        }
    }
    Ok((status, headers, out))
}

fn probe(request: &Value, responses: &mut Vec<Value>) {
    let mut url = request["url"].as_str().unwrap_or_default().to_owned();
    let method = request["method"].as_str().unwrap_or("GET");
    let headers: Vec<(String, Vec<u8>)> = request["headers"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|kv| (kv[0].as_str().unwrap_or_default().to_owned(), kv[1].as_str().unwrap_or_default().as_bytes().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    let body = request["body"].as_str().unwrap_or_default().as_bytes();
    let mut follow = request["follow"].as_u64().unwrap_or(0).min(5);
    loop {
        match send(&url, method, &headers, body) {
            Ok((status, got, body)) => {
                let location = got.iter().find(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| String::from_utf8_lossy(v).into_owned());
                responses.push(json!({
                    "url": url,
                    "status": status,
                    "headers": got.iter().map(|(k, v)| json!([k, hex(v)])).collect::<Vec<_>>(),
                    "body": hex(&body),
                }));
                match location {
                    Some(next) if (300..400).contains(&status) && follow > 0 => {
                        follow -= 1;
                        url = next;
                    }
                    _ => return,
                }
            }
            Err(error) => {
                responses.push(json!({ "url": url, "error": error }));
                return;
            }
        }
    }
}

impl Guest for Listener {
    fn handle(event: Event) -> Result<String, String> {
        let payload: Value = serde_json::from_str(&event.payload).map_err(|e| e.to_string())?;
        let mut responses = Vec::new();
        for request in payload["requests"].as_array().into_iter().flatten() {
            probe(request, &mut responses);
        }
        let mut reads = Vec::new();
        for read in payload["read"].as_array().into_iter().flatten() {
            let name = read["name"].as_str().unwrap_or_default();
            let scope = read["env"].as_str().map(|env| keyhole::listener::secrets::Scope { environment: Some(env.to_owned()), space: None });
            let result = match keyhole::listener::secrets::get_secret(name, scope.as_ref()) {
                Ok(value) => format!("ok:{}", hex(value.as_bytes())),
                // As the WIT spells it (the error's text, if any, is the host's).
                Err(SecretError::NotFound) => "not-found".into(),
                Err(SecretError::AccessDenied) => "access-denied".into(),
                Err(SecretError::InvalidName(_)) => "invalid-name".into(),
                Err(SecretError::Unavailable(_)) => "unavailable".into(),
            };
            reads.push(json!({ "name": name, "result": result }));
        }
        Ok(json!({ "responses": responses, "reads": reads }).to_string())
    }
}
