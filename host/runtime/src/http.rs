//! Opt-in outbound HTTP: `wasi:http/outgoing-handler` behind an allow-list.
//!
//! A deployment granted `--allow-http` entries gets the `wasi:http` imports
//! linked; every request's scheme, host and port are checked against the
//! list in [`OutboundHooks::send_request`] before any connection is made.
//! Anything else gets `HTTP-request-denied`. Per run, requests are counted,
//! response bodies are size-capped, and timeouts never exceed the run's
//! remaining deadline. Each request is recorded (method, host, path, status,
//! duration, the names of secrets injected into it), never its headers.
//!
//! A deployment with injected secrets (`inject.rs`) has its headers set
//! here, after the allow-list check, and every response of a run that has
//! injected a value is scrubbed of it before the guest sees it
//! (`http_scrub.rs`). Without injections none of that runs: `inject` is
//! `None`, and each request costs one branch more.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::uri::Scheme;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::http_scrub::ResponseScrub;
use crate::inject::Injector;

/// One allow-list entry: scheme, host and port must all match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedOrigin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl AllowedOrigin {
    /// Parses `host`, `https://host[:port]` or `http://host[:port]`. A bare
    /// host means HTTPS on 443.
    pub fn parse(entry: &str) -> Result<Self, String> {
        Self::parse_origin(entry).map_err(|why| format!("allow-http entry {entry:?}: {why}"))
    }

    /// [`AllowedOrigin::parse`], saying only what is wrong, so each caller
    /// can name the entry in its own terms (`--allow-http`, `--inject`).
    pub(crate) fn parse_origin(entry: &str) -> Result<Self, String> {
        let with_scheme = if entry.contains("://") {
            entry.to_string()
        } else {
            format!("https://{entry}")
        };
        let uri: http::Uri = with_scheme.parse().map_err(|e| format!("{e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("scheme must be http or https".into()),
        };
        if uri.path() != "/" && !uri.path().is_empty() || uri.query().is_some() {
            return Err("give an origin, without a path".into());
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err("give an origin, without a user name".into());
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty() && !h.contains('*'))
            .ok_or("missing host")?
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(AllowedOrigin { https, host, port })
    }

    pub(crate) fn matches(&self, uri: &http::Uri) -> bool {
        let https = uri.scheme() != Some(&Scheme::HTTP);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        https == self.https
            && port == self.port
            && uri
                .host()
                .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
    }
}

impl std::fmt::Display for AllowedOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// One outbound request, as recorded in the run record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpCall {
    pub method: String,
    pub host: String,
    pub path: String,
    /// Response status, or `None` if refused or failed.
    pub status: Option<u16>,
    /// Why no response arrived, if so.
    pub error: Option<String>,
    pub duration_us: u64,
    /// Names of the secrets the host injected into this request
    /// (`deploy --inject`); never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injected: Vec<String>,
}

/// Per-run `wasi:http` policy.
pub(crate) struct OutboundHooks {
    pub(crate) allowed: Arc<[AllowedOrigin]>,
    pub(crate) calls: Arc<Mutex<Vec<HttpCall>>>,
    pub(crate) max_requests: u32,
    pub(crate) max_response_bytes: u64,
    pub(crate) deadline: Instant,
    pub(crate) started: u32,
    /// The deployment's injected secrets, for this run; `None` without.
    pub(crate) inject: Option<Injector>,
}

type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> SendFuture {
        let uri = request.uri().clone();
        let mut call = HttpCall {
            method: request.method().to_string(),
            host: uri.host().unwrap_or_default().to_string(),
            path: uri.path().to_string(),
            status: None,
            error: None,
            duration_us: 0,
            injected: Vec::new(),
        };
        let refuse = if !self.allowed.iter().any(|o| o.matches(&uri)) {
            Some("destination not on the allow-list")
        } else if self.started >= self.max_requests {
            Some("per-run request limit reached")
        } else {
            None
        };
        if let Some(reason) = refuse {
            call.error = Some(reason.into());
            self.calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(call);
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        self.started += 1;
        // Counted before: a guest retrying a refused injection in a loop is
        // bounded by the request cap, each try being an audit entry.
        let mut scrub = None;
        if let Some(injector) = &mut self.inject {
            match injector.apply(&mut request) {
                Ok(names) => {
                    let carried = !names.is_empty();
                    call.injected = names;
                    let values = injector.values();
                    if !values.is_empty() {
                        scrub = Some(ResponseScrub { values, carried });
                    }
                }
                Err(reason) => {
                    call.error = Some(reason);
                    self.calls
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(call);
                    return Box::new(async { Err(HttpError::HttpRequestDenied) });
                }
            }
        }
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let cap = |t: Option<Duration>| Some(t.map_or(remaining, |t| t.min(remaining)));
        let options = RequestOptions {
            connect_timeout: cap(options.and_then(|o| o.connect_timeout)),
            first_byte_timeout: cap(options.and_then(|o| o.first_byte_timeout)),
            between_bytes_timeout: cap(options.and_then(|o| o.between_bytes_timeout)),
        };
        let calls = self.calls.clone();
        let max_body = self.max_response_bytes;
        Box::new(async move {
            let started = Instant::now();
            let result = tokio::time::timeout(
                remaining,
                wasmtime_wasi_http::default_send_request(request, Some(options)),
            )
            .await
            .unwrap_or(Err(HttpError::ConnectionTimeout));
            call.duration_us = started.elapsed().as_micros() as u64;
            let mut refused = false;
            match &result {
                Ok((res, _)) => {
                    call.status = Some(res.status().as_u16());
                    if let Some(why) = scrub.as_ref().and_then(|s| s.refusal(res)) {
                        call.error = Some(why.into());
                        refused = true;
                    }
                }
                Err(e) => call.error = Some(format!("{e}")),
            }
            calls.lock().unwrap_or_else(|e| e.into_inner()).push(call);
            let (res, io) = result?;
            if refused {
                return Err(HttpError::HttpResponseContentCoding(None));
            }
            let res = res.map(|body| {
                http_body_util::Limited::new(body, max_body as usize)
                    .map_err(move |_| HttpError::HttpResponseBodySize(Some(max_body)))
                    .boxed_unsync()
            });
            let res = match scrub {
                Some(scrub) => scrub.apply(res),
                None => res,
            };
            Ok((res, Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_and_match() {
        let o = AllowedOrigin::parse("hooks.slack.com").unwrap();
        assert_eq!(o.to_string(), "https://hooks.slack.com:443");
        assert!(o.matches(&"https://HOOKS.slack.com/x".parse().unwrap()));
        assert!(!o.matches(&"http://hooks.slack.com/x".parse().unwrap()));
        assert!(!o.matches(&"https://hooks.slack.com:8443/x".parse().unwrap()));
        assert!(!o.matches(&"https://evil.example/hooks.slack.com".parse().unwrap()));
        let l = AllowedOrigin::parse("http://127.0.0.1:8080").unwrap();
        assert!(l.matches(&"http://127.0.0.1:8080/api".parse().unwrap()));
        assert!(!l.matches(&"http://127.0.0.1:8081/api".parse().unwrap()));
        assert!(AllowedOrigin::parse("ftp://x").is_err());
        assert!(AllowedOrigin::parse("https://x/path").is_err());
        assert!(AllowedOrigin::parse("https://*.x.com").is_err());
    }
}
