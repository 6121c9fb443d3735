//! A cookie-keeping HTTP client for the web console's tests: it posts forms
//! from the console's own origin (or another), keeps the session cookie,
//! and reads the CSRF field off a page.

use std::collections::HashMap;
use std::time::Duration;

/// A cookie-keeping client that does not follow redirects.
pub struct Browser {
    agent: ureq::Agent,
    pub base: String,
    pub cookies: HashMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first form's CSRF token on the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        Browser {
            agent,
            base: base.to_owned(),
            cookies: HashMap::new(),
        }
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        origin: Option<&str>,
        form: Option<&[(&str, &str)]>,
    ) -> Page {
        let body = form.map(|fields| {
            (
                "application/x-www-form-urlencoded",
                serde_urlencoded::to_string(fields).unwrap().into_bytes(),
            )
        });
        self.send_bytes(method, path, origin, body)
    }

    /// Sends `body` (content type, bytes) as is: for bodies no form makes.
    pub fn send_bytes(
        &mut self,
        method: &str,
        path: &str,
        origin: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Page {
        let mut b = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            b = b.header("cookie", c.join("; "));
        }
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        let result = match body {
            Some((content_type, bytes)) => self
                .agent
                .run(b.header("content-type", content_type).body(bytes).unwrap()),
            None => self.agent.run(b.body(()).unwrap()),
        };
        let mut r = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let headers: Vec<(String, String)> = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        for (k, v) in &headers {
            if k == "set-cookie" {
                let pair = v.split(';').next().unwrap();
                let (name, value) = pair.split_once('=').unwrap();
                if value.is_empty() || v.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = r.body_mut().read_to_string().unwrap_or_default();
        Page {
            status: r.status().as_u16(),
            location,
            headers,
            body,
        }
    }

    pub fn get(&mut self, path: &str) -> Page {
        self.send("GET", path, None, None)
    }

    /// Posts `fields` from this console's own origin.
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let origin = self.base.clone();
        self.send("POST", path, Some(&origin), Some(fields))
    }

    pub fn sign_in(&mut self, token: &str) -> Page {
        let form = self.get("/signin");
        let csrf = form.csrf();
        self.post("/signin", &[("csrf", &csrf), ("token", token)])
    }
}
