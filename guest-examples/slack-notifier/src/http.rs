//! A small blocking HTTP POST over `wasi:http/outgoing-handler`.

use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, OutgoingBody, OutgoingRequest, Method, Scheme};

/// POSTs `body` as JSON to `url`, with an `Authorization` header when
/// given one (without, keyhole injects it); returns the status and the
/// response body.
pub fn post_json(url: &str, authorization: Option<&str>, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = url.split_once("://").ok_or("the API base URL needs http:// or https://")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| (&rest[..i], &rest[i..]));
    let mut list = vec![("content-type".to_string(), b"application/json; charset=utf-8".to_vec())];
    if let Some(authorization) = authorization {
        list.push(("authorization".into(), authorization.as_bytes().to_vec()));
    }
    let headers = Fields::from_list(&list).map_err(|e| format!("headers: {e:?}"))?;
    let request = OutgoingRequest::new(headers);
    request.set_method(&Method::Post).map_err(|_| "method")?;
    let scheme = if scheme == "http" { Scheme::Http } else { Scheme::Https };
    request.set_scheme(Some(&scheme)).map_err(|_| "scheme")?;
    request.set_authority(Some(authority)).map_err(|_| "authority")?;
    request.set_path_with_query(Some(path)).map_err(|_| "path")?;

    let outgoing = request.body().map_err(|_| "request body")?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| format!("request refused: {e:?}"))?;
    {
        let stream = outgoing.write().map_err(|_| "body stream")?;
        for chunk in body.chunks(4096) {
            stream.blocking_write_and_flush(chunk).map_err(|e| format!("writing body: {e:?}"))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(|e| format!("finishing body: {e:?}"))?;

    pending.subscribe().block();
    let response = pending
        .get()
        .ok_or("no response")?
        .map_err(|_| "response already taken")?
        .map_err(|e| format!("request failed: {e:?}"))?;
    let status = response.status();
    let incoming = response.consume().map_err(|_| "response body")?;
    let mut out = Vec::new();
    {
        let stream = incoming.stream().map_err(|_| "response stream")?;
        loop {
            match stream.blocking_read(64 << 10) {
                Ok(bytes) => out.extend_from_slice(&bytes),
                Err(wasi::io::streams::StreamError::Closed) => break,
                Err(e) => return Err(format!("reading response: {e:?}")),
            }
        }
    }
    Ok((status, out))
}
